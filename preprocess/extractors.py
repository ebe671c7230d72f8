"""Line extraction around the networks, step for step as the app's `proceed()` methods.

Every extractor takes the sketch as the app has it (uint8 RGB, already squashed to the extractor's
square by PIL bicubic) and returns [1, 3, S, S] in [-1, 1], white lines on black:

| method | official name | network input | output |
|---|---|---|---|
| `sketchKeras` (default) | lineart_keras | uint8 blur sigma 3 (19 taps), int(img) - int(blur), /127.5, |
|   |   | / global max; R, G, B as a batch of 3 grey images | amax over the 3, < 0.1 -> 0, (p - 0.5) * 2 |
| `anime2sketch` | lineart | (u8/255 - 0.5)/0.5 | -out (tanh, clamped) |
| `manga` | lineart_denoise | R channel only, ToTensor * 255 | -(clamp(y,0,255)/127.5 - 1) |
| `sk_model` | lineart_sk | pil_to_tensor().float() (0..255, un-normalised) | -sigmoid, in [-1, 0] |

Differences from the app: a blank input to sketchKeras (global max 0) raises ColorizerInputError
instead of producing an all-NaN sketch.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import ColorizerInputError

KERAS_SIGMA = 3
KERAS_CUT = 0.1
EXTRACT_SIZE = 512            # the SD2.1 app squashes every sketch to 512x512 (the XL app: 768)

# input side multiple each network needs (stride-2 stages)
SIZE_MULTIPLE = {"sketchKeras": 16, "anime2sketch": 256, "manga": 16, "sk_model": 4}
METHODS = tuple(SIZE_MULTIPLE)


def squash(u8: np.ndarray, size: int = EXTRACT_SIZE) -> np.ndarray:
    """torchvision Resize((size, size), bicubic) on the PIL image: PIL bicubic, uint8 result."""
    img = Image.fromarray(np.ascontiguousarray(u8))
    return np.asarray(img.resize((size, size), Image.BICUBIC))


def _run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    p = next(net.parameters())
    with torch.no_grad():
        return net(x.to(p.device, p.dtype)).float().cpu()


def keras_input(u8: np.ndarray) -> torch.Tensor:
    """sketchKeras' high-pass input [3, 1, H, W] from uint8 RGB HWC."""
    img = np.asarray(u8)
    blurred = cv2.GaussianBlur(img, (0, 0), KERAS_SIGMA)
    hp = img.astype(int) - blurred.astype(int)
    hp = hp.astype(np.float32) / 127.5
    peak = np.max(hp)
    if not peak > 0:
        raise ColorizerInputError("the sketch is blank (no pixel differs from its surroundings): sketchKeras "
                                  "has no lines to extract (the official app would produce an all-NaN sketch)")
    hp /= peak
    return torch.from_numpy(hp).unsqueeze(0).permute(3, 0, 1, 2).contiguous()


def keras_postprocess(out: torch.Tensor, cut: float = KERAS_CUT) -> torch.Tensor:
    p = torch.amax(out, 0)
    p = torch.where(p < cut, torch.zeros_like(p), p)
    return ((p - 0.5) * 2).unsqueeze(1).repeat(1, 3, 1, 1)


def network_input(method: str, u8: np.ndarray) -> torch.Tensor:
    if method == "sketchKeras":
        return keras_input(u8)
    t = torch.from_numpy(np.array(u8, dtype=np.uint8)).permute(2, 0, 1).contiguous()   # [3, H, W] uint8
    if method == "anime2sketch":
        return ((t.float().div(255) - 0.5) / 0.5).unsqueeze(0)
    if method == "manga":
        return (t.float().div(255).unsqueeze(0)[:, 0] * 255).unsqueeze(1)
    if method == "sk_model":
        return t.unsqueeze(0).float()
    raise ColorizerInputError(f"unknown line extraction method {method!r}; choose one of {METHODS}")


def extract(method: str, net: nn.Module, u8: np.ndarray) -> torch.Tensor:
    """The extractor's `proceed()` on uint8 RGB HWC (sides a multiple of SIZE_MULTIPLE[method]).

    Returns [1, 3, H, W] in [-1, 1], white lines on black.
    """
    if method not in SIZE_MULTIPLE:
        raise ColorizerInputError(f"unknown line extraction method {method!r}; choose one of {METHODS}")
    h, w = np.asarray(u8).shape[:2]
    mult = SIZE_MULTIPLE[method]
    if h % mult or w % mult:
        raise ColorizerInputError(f"{method} needs sides that are multiples of {mult}, got {w}x{h}")
    out = _run(net, network_input(method, u8))
    if method == "sketchKeras":
        return keras_postprocess(out)
    return -out.repeat(1, 3, 1, 1)


def check_size(method: str, size: int) -> int:
    mult = SIZE_MULTIPLE[method]
    if size < mult or size % mult:
        raise ColorizerInputError(f"{method} works on squares whose side is a multiple of {mult}; "
                                  f"got {size} (the official size is {EXTRACT_SIZE})")
    return size
