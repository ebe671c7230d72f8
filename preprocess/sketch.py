"""Sketch preparation: any line art -> the tensor the model wants (white lines on black, [-1, 1]).

Official pipeline (`functool.preprocess_sketch`), reproduced exactly:
1. model-space sketch: `none` = to_tensor(x) as is; `invert` = -to_tensor(x); `standard` (`invert-webui`)
   = lineart_standard; an extractor = PIL bicubic squash to 512x512, `proceed()`;
2. aspect fit: r = min(H/h, W/w), size (int(h*r), int(w*r)) (float products truncated), resized on the
   TENSOR with bicubic + antialias (torchvision Resize = PIL-style cubic, a = -0.5), no clamp;
3. centred on a -1 canvas: left = (W - w') // 2, top = (H - h') // 2; crop box (left, top, w', h').

Additions (none of them changes an official result for an RGB, grey-line input with polarity given):
- polarity `auto` (direct path only): the paper is what most of the drawing's area is (`paper_share`: grey pixels,
  the page's thin frame of margins and gutters left out). Light paper -> invert, dark paper -> keep; a share too
  close to one half is reported (a warning) and takes invert, the common case. Decided per image of a batch.
- transparency: RGBA images (4 channels) or an IMAGE + MASK pair (LoadImage's MASK, 1 = transparent)
  are flattened onto paper that contrasts with the strokes (white under dark strokes, black under light).
- monochrome (`auto` / `on` / `off`, direct path only): coloured lines are turned grey by the darkest
  channel (dark lines) or the brightest channel (light lines), so a red line counts as much as a black
  one; `auto` does it only when coloured pixels exist. Grey input is unchanged either way.
- generation size chosen from the sketch when width/height are 0 (`choose_size`).
- a blank (constant) sketch raises ColorizerInputError.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ColorizerInputError
from . import extractors as ex
from .convert import (as_mask_batch, check_image, from_model, letterbox, match_batch, rgb, to_model, to_uint8,
                      u8_to_model)
from .lineart import lineart_standard

POLARITIES = ("auto", "keep", "invert")
MONOCHROME = ("auto", "on", "off")
METHODS = ("none", "standard") + ex.METHODS
SIZE_MULTIPLE = 64          # automatic sizes
EXPLICIT_MULTIPLE = 32      # given sizes (the XL UNet halves the latent twice; SD2.1 three times, where 64 is best)
MAX_GENERATION_SIDE = 4096
LUMA = (0.299, 0.587, 0.114)
log = logging.getLogger(__name__)


@dataclass
class PreparedSketch:
    """What Prepare Sketch hands on (custom type COLORIZER_SKETCH).

    sketch: [B, 3, H, W] float32 on the CPU, white lines (+1) on black (-1), NOT clamped (the official
        bicubic overshoot, e.g. -1.02 / +1.18, is kept: this is exactly what the model receives).
    crop_box: (left, top, w', h') of the letterboxed drawing inside H x W (official `original_shape`).
    polarity: per image, "keep" or "invert" (what `auto` decided), or the extraction method.
    """
    sketch: torch.Tensor
    crop_box: tuple[int, int, int, int]
    polarity: tuple[str, ...]
    method: str = "none"

    @property
    def height(self) -> int:
        return int(self.sketch.shape[-2])

    @property
    def width(self) -> int:
        return int(self.sketch.shape[-1])

    def image(self) -> torch.Tensor:
        """Previewable IMAGE [B, H, W, 3] in [0, 1] (clamped)."""
        return from_model(self.sketch, clamp=True)


# ----------------------------------------------------------------------------------------- geometry
def fit_size(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    r = min(height / h, width / w)
    nh, nw = int(h * r), int(w * r)
    if nh < 1 or nw < 1:
        raise ColorizerInputError(f"a {w}x{h} sketch is too thin to fit into {width}x{height} "
                                  f"(it would be {max(nw, 0)}x{max(nh, 0)} pixels)")
    return nh, nw


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torchvision Resize(bicubic, antialias=True) on a float tensor."""
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)


