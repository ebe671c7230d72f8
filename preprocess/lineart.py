"""Weight-free line extraction: the app's `invert-webui` (`backend/functool.lineart_standard`).

float32 RGB 0..255 -> `cv2.GaussianBlur(sigma 6)` (49 taps, BORDER_REFLECT_101) -> intensity = min over
channels of (blur - x), clipped to 0..255 -> divided by max(16, median of the values > 8) (16 when there is
none: the official `max(16, nan)`) -> x 127 -> truncated to uint8 -> to_tensor: white lines on black.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch

from .convert import u8_to_model

SIGMA = 6.0
CUT = 8
MIN_DIVISOR = 16.0


class LineartStages(NamedTuple):
    blurred: np.ndarray       # float32 HWC, the Gaussian blur
    intensity: np.ndarray     # float32 HW, min over channels of (blur - x), clipped to 0..255
    divisor: np.float32       # max(16, median of the intensities above 8)
    line_u8: np.ndarray       # uint8 HW, intensity / divisor x 127, truncated


def lineart_stages(u8: np.ndarray, sigma: float = SIGMA) -> LineartStages:
    """Every stage of the standard line extraction of a uint8 HWC RGB picture."""
    x = np.asarray(u8).astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), sigma)
    intensity = np.min(g - x, axis=2).clip(0, 255)
    strong = intensity[intensity > CUT]
    divisor = np.float32(max(MIN_DIVISOR, np.median(strong))) if strong.size else np.float32(MIN_DIVISOR)
    scaled = intensity / divisor
    scaled *= 127
    return LineartStages(g, intensity, divisor, scaled.clip(0, 255).astype(np.uint8))


def lineart_standard(u8: np.ndarray, sigma: float = SIGMA) -> torch.Tensor:
    """uint8 HWC RGB -> [1, 3, H, W] in [-1, 1] (white lines on black)."""
    line_u8 = lineart_stages(u8, sigma).line_u8
    return u8_to_model(np.repeat(line_u8[:, :, None], 3, axis=2))
