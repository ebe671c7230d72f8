"""The XL colorizer's per-prompt vectors and inputs, as the official XL wrappers build them (golden_xl README §4).

* `y` [1, 512] of the UNet's label embedding: sinusoidal(√(H·W)) ⊕ sinusoidal(7.0) — generation size in pixels and
  the fixed aesthetic score (the reference plays no part);
* the xlv2 ReferenceNet's `y` [1, 1024]: sinusoidal of (0, 0, ch, cw), the crop scales of the background source;
* the ReferenceNet's input: background latent ⊕ sketch mask ⊕ reference mask, each mask bicubic-resized to the
  generation size, then reduced ×1/8 by nearest sampling (pixels 0, 8, 16, …);
* the reference scale of each of the 70 transformer blocks from the XL app's sliders.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AESTHETIC_SCORE = 7.0
EMBED_DIM = 256
XL_BLOCKS = 70
XL_ENCODER_BLOCKS = range(0, 24)
XL_LOW_BLOCKS = tuple(range(4, 24)) + tuple(range(34, 64))
XL_DECODER_START = 34


def _embed(values) -> torch.Tensor:
    from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

    return timestep_embedding(torch.as_tensor(values, dtype=torch.float32).reshape(-1), EMBED_DIM)


def size_vector(height: int, width: int) -> torch.Tensor:
    """`y` of the colorizing UNet for a generation of height × width pixels: [1, 512]."""
    h, w = torch.tensor([float(height)]), torch.tensor([float(width)])
    return _embed(torch.cat([(h * w) ** 0.5, torch.tensor([AESTHETIC_SCORE])])).reshape(1, -1)


def crop_scale(height: int, width: int, bg_height: int, bg_width: int) -> tuple:
    """Official `get_crop_scale` (float32 generation size, Python-float background aspect)."""
    h, w = torch.tensor([float(height)]), torch.tensor([float(width)])
    if bool(w / h > bg_width / bg_height):
        return (h / w) * (bg_width / bg_height), 1.0
    return 1.0, (w / h) * (bg_height / bg_width)


def background_vector(height: int, width: int, bg_height: int, bg_width: int) -> torch.Tensor:
    """`y` of the xlv2 ReferenceNet: [1, 1024]."""
    ch, cw = crop_scale(height, width, bg_height, bg_width)
    values = torch.tensor([float(v) for v in (0.0, 0.0, ch, cw)], dtype=torch.float32)
    return _embed(values).reshape(1, -1)


def latent_mask(mask: torch.Tensor) -> torch.Tensor:
    """A mask [B,1,H,W] at the generation size reduced to the latent grid as the XL code does (nearest ×1/8)."""
    return F.interpolate(mask, scale_factor=0.125)


def reference_net_input(z_bg: torch.Tensor, sketch_mask: torch.Tensor, reference_mask: torch.Tensor,
                        size: tuple) -> torch.Tensor:
    """[B, 4+1+1, H/8, W/8]: the background latent and the two masks (each bicubic to `size`, then nearest ×1/8)."""
    def small(m):
        return latent_mask(F.interpolate(m.float(), size=tuple(size), mode="bicubic"))

    return torch.cat([z_bg.float(), small(sketch_mask).to(z_bg.device), small(reference_mask).to(z_bg.device)], 1)


def reference_scales(family: str, strength: float = 1.0, encoder: float = 1.0, low: float = 1.0) -> tuple:
    """Reference strength of each XL transformer block as the XL app maps its sliders.

    sdxl: every block ← encoder·strength (the other sliders are unused). xlv2: blocks 0–23 ← encoder·strength,
    then 4–23 and 34–63 ← semantics (low)·strength; the middle block (24–33) and the last decoder blocks (64–69)
    are never written and keep 1. The app's color (middle) slider is skipped for XL.
    """
    if family == "sdxl":
        return (float(encoder * strength),) * XL_BLOCKS
    scales = [1.0] * XL_BLOCKS
    for i in XL_ENCODER_BLOCKS:
        scales[i] = float(encoder * strength)
    for i in XL_LOW_BLOCKS:
        scales[i] = float(low * strength)
    return tuple(scales)
