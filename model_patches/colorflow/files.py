"""ColorFlow's released folders (`sketch/`, `shading/`, `GraySD/` of TencentARC/ColorFlow), read unchanged:

    config.json + diffusion_pytorch_model.{safetensors,bin}   the ColorGuider (its class name says the base)
    transformer_lora.bin | unet_lora.bin                      peft LoRA of the base (adapter name kept in the keys)
    MultiResNetModel.bin                                      the guided super-resolution network

Every key is read by something or the load fails naming the file: the official code loads each of them with
`strict=False`, which would hide a LoRA written without the adapter name.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import torch

from ...errors import ColorizerLoadError
from ...weight_files import load_strict, read_state_dict
from .networks.pixart_guider import ColorGuiderPixArt
from .networks.sd_guider import ColorGuiderSD

GUIDER_CLASSES = {"ColorGuiderSDModel": "sd15", "ColorGuiderPixArtModel": "pixart"}
BASE_NAMES = {"sd15": "Stable Diffusion 1.5", "pixart": "PixArt-alpha XL (1024-MS)"}
LORA_FILES = {"sd15": "unet_lora.bin", "pixart": "transformer_lora.bin"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SUPER_RESOLUTION_FILE = "MultiResNetModel.bin"
LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


@dataclass
class ColorFlowFolder:
    path: str
    family: str               # "sd15" | "pixart"
    config: dict
    weights: str
    lora: str


def read_folder(path: str) -> ColorFlowFolder:
    name = os.path.basename(os.path.normpath(path))
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ColorizerLoadError(f"{name}/ has no config.json: a ColorFlow model folder (sketch/, shading/ or "
                                 "GraySD/ of TencentARC/ColorFlow) holds the ColorGuider's config.json and weights")
    config = json.loads(open(config_path, encoding="utf-8").read())
    family = GUIDER_CLASSES.get(config.get("_class_name", ""))
    if family is None:
        raise ColorizerLoadError(f"{name}/config.json describes a {config.get('_class_name')!r}, not a ColorFlow "
                                 f"ColorGuider ({', '.join(GUIDER_CLASSES)})")
    weights = next((os.path.join(path, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(path, f))), None)
    if weights is None:
        raise ColorizerLoadError(f"{name}/ has no ColorGuider weights ({' or '.join(WEIGHT_FILES)})")
    lora = os.path.join(path, LORA_FILES[family])
    if not os.path.isfile(lora):
        raise ColorizerLoadError(f"{name}/ has the ColorGuider but not its LoRA {LORA_FILES[family]}: the guider only "
                                 f"works with the {BASE_NAMES[family]} base patched by that LoRA; copy the whole "
                                 "folder of the release")
    return ColorFlowFolder(path, family, config, weights, lora)


def lora_pairs(path: str) -> dict:
    """module name -> (A, B) of a peft LoRA file (`<module>.lora_A.<adapter>.weight`)."""
    name = os.path.basename(path)
    sd = read_state_dict(path, "ColorFlow LoRA file")
    pairs: dict = {}
    for key, tensor in sd.items():
        m = LORA_KEY.match(key)
        if m is None:
            raise ColorizerLoadError(f"{name}: {key} is not a LoRA key (<module>.lora_A/lora_B[.adapter].weight)")
        pairs.setdefault(m.group(1), {})[m.group(2)] = tensor
    broken = sorted(k for k, v in pairs.items() if set(v) != {"A", "B"})
    if broken:
        raise ColorizerLoadError(f"{name}: {', '.join(broken[:3])} lack their lora_A or lora_B half")
    return {k: (v["A"], v["B"]) for k, v in pairs.items()}


def lora_weight_patches(path: str, module_to_key: dict, model_weights: dict) -> dict:
    """ComfyUI weight patches (key -> ("lora", ...) through `comfy.lora.load_lora`) of a peft LoRA whose module
    names `module_to_key` maps to the model's weight keys. Scale 1 (the release's lora_alpha equals its rank)."""
    import comfy.lora

    name = os.path.basename(path)
    pairs = lora_pairs(path)
    unknown = sorted(m for m in pairs if m not in module_to_key)
    if unknown:
        raise ColorizerLoadError(f"{name} adapts modules this base model does not have: {', '.join(unknown[:3])}"
                                 f"{' ...' if len(unknown) > 3 else ''} ({len(unknown)}): the LoRA belongs to "
                                 "another base")
    for module, (a, b) in pairs.items():
        target = module_to_key[module]
        weight = model_weights.get(target) if isinstance(target, str) else None
        if isinstance(target, tuple) and target[0] in model_weights:
            weight = model_weights[target[0]].narrow(*target[1])
        if weight is not None and (b.shape[0] != weight.shape[0] or a.shape[1] != weight.shape[1]):
            raise ColorizerLoadError(f"{name}: {module} is {tuple(b.shape[:1]) + tuple(a.shape[1:2])} but the base's "
                                     f"weight is {tuple(weight.shape[:2])}: the LoRA belongs to another base size")
    flat = {}
    for module, (a, b) in pairs.items():
        flat[f"{module}.lora_A.weight"] = a
        flat[f"{module}.lora_B.weight"] = b
    key_map = {module: module_to_key[module] for module in pairs}
    patches = comfy.lora.load_lora(flat, key_map, log_missing=False)
    if len(patches) != len(pairs):
        raise ColorizerLoadError(f"{name}: {len(pairs) - len(patches)} of its modules were not taken by ComfyUI's "
                                 "LoRA loader")
    return patches


def sd_lora_key_map(model) -> dict:
    """Diffusers module name -> ComfyUI weight key of an SD UNet (`model`: a ComfyUI BaseModel)."""
    import comfy.utils

    out = {}
    for diffusers_key, ldm_key in comfy.utils.unet_to_diffusers(model.model_config.unet_config).items():
        if diffusers_key.endswith(".weight"):
            out[diffusers_key[: -len(".weight")]] = f"diffusion_model.{ldm_key}"
    return out


def load_guider(folder: ColorFlowFolder):
    """The folder's ColorGuider network (plain torch, float32, eval), every key of its weight file read."""
    name = f"{os.path.basename(os.path.normpath(folder.path))}/{os.path.basename(folder.weights)}"
    sd = read_state_dict(folder.weights, "ColorGuider weights")
    if folder.family == "sd15":
        net = ColorGuiderSD(folder.config)
        ignore = ()
    else:
        net = ColorGuiderPixArt(folder.config)
        ignore = ColorGuiderPixArt.DUPLICATE_KEYS(sd)
    load_strict(net, {k: v for k, v in sd.items() if k not in ignore}, source=name,
                what=f"ColorGuider of its config.json ({folder.family})", dtype=torch.float32)
    return net.eval()


def pixart_lora_key_map(model) -> dict:
    """Diffusers module name -> ComfyUI weight key (or (key, (dim, offset, size)) for a slice of a fused qkv/kv
    weight) of ComfyUI's PixArt-alpha model."""
    import comfy.utils

    config = model.model_config.unet_config
    mapping = comfy.utils.pixart_to_diffusers({"depth": len(model.diffusion_model.blocks),
                                               "hidden_size": config.get("hidden_size", 1152)},
                                              output_prefix="diffusion_model.")
    return {k[: -len(".weight")]: v for k, v in mapping.items() if k.endswith(".weight")}
