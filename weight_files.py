"""Weight files and strict loading, the bottom of the pack's layers (preprocessing and model code both use it).

* `read_state_dict`: the one weight-file reader, ComfyUI's `comfy.utils.load_torch_file` always in its weights-only
  mode (a pickle that needs more than tensors, and so could run code, is refused), with errors that name the file;
* `load_strict`: the one strict loader, on the parameters the module will have once loaded
  (`comfy_compat.expected_state_shapes`), never a fresh module's `state_dict()`.
"""
from __future__ import annotations

import os
import pickle

import torch
from torch import nn

from .comfy_compat import expected_state_shapes
from .errors import ColorizerLoadError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_state_dict(path, what: str = "weight file") -> dict[str, torch.Tensor]:
    """All tensors of a weight file on the CPU (`state_dict` wrappers unwrapped; other entries dropped)."""
    import comfy.utils

    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ColorizerLoadError(f"{what} not found: {path}")
    lower = path.lower()
    if not lower.endswith(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES):
        raise ColorizerLoadError(f"{name}: unsupported file type; use .safetensors (or .ckpt/.pt/.pth/.bin, "
                                 "which are read with weights-only loading)")
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except pickle.UnpicklingError as exc:
        raise ColorizerLoadError(
            f"{name} was refused: it is a pickle that needs more than plain tensors to load (it could run code). "
            "Convert it to .safetensors, or use the official release files. "
            f"Detail: {str(exc).splitlines()[0] if str(exc) else repr(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - truncated downloads, wrong formats: one clear message
        kind = "safetensors file" if lower.endswith(SAFETENSORS_SUFFIXES) else "PyTorch weight file"
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ColorizerLoadError(f"{name} is not a readable {kind} (truncated or damaged download?): {first}") \
            from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ColorizerLoadError(f"{name} does not hold a state dict of tensors")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_strict(module: nn.Module, tensors: dict, *, key_prefix: str = "", what: str = "", dtype=None,
                device=None, source: str = "") -> nn.Module:
    """Load `tensors` into `module`: every key it takes, no other, each of the shape it expects; the tensors are
    assigned (cast to `dtype`, moved to `device` when given), so a module built on the meta device, or with the
    lazy layers of a newer ComfyUI, ends up holding them. Errors name the checkpoint key (`key_prefix` + key) and,
    when given, the file (`source`).

    Expected keys and shapes come from the module's structure (`comfy_compat.expected_state_shapes`), never from a
    fresh module's `state_dict()`, which lists no key of a layer the host builds lazily."""
    try:
        return _load_strict(module, tensors, key_prefix, what or type(module).__name__, dtype, device)
    except ColorizerLoadError as exc:
        if not source:
            raise
        raise ColorizerLoadError(f"{source}: {exc}") from None


def _load_strict(module: nn.Module, tensors: dict, key_prefix: str, name: str, dtype, device) -> nn.Module:
    want = expected_state_shapes(module)
    missing = sorted(key_prefix + k for k in want if k not in tensors)
    unexpected = sorted(key_prefix + k for k in tensors if k not in want)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} key(s) of the {name}, e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"has {len(unexpected)} key(s) the {name} does not take, e.g. {unexpected[:5]}")
        raise ColorizerLoadError("the file " + " and ".join(parts))
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            raise ColorizerLoadError(f"{key_prefix + k}: the {name} expects shape {list(shape)}, "
                                     f"the file has {list(tensors[k].shape)}")
    cast = {}
    for k, t in tensors.items():
        kw = {}
        if device is not None:
            kw["device"] = device
        if dtype is not None and t.is_floating_point():
            kw["dtype"] = dtype
        cast[k] = t.to(**kw) if kw else t
    module.load_state_dict(cast, strict=True, assign=True)
    loaded = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if loaded != want:
        wrong = sorted(set(loaded.items()) ^ set(want.items()))
        raise ColorizerLoadError(f"the {name} did not take its weights as expected (host layer layout changed?): "
                                 f"{wrong[:5]}")
    return module


def with_batch_counters(module: nn.Module, tensors: dict) -> dict:
    """`tensors` with the BatchNorm `num_batches_tracked` counters `module` takes but the file lacks, at 0 (as torch
    starts them; released files often leave them out)."""
    out = dict(tensors)
    for key, shape in expected_state_shapes(module).items():
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.zeros(shape, dtype=torch.long)
    return out
