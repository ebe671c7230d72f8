"""A ColorFlow colorizer (one released folder) and how it patches a base MODEL: the folder's LoRA as ComfyUI weight
patches on the base's own keys, and its ColorGuider (in its own ModelPatcher) feeding the base's blocks; and ColorFlow
Conditioning's work: the patched base and the guider's input latents of a retrieval canvas in the positive and
negative, as the official pipelines build them."""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field

import torch

from ...comfy_compat import reloadable_unet_patcher
from ...errors import ColorizerInputError
from ...preprocess import convert
from . import conditioning, files, pixart, sd15
from .families import ColorFlowSpec, spec_of

# how each family's base is patched: (its ColorGuider patch, the map of its LoRA's module names to the base's keys)
BASES = {"pixart": (pixart.apply_guider, files.pixart_lora_key_map),
         "sd15": (sd15.apply_guider, files.sd_lora_key_map)}


@dataclass
class ColorFlowColorizer:
    folder: files.ColorFlowFolder
    guider_patcher: object              # comfy.model_patcher.ModelPatcher of the ColorGuider network
    # the LoRA's weight patches per base model (a chapter patches the same base once per page: read the file once)
    lora_patches: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)
    spec: ColorFlowSpec = field(init=False, repr=False)     # the family's spec, looked up once

    def __post_init__(self):
        self.spec = spec_of(self.folder.family)

    @property
    def family(self) -> str:
        return self.folder.family

    @property
    def name(self) -> str:
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
            f"the ColorFlow {colorizer.name}/ colorizer needs {colorizer.spec.base_name} as its base, "
            f"but this MODEL is {have}: load {colorizer.spec.base_hint}")
    apply_guider, lora_key_map = BASES[family]
    patches = colorizer.lora_patches.get(model.model)
    if patches is None:
        patches = files.lora_weight_patches(colorizer.folder.lora, lora_key_map(model.model), model.model.state_dict())
        colorizer.lora_patches[model.model] = patches
    return apply_guider(model, colorizer.guider_patcher, patches)


def condition(model, colorizer: ColorFlowColorizer, vae, positive, negative, canvas: torch.Tensor,
              mask: torch.Tensor, strength: float = 1.0, seed: int = 0):
    """ColorFlow Conditioning: (patched MODEL, positive, negative, LATENT) for a retrieval canvas (NHWC in [0, 1])
    and its mask (NHW, 1 on the page). The guider's input latents are posterior samples drawn from `seed` (the
    official app draws them too), one set per conditioning; the latent is empty, of the canvas's size and batch."""
    import comfy.model_management

    spec = colorizer.spec
    patched = apply_colorizer(model, colorizer)
    conditioning.check_canvas(canvas, mask, spec)
    b, h, w = canvas.shape[:3]
    convert.match_batch(b, mask.shape[0], "mask")
    mask = mask.expand(b, -1, -1)
    comfy.model_management.load_models_gpu([vae.patcher])
    device, dtype = vae.device, vae.vae_dtype
    gen = torch.Generator().manual_seed(int(seed))
    eps = {row: [torch.randn((b, 4, h // 8, w // 8), generator=gen) for _ in range(spec.guide_pictures)]
           for row in ("negative", "positive")}
    scale = patched.model.latent_format.scale_factor
    guides = {}
    with torch.no_grad():
        for row in ("negative", "positive"):
            latents, _ = conditioning.guider_latents(
                spec, vae.first_stage_model, canvas.to(device, dtype), mask.to(device, dtype),
                [e.to(device, dtype) for e in eps[row]], scale)
            guides[row] = latents.to(comfy.model_management.intermediate_device(), torch.float32)
    size = {"width": w, "height": h} if spec.size_conditioning else {}
    pos = conditioning.attach([[c, {**o, **size}] for c, o in positive], guides["positive"], strength)
    neg = conditioning.attach([[c, {**o, **size}] for c, o in negative], guides["negative"], strength)
    latent = torch.zeros((b, 4, h // 8, w // 8), device=comfy.model_management.intermediate_device())
    return patched, pos, neg, {"samples": latent}
