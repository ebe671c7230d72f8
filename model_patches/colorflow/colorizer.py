"""A ColorFlow colorizer (one released folder) and how it patches a base MODEL: the folder's LoRA as ComfyUI weight
patches on the base's own keys, and its ColorGuider (in its own ModelPatcher) feeding the base's blocks."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from ...comfy_compat import reloadable_unet_patcher
from ...errors import ColorizerInputError
from . import files, pixart, sd15


@dataclass
class ColorFlowColorizer:
    folder: files.ColorFlowFolder
    guider_patcher: object              # comfy.model_patcher.ModelPatcher of the ColorGuider network
    # the LoRA's weight patches per base model (a chapter patches the same base once per page: read the file once)
    lora_patches: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)

    @property
    def family(self) -> str:
        return self.folder.family

    @property
    def name(self) -> str:
        import os

        return os.path.basename(os.path.normpath(self.folder.path))


def load_colorizer(path: str) -> ColorFlowColorizer:
    folder = files.read_folder(path)
    return ColorFlowColorizer(folder, reloadable_unet_patcher(files.load_guider, folder))


def base_family(model) -> str | None:
    """"pixart" / "sd15" / None of a ComfyUI MODEL, by its diffusion model's structure."""
    dm = model.get_model_object("diffusion_model")
    if hasattr(dm, "t_block") and hasattr(dm, "y_embedder"):
        return "pixart"
    if hasattr(dm, "input_blocks") and hasattr(dm, "output_blocks"):
        context = getattr(dm, "context_dim", None)
        return "sd15" if getattr(dm, "num_classes", None) is None and context not in (1024, 2048) else None
    return None


def apply_colorizer(model, colorizer: ColorFlowColorizer):
    """A clone of `model` with the colorizer's LoRA and ColorGuider; refuses a base of the other family."""
    family = base_family(model)
    if family != colorizer.family:
        have = {"pixart": "PixArt", "sd15": "a Stable Diffusion 1.x UNet", None: "another model"}[family]
        raise ColorizerInputError(
            f"the ColorFlow {colorizer.name}/ colorizer needs {files.BASE_NAMES[colorizer.family]} as its base, "
            f"but this MODEL is {have}: load "
            + ("PixArt-XL-2-1024-MS (Load Diffusion Model) with its T5 text encoder" if colorizer.family == "pixart"
               else "an SD1.5 checkpoint (v1-5-pruned-emaonly)"))
    patches = colorizer.lora_patches.get(model.model)
    if patches is None:
        key_map = files.pixart_lora_key_map(model.model) if family == "pixart" else \
            files.sd_lora_key_map(model.model)
        patches = files.lora_weight_patches(colorizer.folder.lora, key_map, model.model.state_dict())
        colorizer.lora_patches[model.model] = patches
    apply = pixart.apply_guider if family == "pixart" else sd15.apply_guider
    return apply(model, colorizer.guider_patcher, patches)
