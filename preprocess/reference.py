"""Reference-side helpers and the app's gallery previews.

- `pad_image_with_margin`: official white side margins (`pad_scale`, "Reference padding scale" 1..2):
  canvas (int(w * scale), h) filled white, the picture pasted at ((nw - w) // 2, 0); no vertical pad.
- `background_only`: the background-only reference (IMAGE space) `where(mask < ts, image, white)`.
- `overlay`: previews of a mask over an image (the app's gallery composites and a tinted overlay).
- `gallery`: `functool.postprocess` (crop, to_numpy truncation, in-place thresholds, composites).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import ColorizerInputError
from .convert import letterbox, mask_to_u8, model_to_u8, u8_to_model
from .masks import bleach, threshold_preview

OVERLAY_MODES = ("mask", "foreground only", "background only", "tint")


def pad_image_with_margin(image: torch.Tensor, scale: float) -> torch.Tensor:
    """IMAGE [B, H, W, C] -> [B, H, int(W * scale), C], white margins left and right (scale <= 1: unchanged)."""
    if not scale > 0:
        raise ColorizerInputError(f"pad scale must be positive, got {scale}")
    h, w = image.shape[1:3]
    nw = int(w * scale)
    if nw <= w:
        return image
    return letterbox(image.movedim(-1, 1), h, nw, fill=1.0)[0].movedim(1, -1)


def pad_mask_with_margin(mask: torch.Tensor, scale: float) -> torch.Tensor:
    """[B, 1, H, W] mask padded like `pad_image_with_margin`, margins 0 (background)."""
    h, w = mask.shape[-2:]
    nw = int(w * scale)
    if nw <= w:
        return mask
    return letterbox(mask, h, nw, fill=0.0)[0]


def resize_like_app(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE [1, H, W, 3] in [0, 1] -> [1, 3, height, width] in [-1, 1], resized as the app resizes a PIL picture
    (8-bit, PIL bicubic; torchvision `Resize` on a PIL image), e.g. the reference of the attention injection."""
    u8 = (image[0, ..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    small = Image.fromarray(u8).resize((int(width), int(height)), Image.BICUBIC)
    return u8_to_model(np.array(small))        # a writable copy


def background_only(image: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IMAGE [B, H, W, 3] and mask [B or 1, 1, H, W] -> IMAGE with the character (mask >= ts) painted white.

    Same numbers as the app's `where(rmask < ts, reference, +1)` in [-1, 1] (x -> (x + 1) / 2 is exact here).
    """
    return bleach(image, mask[:, 0, :, :, None], threshold)


def composite_u8(image_u8: np.ndarray, mask_u8: np.ndarray, foreground: bool) -> np.ndarray:
    """The gallery's `Image.composite` with a white canvas: foreground (mask) or background (1 - mask) kept."""
    img = Image.fromarray(np.ascontiguousarray(image_u8))
    white = Image.new("RGB", img.size, (255, 255, 255))
    m = Image.fromarray(np.ascontiguousarray(mask_u8, dtype=np.uint8))   # 2-D uint8 -> mode "L"
    out = Image.composite(img, white, m) if foreground else Image.composite(white, img, m)
    return np.asarray(out)


def overlay(image: torch.Tensor, mask: torch.Tensor, mode: str = "tint", threshold: float = 0.5,
            color=(1.0, 0.0, 0.0), opacity: float = 0.5) -> torch.Tensor:
    """Preview IMAGE [B, H, W, 3] of mask [B or 1, 1, H, W] over image [B, H, W, 3].

    mask: the thresholded mask as grey (`mask[mask < ts] = 0`, the app's preview);
    foreground only / background only: the app's gallery composites (uint8, PIL) with the thresholded mask;
    tint: `color` blended with `opacity` where mask >= threshold.
    """
    if mode not in OVERLAY_MODES:
        raise ColorizerInputError(f"overlay mode must be one of {OVERLAY_MODES}, got {mode!r}")
    b = image.shape[0]
    masks = mask.expand(b, -1, -1, -1) if mask.shape[0] == 1 else mask
    thr = threshold_preview(masks, threshold)
    if mode == "mask":
        return thr[:, 0, :, :, None].clamp(0, 1).repeat(1, 1, 1, 3)
    if mode == "tint":
        sel = (masks[:, 0] >= threshold)[..., None]
        tint = torch.tensor(color, dtype=image.dtype, device=image.device)
        return torch.where(sel, image * (1 - opacity) + tint * opacity, image)
    outs = []
    for i in range(b):
        u8 = model_to_u8(image[i:i + 1].permute(0, 3, 1, 2) * 2 - 1)[0]
        comp = composite_u8(u8, mask_to_u8(thr[i:i + 1]), mode == "foreground only")
        outs.append(torch.from_numpy(comp.astype(np.float32) / 255))
    return torch.stack(outs).to(image.device)


def gallery(results, sketch, reference=None, background=None, crop=False, crop_box=None, mask_guided=False,
            smask=None, rmask=None, bgmask=None, mask_ts=0.5, mask_ss=0.05) -> dict:
    """`functool.postprocess`: the gallery images (uint8) by role, plus the thresholded masks.

    Inputs are model-space tensors ([B, 3, H, W] in [-1, 1], masks [B, 1, H, W]); `smask` / `rmask` are
    NOT modified (the app thresholds them in place: the thresholded copies are returned instead).
    """
    out = {"results": [], "smask_thresholded": None, "rmask_thresholded": None}
    for r in model_to_u8(results):
        if crop:
            left, top, w, h = crop_box
            r = np.asarray(Image.fromarray(r).crop((left, top, left + w, top + h)))
        out["results"].append(r)
    out["sketch"] = model_to_u8(sketch)[0]
    if reference is not None:
        out["reference"] = model_to_u8(reference)[0]
    if background is not None:
        out["background"] = model_to_u8(background)[0]
        if bgmask is not None:
            m = mask_to_u8(bgmask)
            out["background_fg_only"] = composite_u8(out["background"], m, True)
            out["background_bg_only"] = composite_u8(out["background"], m, False)
    if mask_guided:
        smask = threshold_preview(smask, mask_ss)
        out["smask_thresholded"] = smask
        out["smask_preview"] = mask_to_u8(smask)
        if rmask is not None:
            rmask = threshold_preview(rmask, mask_ts)
            out["rmask_thresholded"] = rmask
            out["rmask_preview"] = m = mask_to_u8(rmask)
            out["reference_fg_only"] = composite_u8(out["reference"], m, True)
            out["reference_bg_only"] = composite_u8(out["reference"], m, False)
    return out
