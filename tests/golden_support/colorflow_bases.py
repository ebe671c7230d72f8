"""The golden set's tiny ColorFlow bases (diffusers layout, sizes no released model has) as ComfyUI models, through
the pack's diffusers-folder loader."""
from __future__ import annotations

from pathlib import Path


def sd15(root: Path):
    from colorize_diffusion.model_patches.colorflow.diffusers_bases import load_model_folder

    return load_model_folder(str(Path(root) / "models" / "sd15_base" / "unet"))


def pixart(root: Path):
    from colorize_diffusion.model_patches.colorflow.diffusers_bases import load_model_folder

    return load_model_folder(str(Path(root) / "models" / "pixart_base" / "transformer"))
