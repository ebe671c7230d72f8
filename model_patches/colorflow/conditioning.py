"""ColorFlow's ColorGuider input latents from a retrieval canvas (2W x 2H, the page in its centre) and its mask, as
the official pipelines build them:

* PixArt (sketch, shaded sketch): 9 channels = VAE latent of the canvas with its centre painted black, the mask,
  the VAE latent of black with the canvas's centre;
* SD1.5 (grey pages): 5 channels = VAE latent of the whole canvas, the mask.

Latents are posterior samples (mean + std * eps) times the model's scale factor; the mask channel is 1 - the mask
picture's red channel (the mask picture is white on the page; the channel is 1 on the retrieved references
around it), bilinearly resized to the latent grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ColorizerInputError
from .vae_features import encoder_features, posterior_sample

GUIDER_CHANNELS = {"pixart": 9, "sd15": 5}
GUIDE_KEY = "colorflow_guide"           # model_conds: the guider's conditioning latents of each row
SCALE_KEY = "colorflow_scale"           # model_conds: the guider strength (a constant)


def attach(conditioning: list, guide: torch.Tensor, scale: float = 1.0) -> list:
    """A copy of `conditioning` whose entries carry the guider's input latents (batched by ComfyUI like the latent
    rows, so each row of a UNet call gets its own) and strength."""
    import comfy.conds

    out = []
    for context, options in conditioning:
        conds = dict(options.get("model_conds", {}))
        conds[GUIDE_KEY] = comfy.conds.CONDRegular(guide)
        conds[SCALE_KEY] = comfy.conds.CONDConstant(float(scale))
        out.append([context, {**options, "model_conds": conds}])
    return out


def check_guide_size(guide: torch.Tensor, x: torch.Tensor) -> None:
    """The guider's conditioning latents must have the size of the latent being sampled."""
    if guide.shape[-2:] != x.shape[-2:]:
        raise ColorizerInputError(
            f"the ColorFlow conditioning is {guide.shape[-1] * 8}x{guide.shape[-2] * 8} pixels but the latent "
            f"being sampled is {x.shape[-1] * 8}x{x.shape[-2] * 8}: sample the latent of ColorFlow Conditioning")


def split_canvas(canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(canvas with a black centre, black with the canvas's centre); NHWC in [0, 1]. The centre is the middle half
    of each side, as the pipeline crops it: [(w - w//2)//2, +w//2)."""
    h, w = canvas.shape[1:3]
    top, left = (h - h // 2) // 2, (w - w // 2) // 2
    outer = canvas.clone()
    outer[:, top:top + h // 2, left:left + w // 2] = 0
    centre = torch.zeros_like(canvas)
    centre[:, top:top + h // 2, left:left + w // 2] = canvas[:, top:top + h // 2, left:left + w // 2]
    return outer, centre


def mask_channel(mask: torch.Tensor, latent_hw: tuple) -> torch.Tensor:
    """[N, 1, h, w]: 1 - the red channel of the mask picture (NHWC), or 1 - a MASK (NHW, the retrieval's: 1 on the
    page), bilinear to the latent size."""
    red = mask[..., 0] if mask.ndim == 4 else mask
    return F.interpolate((1 - red)[:, None].float(), size=tuple(latent_hw), mode="bilinear", align_corners=False)


def _latent(first_stage, image_nhwc: torch.Tensor, eps: torch.Tensor, scale: float):
    moments, _ = encoder_features(first_stage, image_nhwc.movedim(-1, 1) * 2 - 1)
    mean, logvar = moments.chunk(2, dim=1)
    return posterior_sample(moments, eps) * scale, mean, torch.exp(0.5 * logvar.clamp(-30.0, 20.0))


def guider_latents(family: str, first_stage, canvas: torch.Tensor, mask: torch.Tensor, eps: list, scale: float):
    """The ColorGuider input of `family` ("pixart": eps for the outer and the centre picture; "sd15": one eps).
    Returns (latents [N, 9 or 5, h, w], {name: (mean, std)} of each encoded picture)."""
    if canvas.shape[1] % 8 or canvas.shape[2] % 8:
        raise ColorizerInputError(f"the canvas is {canvas.shape[2]}x{canvas.shape[1]} pixels: ColorFlow's canvas "
                                  "is a multiple of 8 on each side (twice the page size)")
    if family == "pixart":
        outer, centre = split_canvas(canvas)
        lat_a, mean_a, std_a = _latent(first_stage, outer, eps[0], scale)
        lat_b, mean_b, std_b = _latent(first_stage, centre, eps[1], scale)
        m = mask_channel(mask, lat_a.shape[-2:]).to(lat_a)
        return torch.cat([lat_a, m, lat_b], 1), {"A": (mean_a, std_a), "B": (mean_b, std_b)}
    lat, mean, std = _latent(first_stage, canvas, eps[0], scale)
    return torch.cat([lat, mask_channel(mask, lat.shape[-2:]).to(lat)], 1), {"canvas": (mean, std)}
