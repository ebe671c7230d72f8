"""ColorFlow's "Preprocess (Decolorize)": a page -> the grey picture its colorizers are conditioned on.

Official `extract_line_image` (app.py) at commit 0f5c159, for the three input styles:

- the page is fitted to 1.5x the working resolution (`process_image`: bicubic resize when the aspect ratios differ
  by less than 15 %, else a centre crop with `int()` truncations first), then `grey = page.convert('L')`;
- "Sketch": the erika line model (`res_skip`) on the grey page padded to multiples of 16 with **1.0** (not white),
  its raw output clipped to 0..255 and **truncated** to uint8; context = VAE input = the lines;
- "Sketch_Shading": VAE input = the lines; context = the lines with `grey < 76.5 -> 0` and
  `lines > 125 & 76.5 < grey < 145 -> 125`;
- "GrayImage(ScreenStyle)": ScreenVAE (preprocess/screen_vae.py) on `cat([L, A])`, A = the RGB page padded to
  multiples of 256 with **red** (PIL's integer fill 255 on RGB), L = the grey page padded white; the decoder input
  is replicate-padded by 128 more; `screen = trunc((fake_M2 + 1) / 2 * 255)`; context = VAE input =
  `(screen + grey) >> 1` (PIL's blend at 0.5 truncates).

The ScreenVAE's dropout and noise are live in the app (random output); here they come from a seed, or from given
noise tensors and masks (parity).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from .screen_vae import ScreenDecoder, ScreenGenerator, ScreenRandom

STYLES = ("Sketch", "Sketch_Shading", "GrayImage(ScreenStyle)")
SCALE = 1.5


def target_size(width: int, height: int) -> tuple[int, int]:
    """The decolorize size for a working resolution: `int(1.5 * W), int(1.5 * H)` (app.py)."""
    return int(width * SCALE), int(height * SCALE)


def fit_page(page_u8: np.ndarray, width: int, height: int) -> tuple[np.ndarray, dict]:
    """`process_image(page, width, height)`: [H, W, 3] uint8 -> [height, width, 3] uint8, and the branch/box."""
    image = Image.fromarray(np.ascontiguousarray(page_u8))
    img_w, img_h = image.size
    img_ratio, target_ratio = img_w / img_h, width / height
    error = abs(img_ratio - target_ratio) / target_ratio
    box, branch = (0, 0, img_w, img_h), "resize"
    if error >= 0.15:
        if img_ratio > target_ratio:
            new_w = int(img_h * target_ratio)
            left = int((img_w - new_w) / 2)
            box, branch = (left, 0, left + new_w, img_h), "crop_width"
        else:
            new_h = int(img_w / target_ratio)
            top = int((img_h - new_h) / 2)
            box, branch = (0, top, img_w, top + new_h), "crop_height"
        image = image.crop(box)
    resized = image.resize((width, height), Image.BICUBIC).convert("RGB")
    return np.array(resized), {"branch": branch, "ratio_error": error, "box": list(box)}


def grey(rgb_u8: np.ndarray) -> np.ndarray:
    """PIL `convert('L')`: (19595 R + 38470 G + 7471 B + 0x8000) >> 16."""
    return np.array(Image.fromarray(np.ascontiguousarray(rgb_u8)).convert("L"))


def line_input(grey_u8: np.ndarray) -> torch.Tensor:
    """The line model's input: [1, 1, hp, wp] float32, sides rounded up to 16, padded with 1.0 (app.py quirk)."""
    h, w = grey_u8.shape
    x = torch.ones(1, 1, math.ceil(h / 16) * 16, math.ceil(w / 16) * 16)
    x[0, 0, :h, :w] = torch.from_numpy(grey_u8.astype(np.float32))
    return x


def extract_lines(line_net, grey_u8: np.ndarray) -> dict:
    """erika lines: raw network output clipped to 0..255 and truncated to uint8."""
    h, w = grey_u8.shape
    x = line_input(grey_u8)
    device = next(line_net.parameters()).device
    with torch.no_grad():
        y = line_net.raw(x.to(device)).float().cpu()
    lines = y.clamp(0, 255)[0, 0, :h, :w].to(torch.uint8).numpy()
    return {"net_input": x, "net_out": y, "lines_u8": lines}


