"""Mask post-processing as the official app does it (all masks [B, 1, H, W], images [B, 3, H, W] in [-1, 1]).

- `dilate`: `max_pool2d(11, stride 1, pad 5)` (`dilate=True` of both SD2.1 reference-mask extractors).
- `scaled_resize`: `F.interpolate(scale_factor, bicubic)`, no antialias, no clamp (the sketch mask
  handed to the model at latent size uses 0.125).
- `bleach`: background-only reference `where(mask < ts, image, +1)` (BG enhance without a background
  image; also 'Remove foreground in background input').
- `keep_foreground`: 'Remove background in result' `where(mask >= ts, image, +1)`.
- `threshold_preview`: the gallery's `mask[mask < thr] = 0` (out of place here).
- `rmbg_proceed`: pre/post-processing of the default reference-mask extractor rmbg-v2 (BiRefNet /
  RMBG-2.0) around any callable network.
- `fit_mask`: a MASK from elsewhere brought to an image's size (see its docstring for the rules).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ColorizerInputError
from .convert import letterbox

DILATE_KERNEL = 11
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def dilate(mask: torch.Tensor, kernel: int = DILATE_KERNEL) -> torch.Tensor:
    if kernel <= 1:
        return mask
    if kernel % 2 == 0:
        raise ColorizerInputError(f"dilation kernel must be odd, got {kernel}")
    return F.max_pool2d(mask, kernel_size=kernel, stride=1, padding=kernel // 2)


def scaled_resize(x: torch.Tensor, scale_factor: float = 0.125, mode: str = "bicubic") -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale_factor, mode=mode)


def bleach(image: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Background-only image: pixels with mask >= threshold painted white (+1)."""
    return torch.where(mask < threshold, image, torch.ones_like(image))


def keep_foreground(image: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Foreground-only image: pixels with mask < threshold painted white (+1)."""
    return torch.where(mask >= threshold, image, torch.ones_like(image))


def threshold_preview(mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """`mask[mask < threshold] = 0` without touching the argument."""
    return torch.where(mask < threshold, torch.zeros_like(mask), mask)


def rmbg_proceed(net: Callable, x: torch.Tensor, dilate_mask: bool = False, size: int = 1024) -> torch.Tensor:
    """Official `rmbg_proceed` (SD2.1): [B,3,h,w] in [-1,1] -> [B,1,h,w] mask in [0,1].

    (x + 1) / 2, resize to size² (bilinear, antialias), ImageNet normalisation, `net(x)[-1].sigmoid()`,
    resize back (bilinear, antialias), 11x11 dilation if asked, clamp. The app's unused th/tw pad branch
    (which swaps left/right and top/bottom) is not reproduced.
    """
    b, c, h, w = x.shape
    y = (x.float() + 1.0) / 2.0
    y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=y.dtype, device=y.device).view(-1, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, dtype=y.dtype, device=y.device).view(-1, 1, 1)
    y = y.sub(mean).div(std)
    with torch.no_grad():
        out = net(y)[-1].sigmoid()
    out = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if dilate_mask:
        out = dilate(out)
    return out.clamp(0, 1)


def fit_mask(mask: torch.Tensor, height: int, width: int, what: str = "mask",
             pad_value: float = 0.0) -> torch.Tensor:
    """Bring a [B, 1, h, w] mask to (height, width) without silently cropping anything away.

    - same size: unchanged;
    - same height, narrower but at least half as wide (a mask of the reference before `Reference Pad`
      added side margins, pad scale <= 2): centred and padded with `pad_value` (0 = background) like the image;
    - same aspect ratio within 2 %: resized (bilinear);
    - anything else: ColorizerInputError naming both sizes.
    """
    h, w = mask.shape[-2:]
    if (h, w) == (height, width):
        return mask
    if h == height and w < width <= 2 * w + 1:
        return letterbox(mask, height, width, fill=pad_value)[0]
    if abs((w / h) / (width / height) - 1) <= 0.02:
        return F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    raise ColorizerInputError(f"{what} is {w}x{h} but the image is {width}x{height}: the aspect ratios differ, "
                              f"so the mask cannot belong to this image (resize or crop both the same way)")
