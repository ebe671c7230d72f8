"""Reading preprocessor weight files the way the official app does, and building the networks.

Rules (official `util.load_weights` + `preprocessor.create_model`):
- `.safetensors` / `.sft`: every key. Anything else: `torch.load(map_location="cpu", weights_only=True)`;
  a pickle that needs anything but tensors and containers (i.e. one that could execute code) is refused
  with a `ColorizerLoadError`. If the loaded object has a `state_dict` entry, that dict is used.
- every key *containing* `module.` gets `key.replace("module.", "")` (all occurrences).
- strict loading: every key of the network must be present with its shape, nothing may be left over;
  only BatchNorm `num_batches_tracked` may be absent (it is filled with 0, as torch does for the app).
- `sk_model.pth` holds the `Generator` keys without the wrapper's leading `model.`; a file saved from the
  wrapper (keys with `model.`) is accepted too (an extension: the official loader would refuse it).
- a file whose keys all carry one extra `net.` prefix (SkyTNT's anime-seg export) loads too (an extension).

Files are read by the pack's one reader (`weight_files.read_state_dict`, ComfyUI's `load_torch_file` in weights-only
mode); the node layer passes the folders to search.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ..comfy_compat import expected_state_shapes
from ..errors import ColorizerLoadError
from ..weight_files import load_strict, read_state_dict as read_weights, with_batch_counters
from .extractor_nets import LineartDetector, MangaLineNet, SketchKeras, build_anime2sketch
from .isnet import ISNetDIS


@dataclass(frozen=True)
class NetworkSpec:
    name: str                     # our method name
    official_name: str            # the app's dropdown name
    files: tuple[str, ...]        # accepted file names, the released one first
    url: str                      # where the released file comes from
    build: Callable[[], nn.Module]
    target: Callable[[nn.Module], nn.Module] = lambda m: m   # the module whose state dict the file holds
    annotator: bool = False       # an lllyasviel/Annotators file (comfyui_controlnet_aux may already have it)


_HF_TELLURION = "https://huggingface.co/tellurion/line_extractor/resolve/main/"
_HF_ANNOTATORS = "https://huggingface.co/lllyasviel/Annotators/resolve/main/"

NETWORKS: dict[str, NetworkSpec] = {
    "isnet_sketch": NetworkSpec("isnet_sketch", "ISNet-sketch", ("sketch-segment.safetensors",),
                                _HF_TELLURION + "sketch-segment.safetensors", ISNetDIS),
    "isnet": NetworkSpec("isnet", "ISNet", ("isnetis.safetensors",),
                         _HF_TELLURION + "isnetis.safetensors", ISNetDIS),
    "sketchKeras": NetworkSpec("sketchKeras", "lineart_keras", ("model.pth", "sketchKeras.pth", "sketch_keras.pth"),
                               _HF_TELLURION + "model.pth", SketchKeras),
    "anime2sketch": NetworkSpec("anime2sketch", "lineart", ("netG.pth",), _HF_ANNOTATORS + "netG.pth",
                                build_anime2sketch, annotator=True),
    "manga": NetworkSpec("manga", "lineart_denoise", ("erika.pth",), _HF_ANNOTATORS + "erika.pth", MangaLineNet,
                         annotator=True),
    "sk_model": NetworkSpec("sk_model", "lineart_sk", ("sk_model.pth",), _HF_ANNOTATORS + "sk_model.pth",
                            LineartDetector, target=lambda m: m.model, annotator=True),
}


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a weight file (the pack's one reader), with the official `module.` stripping."""
    tensors = read_weights(path)
    out = {k: v for k, v in tensors.items() if "module." not in k}
    # the official loop renames every `module.` key in place, so a renamed key wins over a plain one
    out.update({k.replace("module.", ""): v for k, v in tensors.items() if "module." in k})
    return out


def _adapt_prefix(sd: dict, expected: set) -> dict:
    """Accept a layout that differs only by one leading prefix (sk_model wrapper keys, SkyTNT `net.`)."""
    if set(sd) & expected or not sd:
        return sd
    for prefix in ("model.", "net."):
        if all(k.startswith(prefix) for k in sd):
            stripped = {k[len(prefix):]: v for k, v in sd.items()}
            if set(stripped) & expected:
                return stripped
    return sd


def load_into(module: nn.Module, sd: dict, source: str = "state dict") -> nn.Module:
    """Strict load (official semantics) through the pack's one strict loader; errors name the file, the keys and
    the shapes. BatchNorm `num_batches_tracked` counters absent from the file start at 0, as torch does."""
    sd = with_batch_counters(module, _adapt_prefix(dict(sd), set(expected_state_shapes(module))))
    try:
        return load_strict(module, sd, what=f"{type(module).__name__} network")
    except ColorizerLoadError as exc:
        raise ColorizerLoadError(f"{source}: {exc}. Is it the right file for this network?") from None


def load_network(name: str, path: str) -> nn.Module:
    """Build network `name` (a key of NETWORKS), load `path` into it strictly, fp32, eval mode, CPU."""
    if name not in NETWORKS:
        raise ColorizerLoadError(f"unknown preprocessor network {name!r}; known: {sorted(NETWORKS)}")
    spec = NETWORKS[name]
    net = spec.build()
    load_into(spec.target(net), read_state_dict(path), source=os.fspath(path))
    return net.float().eval().requires_grad_(False)


def find_weight_file(name: str, folders: Iterable[str], annotator_folders: Iterable[str] = ()) -> str:
    """First existing file for network `name` (any accepted file name).

    `folders` (the pack's model folder and its extra_model_paths entries) are searched directly and then
    recursively; `annotator_folders` (comfyui_controlnet_aux's `ckpts/lllyasviel/Annotators`) only directly
    and only for the lllyasviel/Annotators files (netG, erika, sk_model). Raises ColorizerLoadError naming the file, the
    folder(s) and the download URL.
    """
    spec = NETWORKS[name]
    folders = [os.fspath(f) for f in folders]
    extra_folders = [os.fspath(f) for f in annotator_folders] if spec.annotator else []
    for root in folders + extra_folders:
        for fname in spec.files:
            if os.path.isfile(os.path.join(root, fname)):
                return os.path.join(root, fname)
    for root in folders:
        if os.path.isdir(root):
            for dirpath, dirs, files in os.walk(root, followlinks=True):
                dirs.sort()
                for fname in spec.files:
                    if fname in files:
                        return os.path.join(dirpath, fname)
    shown = folders[0] if folders else "(no folder registered)"
    others = folders[1:] + extra_folders
    also = f" (also searched: {', '.join(others)})" if others else ""
    raise ColorizerLoadError(
        f"weights for {spec.name} ({spec.official_name}) not found: put {spec.files[0]} "
        f"from {spec.url} into {shown}{also}")