def shading(lines_u8: np.ndarray, grey_u8: np.ndarray) -> np.ndarray:
    """Sketch_Shading's context: dark page areas black, mid-grey areas 125 where the lines are lighter."""
    out = lines_u8.copy()
    dark = 0.3 * 255.0
    out[grey_u8 < dark] = 0
    out[(out > 125) & (grey_u8 < 145) & (grey_u8 > dark)] = 125
    return out


def _pad_to(array: np.ndarray, base: int, fill) -> np.ndarray:
    h, w = array.shape[:2]
    hp, wp = (h + base - 1) // base * base, (w + base - 1) // base * base
    out = np.empty((hp, wp) + array.shape[2:], dtype=np.uint8)
    out[...] = np.asarray(fill, dtype=np.uint8)
    out[:h, :w] = array
    return out


def _normalized(u8: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(u8))
    t = t.unsqueeze(-1) if t.dim() == 2 else t
    return t.permute(2, 0, 1).unsqueeze(0).float().div(255).sub(0.5).div(0.5)


def screen_inputs(rgb_u8: np.ndarray, grey_u8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A (RGB padded red to multiples of 256) and L (grey padded white), both in [-1, 1]."""
    return _normalized(_pad_to(rgb_u8, 256, (255, 0, 0))), _normalized(_pad_to(grey_u8, 256, 255))


def _replicate_pad128(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, w // 128 * 128 + 128 - w, 0, h // 128 * 128 + 128 - h), mode="replicate")


def screen_style(generator: ScreenGenerator, decoder: ScreenDecoder, rgb_u8: np.ndarray, grey_u8: np.ndarray,
                 random: ScreenRandom) -> dict:
    """The ScreenVAE path (cycle_ganstft forward AtoB + to_screen_image + the 50/50 blend)."""
    h, w = grey_u8.shape
    a, l = screen_inputs(rgb_u8, grey_u8)
    device = next(generator.parameters()).device
    with torch.no_grad():
        a_d, l_d = a.to(device), l.to(device)
        fake_scr = generator(torch.cat([l_d, a_d], 1))
        hp, wp = fake_scr.shape[-2:]
        dec = decoder(_replicate_pad128(fake_scr), random)[:, :, :hp, :wp]
        fake_m = torch.clamp(torch.clamp((dec + 1) * (l_d + 1) / 2 - 1, -1, 1), -1, 1)
        fake_m2 = ((fake_m + 1) / 2.0) * ((l_d + 1) / 2.0) * 2.0 - 1
    crop = (slice(None), slice(None), slice(0, h), slice(0, w))
    fake_m2 = fake_m2[crop].float().cpu()
    screen = ((fake_m2[0, 0] + 1) / 2.0 * 255.0).numpy().astype(np.uint8)
    blend = ((screen.astype(np.uint16) + grey_u8) >> 1).astype(np.uint8)
    return {"A": a, "L": l, "fake_SCR": fake_scr[crop].float().cpu(), "dec_out": dec[crop].float().cpu(),
            "fake_M": fake_m[crop].float().cpu(), "fake_M2": fake_m2, "screen_u8": screen, "blend_u8": blend}


def decolorize(page_u8: np.ndarray, style: str, width: int, height: int, nets: dict,
               random: ScreenRandom | None = None) -> dict:
    """The whole step at target size `width x height` (already 1.5x the working resolution).

    `nets`: "line" (MangaLineNet) for the sketch styles, "generator" + "decoder" for ScreenStyle. Returns every
    intermediate plus `context_u8` (the colorizer's picture) and `vae_input_u8` (the super-resolution's), both
    [h, w] uint8."""
    if style not in STYLES:
        raise ValueError(f"unknown decolorize style {style!r}; known: {', '.join(STYLES)}")
    resized, fit = fit_page(page_u8, width, height)
    out = {"resized_u8": resized, "grey_u8": grey(resized), "process_image": fit}
    if style == "GrayImage(ScreenStyle)":
        out.update(screen_style(nets["generator"], nets["decoder"], resized, out["grey_u8"],
                                random if random is not None else ScreenRandom(seed=0)))
        out["context_u8"] = out["vae_input_u8"] = out["blend_u8"]
        return out
    out.update(extract_lines(nets["line"], out["grey_u8"]))
    out["vae_input_u8"] = out["lines_u8"]
    if style == "Sketch":
        out["context_u8"] = out["lines_u8"]
    else:
        out["context_u8"] = shading(out["lines_u8"], out["grey_u8"])
    return out
