"""One spec per ColorFlow family (the base its colorizer patches): PixArt-alpha (the sketch/ and shading/ folders)
and SD1.5 (GraySD/). The folder's config.json names the family (its ColorGuider class); the colorizer looks the spec
up once, and the files, conditioning, sampling and nodes read what a family does from it, never from its name."""
from __future__ import annotations

from dataclasses import dataclass

from ..common.specs import spec_from


@dataclass(frozen=True)
class ColorFlowSpec:
    name: str                 # "pixart" | "sd15"
    guider_class: str         # the ColorGuider's `_class_name` in the folder's config.json
    base_name: str            # the base the guider and its LoRA were trained on (messages)
    base_hint: str            # what to load as that base (messages)
    lora_file: str            # the base's LoRA in the folder
    canvas_step: int          # the canvas's sides are multiples of it (VAE ×8, and PixArt's 2×2 patches)
    guide_pictures: int       # VAE-encoded pictures in the guider's input: PixArt 2 (the canvas with a black centre,
    #                           black with the canvas's centre), SD1.5 1 (the whole canvas)
    guider_channels: int      # the guider input's channels: 4 per picture and the mask
    size_conditioning: bool   # PixArt's micro-conditions: the canvas size goes into the text conditioning
    schedule: str             # the official timesteps: "linspace" (PixArt) | "leading" (SD1.5)
    betas: str                # the official noise schedule: "linear" (PixArt) | "scaled_linear" (SD1.5)
    sampler: str              # the official solver: "dpmpp_2m" (ComfyUI's own) | "unipc" (sampling.sample_unipc)


FAMILIES: dict[str, ColorFlowSpec] = {spec.name: spec for spec in (
    ColorFlowSpec("pixart", "ColorGuiderPixArtModel", "PixArt-alpha XL (1024-MS)",
                  "PixArt-XL-2-1024-MS (Load Diffusion Model) with its T5 text encoder", "transformer_lora.bin",
                  canvas_step=16, guide_pictures=2, guider_channels=9, size_conditioning=True, schedule="linspace",
                  betas="linear", sampler="dpmpp_2m"),
    ColorFlowSpec("sd15", "ColorGuiderSDModel", "Stable Diffusion 1.5", "an SD1.5 checkpoint (v1-5-pruned-emaonly)",
                  "unet_lora.bin", canvas_step=8, guide_pictures=1, guider_channels=5, size_conditioning=False,
                  schedule="leading", betas="scaled_linear", sampler="unipc"),
)}
BY_GUIDER_CLASS = {spec.guider_class: spec for spec in FAMILIES.values()}


def spec_of(family) -> ColorFlowSpec:
    """The spec of `family`: a ColorFlowSpec as it is, or a family name."""
    return spec_from(FAMILIES, family, "ColorFlow")
