"""Colours under the original page: the model's picture cut back to the drawing (Prepare Sketch's crop box),
resized to the page's own resolution and combined with the page's lines, so lettering, screentone and fine lines
stay as drawn.

* `multiply`: colour × page (per channel; a black pixel of the page stays exactly black, white paper shows the
  colour);
* `luminance`: the page's luminance with the model's hue (the colour scaled towards it as far as its brightest channel
  allows, then mixed with white for the rest; black stays exactly black);
* layers for a paint program: the flat colour (RGBA, opaque) and the lines (RGBA: black, alpha = 1 − page
  luminance).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ColorizerInputError

MODES = ("multiply", "luminance")
LUMA = (0.299, 0.587, 0.114)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] → [..., 1] (ITU-R 601)."""
    return (rgb * rgb.new_tensor(LUMA)).sum(-1, keepdim=True)


def colours_at_page(colours: torch.Tensor, crop_box, page_hw: tuple) -> torch.Tensor:
    """[H, W, 3] generated picture → [h, w, 3] at the page's size: the letterbox removed, then a bicubic resize
    (antialiased when shrinking), clamped to [0, 1]."""
    left, top, w, h = (int(v) for v in crop_box)
    if top + h > colours.shape[0] or left + w > colours.shape[1]:
        raise ColorizerInputError(f"the picture is {colours.shape[1]}x{colours.shape[0]}, smaller than the sketch's "
                                  f"drawing box {w}x{h} at ({left}, {top}): connect the picture decoded from this "
                                  "sketch's sampling")
    cut = colours[top:top + h, left:left + w].permute(2, 0, 1)[None].float()
    out = F.interpolate(cut, size=tuple(page_hw), mode="bicubic", align_corners=False, antialias=True)
    return out[0].permute(1, 2, 0).clamp(0, 1)


def combine(colour: torch.Tensor, page: torch.Tensor, mode: str = "multiply") -> torch.Tensor:
    """colour, page [h, w, 3] in [0, 1] → the coloured page."""
    if mode not in MODES:
        raise ColorizerInputError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "multiply":
        return colour * page
    # the colour scaled towards the page's luminance as far as its brightest channel allows, then mixed with white
    # for the rest: the result has exactly the page's luminance, the colour's hue; black stays black
    y_page, y_colour = luminance(page), luminance(colour)
    scale = torch.minimum(y_page / y_colour.clamp(min=1e-6), 1 / colour.amax(-1, keepdim=True).clamp(min=1e-6))
    scaled = (colour * scale).clamp(0, 1)
    y_scaled = luminance(scaled)
    t = ((y_page - y_scaled) / (1 - y_scaled).clamp(min=1e-6)).clamp(0, 1)
    out = scaled + (1 - scaled) * t
    return torch.where(y_page > 0, out.clamp(0, 1), torch.zeros_like(out))


def layers(colour: torch.Tensor, page: torch.Tensor) -> tuple:
    """(flat colour RGBA, lines RGBA), each [h, w, 4]."""
    flat = torch.cat([colour, torch.ones_like(colour[..., :1])], -1)
    lines = torch.cat([torch.zeros_like(page), 1 - luminance(page)], -1)
    return flat, lines
