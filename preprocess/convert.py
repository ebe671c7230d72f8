"""Conversions between ComfyUI's IMAGE / MASK layouts and the official app's tensors, plus input checks.

- ComfyUI IMAGE: [B, H, W, C] float in [0, 1] (C = 3; 1 and 4 are accepted here).
- ComfyUI MASK: [B, H, W] float (also [H, W], [B, 1, H, W], [B, C, H, W] from packs such as
  comfyui_controlnet_aux); `as_mask_batch` turns any of them into [B, 1, H, W].
- Model space (official `functool.to_tensor`): [B, 3, H, W] in [-1, 1] = (u8 / 255 - 0.5) / 0.5.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ColorizerInputError

MIN_SIDE = 8          # smaller inputs carry no usable line art
MAX_SIDE = 8192       # larger inputs are refused instead of exhausting memory


def check_image(image, what: str = "image") -> torch.Tensor:
    """Validate an IMAGE tensor; returns it as float32 [B, H, W, C] (C in 1, 3, 4)."""
    if not isinstance(image, torch.Tensor):
        raise ColorizerInputError(f"{what} must be an IMAGE tensor, got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ColorizerInputError(f"{what} must be an IMAGE [batch, height, width, channels] with 1, 3 or 4 "
                                  f"channels, got shape {tuple(image.shape)}")
    b, h, w, _ = image.shape
    if b == 0:
        raise ColorizerInputError(f"{what} is an empty batch")
    if min(h, w) < MIN_SIDE:
        raise ColorizerInputError(f"{what} is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    if max(h, w) > MAX_SIDE:
        raise ColorizerInputError(f"{what} is {w}x{h} pixels; the largest side accepted is {MAX_SIDE}. "
                                  f"Scale it down first (e.g. with an Upscale Image node)")
    image = image.float()
    if not torch.isfinite(image).all():
        raise ColorizerInputError(f"{what} contains NaN or infinite values")
    return image


def rgb(image: torch.Tensor, background: float = 1.0) -> torch.Tensor:
    """[B, H, W, C] -> [B, H, W, 3]: grey is repeated, RGBA is composited over `background`."""
    if image.shape[-1] == 1:
        return image.repeat(1, 1, 1, 3)
    if image.shape[-1] == 4:
        alpha = image[..., 3:4].clamp(0, 1)
        return image[..., :3] * alpha + background * (1 - alpha)
    return image


def letterbox(x: torch.Tensor, height: int, width: int, fill: float = -1.0):
    """Official `pad_image`: centre [..., h, w] on a `fill` canvas of (height, width); returns
    (canvas, (left, top, w, h)). The one padded-canvas helper (sketch letterbox, reference margins, masks, ISNet)."""
    h, w = x.shape[-2:]
    canvas = torch.full((*x.shape[:-2], height, width), fill, dtype=x.dtype, device=x.device)
    left, top = (width - w) // 2, (height - h) // 2
    canvas[..., top:top + h, left:left + w] = x
    return canvas, (left, top, w, h)


def to_model(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [B, H, W, 3] in [0, 1] -> [B, 3, H, W] in [-1, 1] (bit-identical to to_tensor for k/255 values)."""
    return image.permute(0, 3, 1, 2).float() * 2 - 1


def from_model(x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> IMAGE [B, H, W, C] in [0, 1]."""
    y = ((x + 1) / 2).permute(0, 2, 3, 1)
    return y.clamp(0, 1) if clamp else y


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """One IMAGE [H, W, C] in [0, 1] -> uint8 HWC, rounded (what PIL/Gradio hand the app)."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def u8_to_model(u8) -> torch.Tensor:
    """uint8 HWC (numpy or tensor) -> [1, C, H, W] in [-1, 1], exactly as ToTensor + Normalize(0.5, 0.5)."""
    t = torch.as_tensor(np.asarray(u8)).permute(2, 0, 1).contiguous().float().div(255)
    return ((t - 0.5) / 0.5).unsqueeze(0)


def model_to_u8(x: torch.Tensor) -> np.ndarray:
    """Official `to_numpy` for images: ((clamp(x, -1, 1) + 1) * 127.5) truncated to uint8, [B, H, W, C]."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


def mask_to_u8(mask: torch.Tensor) -> np.ndarray:
    """Official `to_numpy(mask, not_mask=False)`: (clamp(0, 1) * 255) truncated, first mask, [H, W]."""
    return (mask.clamp(0, 1) * 255)[0][0].cpu().numpy().astype(np.uint8)


def as_mask_batch(mask, what: str = "mask") -> torch.Tensor:
    """Any MASK layout -> float32 [B, 1, H, W].

    Accepts [H, W], [B, H, W], [B, 1, H, W] and [B, C, H, W] (channels collapsed by their maximum,
    e.g. comfyui_controlnet_aux's [N, 3, H, W] masks) and an IMAGE-like [B, H, W, C] with C in 1, 3, 4
    only when C is clearly the last axis (H and W larger than 4).
    """
    if not isinstance(mask, torch.Tensor):
        raise ColorizerInputError(f"{what} must be a MASK tensor, got {type(mask).__name__}")
    m = mask.float()
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    elif m.ndim == 4:
        if m.shape[1] not in (1, 3, 4) and m.shape[-1] in (1, 3, 4):
            m = m.permute(0, 3, 1, 2)
        if m.shape[1] != 1:
            m = m.amax(dim=1, keepdim=True)
    else:
        raise ColorizerInputError(f"{what} must have 2, 3 or 4 dimensions ([H,W], [B,H,W], [B,1,H,W]), "
                                  f"got shape {tuple(mask.shape)}")
    if m.shape[0] == 0 or min(m.shape[-2:]) < 1:
        raise ColorizerInputError(f"{what} is empty (shape {tuple(mask.shape)})")
    if not torch.isfinite(m).all():
        raise ColorizerInputError(f"{what} contains NaN or infinite values")
    return m


def match_batch(n_image: int, n_mask: int, what: str) -> None:
    """A mask batch must have the image's batch size or 1 (broadcast)."""
    if n_mask not in (1, n_image):
        raise ColorizerInputError(f"{what}: {n_mask} masks for {n_image} images; give one mask per image "
                                  f"or a single mask for all")
