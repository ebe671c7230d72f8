"""The preprocessing nodes' work over a batch, picture by picture: every input checked before anything runs, the
network (when one is needed) asked for only then, and `tick()` called after each picture (the node's progress bar
and ComfyUI's interrupt)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import ColorizerInputError
from . import convert, extractors, isnet
from . import sketch as sketch_mod

MIN_SKETCH_SIDE = 32        # a smaller drawing carries no usable line art
MAX_SKETCH_ENLARGEMENT = 16  # nor does one enlarged more than this to the generation size

Network = Callable[[str], nn.Module]     # a network's name -> the network, ready to run
Tick = Callable[[], None]


def check_sketch_size(image_h: int, image_w: int, h: int, w: int) -> None:
    """A drawing too small to carry line art is refused before anything runs (a 10x10 picture at 512x512)."""
    if min(image_h, image_w) < MIN_SKETCH_SIDE or max(h / image_h, w / image_w) > MAX_SKETCH_ENLARGEMENT:
        raise ColorizerInputError(
            f"the sketch is {image_w}x{image_h} pixels and would be enlarged to {w}x{h}: a drawing that small "
            f"carries no usable line art (at least {MIN_SKETCH_SIDE} px a side, enlarged at most "
            f"{MAX_SKETCH_ENLARGEMENT}x). Load the drawing at its full size, or lower width/height/size_base")


def _pick(m: torch.Tensor, i: int) -> torch.Tensor:
    return m[i:i + 1] if m.shape[0] > 1 else m


def prepare_sketches(image: torch.Tensor, network: Network, tick: Tick, *, method: str = "none",
                     polarity: str = "auto", width: int = 0, height: int = 0, size_base: int = 512,
                     monochrome: str = "auto", extract_size: int = 512, transparency_mask=None,
                     resampling: str = "tensor") -> sketch_mod.PreparedSketch:
    """Prepare Sketch: IMAGE [B, H, W, C] -> the PreparedSketch of every picture at one generation size."""
    image = convert.check_image(image, "sketch")
    h, w = sketch_mod.choose_size(image.shape[1], image.shape[2], width, height, size_base)
    check_sketch_size(image.shape[1], image.shape[2], h, w)
    mask = None
    if transparency_mask is not None:
        mask = convert.as_mask_batch(transparency_mask, "transparency_mask")
        convert.match_batch(image.shape[0], mask.shape[0], "transparency_mask")
        if bool((mask >= 0.5).all()):
            raise ColorizerInputError(
                "transparency_mask marks every pixel as transparent, so nothing of the drawing would remain: "
                "connect Load Image's MASK only for drawings on a transparent background")
    net = None
    if method in extractors.METHODS:
        extractors.check_size(method, extract_size)
        net = network(method)
    parts = []
    for i in range(image.shape[0]):
        parts.append(sketch_mod.prepare_sketch(
            image[i:i + 1], h, w, polarity=polarity, method=method, monochrome=monochrome, net=net,
            transparency=None if mask is None else _pick(mask, i), size_base=size_base,
            extract_size=extract_size, resampling=resampling))
        tick()
    return sketch_mod.PreparedSketch(torch.cat([p.sketch for p in parts]), parts[0].crop_box,
                                     sum((p.polarity for p in parts), ()), method)


def extract_lines(image: torch.Tensor, network: Network, tick: Tick, *, method: str = "sketchKeras",
                  resolution: int = 512, keep_size: bool = True, invert_input: bool = False) -> torch.Tensor:
    """Extract Lineart: IMAGE [B, H, W, C] -> white lines on black [B, 3, h, w] in [-1, 1] (the picture's size
    with `keep_size`, else the extractor's square)."""
    image = convert.rgb(convert.check_image(image))
    b, h, w, _ = image.shape
    net = None
    if method != "standard":
        extractors.check_size(method, resolution)
        net = network(method)
    outs = []
    for i in range(b):
        x, _ = sketch_mod.model_space(image[i], method, "invert" if invert_input else "keep", net=net,
                                      extract_size=resolution)
        if x.shape[-2:] != (h, w) and keep_size:
            x = sketch_mod.resize(x, h, w)
        outs.append(x.cpu())
        tick()
    return torch.cat(outs)


def sketch_masks(white: torch.Tensor, network: Network, tick: Tick, size: int = 1024) -> torch.Tensor:
    """Sketch Mask: white-on-black sketches [B, 3, H, W] in [-1, 1] -> ISNet-sketch masks [B, 1, H, W]."""
    b, _, h, w = white.shape
    net = network("isnet_sketch")
    outs = []
    for i in range(b):
        outs.append(isnet.sketch_mask(net, white[i:i + 1], h, w, size=size).cpu())
        tick()
    return torch.cat(outs)


def reference_masks(reference: torch.Tensor, network: Network, tick: Tick, size: int = 1024) -> torch.Tensor:
    """Reference Mask without a mask input: references [B, 3, H, W] in [-1, 1] -> undilated ISNet masks
    [B, 1, H, W]."""
    net = network("isnet")
    outs = []
    for i in range(reference.shape[0]):
        outs.append(isnet.reference_mask(net, reference[i:i + 1], size=size, dilate=False).cpu())
        tick()
    return torch.cat(outs)