def fit_and_pad(x: torch.Tensor, src_hw: tuple[int, int], height: int, width: int):
    nh, nw = fit_size(src_hw[0], src_hw[1], height, width)
    return letterbox(resize(x, nh, nw), height, width)


def _round(v: float, multiple: int) -> int:
    return max(multiple, int(v / multiple + 0.5) * multiple)


def choose_size(h: int, w: int, width: int = 0, height: int = 0, base: int = 512,
                multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """Generation (height, width) for an h x w sketch.

    - both given: used as they are (each must be a multiple of 32, up to 4096; 64 suits the SD2.1 families best);
    - one given: the other follows the sketch's aspect ratio, rounded to the nearest multiple of 64;
    - neither: about base x base pixels in the sketch's aspect ratio: H = base / sqrt(w/h),
      W = base * sqrt(w/h), each rounded to the nearest multiple of 64 (at least 64).
    Any side above 4096 raises ColorizerInputError.
    """
    for name, v in (("width", width), ("height", height)):
        if v < 0 or (v and v % EXPLICIT_MULTIPLE):
            raise ColorizerInputError(f"{name} {v} must be 0 (automatic) or a multiple of {EXPLICIT_MULTIPLE}")
    aspect = w / h
    if width and height:
        out = (height, width)
    elif width:
        out = (_round(width / aspect, multiple), width)
    elif height:
        out = (height, _round(height * aspect, multiple))
    else:
        if base < multiple:
            raise ColorizerInputError(f"size base {base} must be at least {multiple}")
        s = math.sqrt(aspect)
        out = (_round(base / s, multiple), _round(base * s, multiple))
    if max(out) > MAX_GENERATION_SIDE:
        raise ColorizerInputError(f"generation size {out[1]}x{out[0]} exceeds {MAX_GENERATION_SIDE} pixels per "
                                  f"side (sketch {w}x{h}); give width and height explicitly")
    return out


# ----------------------------------------------------------------------------------------- input analysis
def luminance(img: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [...]"""
    return img[..., 0] * LUMA[0] + img[..., 1] * LUMA[1] + img[..., 2] * LUMA[2]


PAPER_UNCERTAIN = 0.1      # paper shares within 0.5 ± this are too close to call: the common case is taken


@dataclass(frozen=True)
class PolarityDecision:
    """What `auto` decided for one picture. paper: the light share of the drawing's area (0..1); certain: False
    when the share is within PAPER_UNCERTAIN of one half and `invert` (dark lines on light paper) was taken."""
    polarity: str
    paper: float
    certain: bool

    def note(self) -> str:
        if self.certain:
            return f"polarity auto: {self.polarity} ({self.paper:.0%} of the drawing is light paper)"
        return (f"polarity auto is uncertain ({self.paper:.0%} of the drawing is light, as much ink as paper): "
                f"took invert, the common case of dark lines on light paper; set polarity to keep if the lines "
                f"are light on a dark ground")


def paper_share(img: torch.Tensor) -> float:
    """The light share of one [H, W, 3] picture's drawing area: the paper is what most of the area is.

    Counted: grey pixels (chroma < 0.15: colour fills under the ink vote for neither side), light when the
    luminance is above one half. Left out: the page's frame, i.e. the part of the region of the border's colour that
    touches the border (margins, gutters between panels, black or white) where it is thinner than a twelfth of the
    short side, so black gutters do not outvote the panels. Thick parts (a night sky panel joined to black gutters,
    the paper of a single drawing) stay counted."""
    lum = luminance(img).float().cpu().numpy()
    grey = ((img.amax(-1) - img.amin(-1)) < 0.15).cpu().numpy()
    light = lum > 0.5
    h, w = light.shape
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    region = (light == (border.mean() >= 0.5)).astype(np.uint8)
    _, labels = cv2.connectedComponents(region, connectivity=4)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    frame = np.isin(labels, touching) & (region > 0)
    k = max(5, min(h, w) // 12)
    thick = cv2.morphologyEx(frame.astype(np.uint8), cv2.MORPH_OPEN, np.ones((k, k), np.uint8)) > 0
    counted = grey & ~(frame & ~thick)
    if not counted.any():
        counted = np.ones_like(light)
    return float(light[counted].mean())


def polarity_decision(img: torch.Tensor) -> PolarityDecision:
    """`auto` on one [H, W, 3] picture: light paper -> `invert`, dark -> `keep`; too close to call -> `invert`."""
    paper = paper_share(img)
    certain = abs(paper - 0.5) >= PAPER_UNCERTAIN
    return PolarityDecision("invert" if paper >= 0.5 or not certain else "keep", paper, certain)


def decide_polarity(img: torch.Tensor, polarity: str) -> str:
    """`keep` / `invert` as given; `auto` from `polarity_decision`, an uncertain call logged as a warning."""
    if polarity not in POLARITIES:
        raise ColorizerInputError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    if polarity != "auto":
        return polarity
    decision = polarity_decision(img)
    if not decision.certain:
        log.warning("ColorizeDiffusion sketch: %s", decision.note())
    return decision.polarity


def is_coloured(img: torch.Tensor, spread: float = 0.15, fraction: float = 0.002) -> bool:
    chroma = img.amax(-1) - img.amin(-1)
    return (chroma > spread).float().mean().item() >= fraction


def flatten_alpha(img: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] + alpha [H, W] (1 = opaque) -> strokes on contrasting paper."""
    weight = (alpha > 0.5).float()
    if weight.sum() == 0:
        raise ColorizerInputError("the sketch is fully transparent: there are no strokes to use")
    stroke = (luminance(img) * weight).sum() / weight.sum()
    paper = 1.0 if stroke.item() < 0.5 else 0.0
    a = alpha[..., None].clamp(0, 1)
    return img * a + paper * (1 - a)


def _check_not_blank(x: torch.Tensor, what: str) -> None:
    if (x.amax() - x.amin()).item() < 1.5 / 255:
        raise ColorizerInputError(
            f"{what} is blank (a single flat colour): there is no line art to colorize. If the drawing has a "
            f"transparent background, connect the MASK output of Load Image to `transparency_mask`.")


# ----------------------------------------------------------------------------------------- pipeline
def model_space(img: torch.Tensor, method: str = "none", polarity: str = "invert", monochrome: str = "auto",
                net=None, extract_size: int = ex.EXTRACT_SIZE):
    """One [H, W, 3] image in [0, 1] -> ([1, 3, h', w'] white-on-black in [-1, 1], polarity used).

    For `none` the result keeps the picture's size; `standard` too; extractors give extract_size².
    """
    if polarity not in POLARITIES:
        raise ColorizerInputError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    if method == "none":
        if monochrome not in MONOCHROME:
            raise ColorizerInputError(f"monochrome must be one of {MONOCHROME}, got {monochrome!r}")
        used = decide_polarity(img, polarity)
        mono = monochrome == "on" or (monochrome == "auto" and is_coloured(img))
        if mono:
            grey = img.amin(-1) if used == "invert" else img.amax(-1)
            img = grey[..., None].repeat(1, 1, 3)
        x = to_model(img[None])
        return (-x if used == "invert" else x), used
    if polarity == "invert":          # extractors want dark lines on light paper
        img = 1 - img
    u8 = to_uint8(img)
    if method == "standard":
        return lineart_standard(u8), method
    if method not in ex.METHODS:
        raise ColorizerInputError(f"sketch method must be one of {METHODS}, got {method!r}")
    if net is None:
        raise ColorizerInputError(f"line extraction with {method} needs its network")
    small = ex.squash(u8, ex.check_size(method, extract_size))
    return ex.extract(method, net, small), method


RESAMPLING = ("tensor", "pillow")


def pillow_fit(img: torch.Tensor, polarity: str, height: int, width: int):
    """The XL app's sketch fit (`functool` "invert"): the 8-bit picture resized with Pillow's bicubic, centred on a
    paper-coloured canvas, then to model space. One [H, W, 3] in [0, 1] -> ([1, 3, height, width], crop box)."""
    from PIL import Image

    h, w = img.shape[:2]
    nh, nw = fit_size(h, w, height, width)
    picture = Image.fromarray(to_uint8(img)).resize((nw, nh), Image.BICUBIC)
    paper = (255, 255, 255) if polarity == "invert" else (0, 0, 0)
    canvas = Image.new("RGB", (width, height), paper)
    left, top = (width - nw) // 2, (height - nh) // 2
    canvas.paste(picture, (left, top))
    x = u8_to_model(np.asarray(canvas))
    return (-x if polarity == "invert" else x), (left, top, nw, nh)


def prepare_sketch(image: torch.Tensor, height: int = 0, width: int = 0, polarity: str = "auto",
                   method: str = "none", monochrome: str = "auto", net=None, transparency=None,
                   size_base: int = 512, extract_size: int = ex.EXTRACT_SIZE,
                   resampling: str = "tensor") -> PreparedSketch:
    """IMAGE [B, H, W, C] (any line art) -> PreparedSketch at the generation size.

    transparency: optional MASK (any layout, 1 = transparent, as LoadImage gives it); an all-zero mask
    (LoadImage's placeholder for pictures without alpha) is ignored. 4-channel images use their alpha.
    """
    image = check_image(image, "sketch")
    b, h, w, c = image.shape
    alpha = image[..., 3] if c == 4 else None
    if transparency is not None:
        m = as_mask_batch(transparency, "transparency_mask")
        if m.abs().max() > 0:
            if tuple(m.shape[-2:]) != (h, w):
                raise ColorizerInputError(f"transparency_mask is {m.shape[-1]}x{m.shape[-2]} but the sketch is "
                                          f"{w}x{h}")
            match_batch(b, m.shape[0], "transparency_mask")
            alpha = (1 - m[:, 0]).expand(b, h, w)
    image = rgb(image[..., :3] if c == 4 else image)
    height, width = choose_size(h, w, width, height, size_base)
    if resampling not in RESAMPLING:
        raise ColorizerInputError(f"resampling must be one of {RESAMPLING}, got {resampling!r}")
    if resampling == "pillow" and method != "none":
        raise ColorizerInputError("pillow resampling (the XL app's) resizes the drawing itself: use it with method "
                                  "none, or tensor resampling with a line extractor")
    outs, used, box = [], [], None
    for i in range(b):
        img = image[i] if alpha is None else flatten_alpha(image[i], alpha[i])
        x, pol = model_space(img, method, polarity, monochrome, net, extract_size)
        _check_not_blank(x, "the sketch" if b == 1 else f"sketch {i + 1} of the batch")
        if resampling == "pillow":
            grey = (x if pol == "keep" else -x)[0].permute(1, 2, 0).add(1).div(2)    # after monochrome, as drawn
            y, box = pillow_fit(grey, pol, height, width)
        else:
            y, box = fit_and_pad(x, (h, w), height, width)
        outs.append(y)
        used.append(pol)
    return PreparedSketch(torch.cat(outs).float().cpu(), box, tuple(used), method)


def image_to_white_sketch(sketch_image: torch.Tensor, polarity: str = "auto") -> torch.Tensor:
    """A prepared-sketch IMAGE (white lines on black) -> `white_sketch` [B, 3, H, W] for the sketch mask.

    polarity `keep`: as given; `invert`: the image is black lines on white already; `auto`: decided by
    the paper colour. The result is black lines on white in [-1, 1], as the app's `-sketch`.
    """
    image = rgb(check_image(sketch_image, "sketch"))
    outs = []
    for i in range(image.shape[0]):
        used = decide_polarity(image[i], polarity)
        x = to_model(image[i:i + 1])
        outs.append(x if used == "invert" else -x)
    return torch.cat(outs)

