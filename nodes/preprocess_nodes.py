"""Preprocessing nodes (category "ColorizeDiffusion/preprocess"): thin wrappers around `preprocess/`.

Weights live in the model folder `colorizediffusion_preprocessors` = `models/colorizediffusion/preprocessors`
(relocatable with an `extra_model_paths.yaml` entry of that name); the line-extractor files that
comfyui_controlnet_aux already downloaded (`ckpts/lllyasviel/Annotators/`) are used too. The networks come from
`model_patches/common/preprocessors.py`: in ModelPatchers kept between runs, loaded and offloaded by ComfyUI.

Types: IMAGE [B,H,W,3] in [0,1]; MASK [B,H,W] (any layout accepted on input); COLORIZER_SKETCH =
`preprocess.sketch.PreparedSketch` (the exact, unclamped [-1,1] sketch the model receives + crop box).
"""
from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.utils
import folder_paths
from comfy_api.v0_0_2 import io

from ..errors import ColorizerInputError, ColorizerLoadError
from ..model_folders import PREPROCESSORS
from ..model_patches.common.preprocessors import loaded_network, weight_path
from ..preprocess import batches, convert, extractors, masks, reference
from ..preprocess import sketch as sketch_mod
from ..preprocess.weights import NETWORKS
from .io_types import CATEGORY as PACK_CATEGORY, ColorizerSketch, fraction

CATEGORY = f"{PACK_CATEGORY}/preprocess"

EXTRACT_METHODS = ("standard",) + extractors.METHODS


# ----------------------------------------------------------------------------------------- helpers
def weights_input(name: str):
    """The optional `weights` widget of a node that loads network `name`: it names the file, so that the frontend
    reports it missing and offers its download. Its list: the preprocessors folder, plus the official name where the
    pack finds that file elsewhere (a subfolder, comfyui_controlnet_aux's folder)."""
    official = NETWORKS[name].files[0]
    options = list(folder_paths.get_filename_list(PREPROCESSORS))
    if official not in options:
        try:
            weight_path(name, None)
            options.insert(0, official)
        except ColorizerLoadError:
            pass
    return io.Combo.Input("weights", options=options, default=official, optional=True, tooltip=(
        f"the {NETWORKS[name].official_name} file in models/colorizediffusion/preprocessors (official: {official})"))


def _networks(weights: str | None):
    """The network loader handed to preprocess.batches: the file `weights` for the node's network."""
    return lambda name: loaded_network(name, weights)


def _ticker(n: int, node_cls):
    """After each of `n` pictures: ComfyUI's interrupt checked, the node's progress bar advanced."""
    unique_id = node_cls.hidden.unique_id if node_cls.hidden is not None else None
    pbar = comfy.utils.ProgressBar(n, node_id=unique_id) if n > 1 else None

    def tick():
        mm.throw_exception_if_processing_interrupted()
        if pbar is not None:
            pbar.update(1)
    return tick


def _out_image(x: torch.Tensor) -> torch.Tensor:
    return x.to(mm.intermediate_device(), torch.float32).contiguous()


def _out_mask(m: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] -> MASK [B, H, W]."""
    return m[:, 0].to(mm.intermediate_device(), torch.float32).contiguous()


def _mask_for(image: torch.Tensor, mask, what: str) -> torch.Tensor:
    """Any MASK layout -> [B or 1, 1, H, W] fitted to IMAGE [B, H, W, C] (see masks.fit_mask)."""
    m = convert.as_mask_batch(mask, what)
    convert.match_batch(image.shape[0], m.shape[0], what)
    return masks.fit_mask(m, image.shape[1], image.shape[2], what)


# ----------------------------------------------------------------------------------------- nodes
def _net_size(tooltip: str):
    return io.Int.Input("net_size", default=1024, min=256, max=2048, step=32, tooltip=tooltip)


class PrepareSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionPrepareSketch", display_name="ColorizeDiffusion Prepare Sketch",
            category=CATEGORY,
            description=("Any line art -> the sketch ColorizeDiffusion wants: white lines on black, letterboxed into "
                         "the generation size exactly like the official app (aspect fit with int() truncation, "
                         "bicubic antialias resize, black padding). Optionally extracts lines first (sketchKeras is "
                         "the app's default extractor; standard = the app's 'invert-webui')."),
            inputs=[
                io.Image.Input("image", tooltip="line art: black on white, white on black, grey, coloured lines or RGBA"),
                io.Combo.Input("method", options=list(sketch_mod.METHODS), default="none", tooltip=(
                    "none: use the lines as drawn (official 'none'/'invert'); standard: weight-free line extraction "
                    "('invert-webui'); others: line-extraction networks ('extract')")),
                io.Combo.Input("polarity", options=list(sketch_mod.POLARITIES), default="auto", tooltip=(
                    "none method: keep = already white on black, invert = black on white (official default), auto "
                    "= decided from the strokes. Extractors: invert flips the picture before extraction, auto/keep "
                    "pass it as is")),
                io.Int.Input("width", default=0, min=0, max=sketch_mod.MAX_GENERATION_SIDE, step=32,
                             tooltip="generation width; 0 = from the sketch's aspect ratio"),
                io.Int.Input("height", default=0, min=0, max=sketch_mod.MAX_GENERATION_SIDE, step=32,
                             tooltip="generation height; 0 = from the sketch's aspect ratio"),
                io.Int.Input("size_base", default=512, min=64, max=2048, step=64,
                             tooltip="automatic size: about size_base² pixels (v1/v1.5: 512, v2: 768)"),
                io.Combo.Input("monochrome", options=list(sketch_mod.MONOCHROME), default="auto", tooltip=(
                    "turn coloured lines grey (darkest channel) so they count fully; auto = only when the picture "
                    "has coloured pixels (grey line art is unchanged)")),
                io.Int.Input("extract_size", default=512, min=256, max=2048, step=256,
                             tooltip="square the extractor works on (official SD2.1 app: 512, XL app: 768)"),
                io.Mask.Input("transparency_mask", optional=True, tooltip=(
                    "Load Image's MASK (1 = transparent) for drawings on a transparent background")),
                io.Combo.Input("resampling", options=list(sketch_mod.RESAMPLING), default="tensor", optional=True,
                               tooltip=("tensor: the SD2.1 app's fit (bicubic on the model-space tensor); pillow: the "
                                        "XL app's (Pillow bicubic on the 8-bit drawing, paper-coloured padding)")),
            ],
            outputs=[
                io.Image.Output(display_name="sketch",
                                tooltip="white lines on black at the generation size, [0,1] (clamped, for previews)"),
                io.Int.Output(display_name="width", tooltip="generation width"),
                io.Int.Output(display_name="height", tooltip="generation height"),
                ColorizerSketch.Output(display_name="colorizer_sketch", tooltip=(
                    "the exact sketch in [-1,1] (unclamped, as the model receives it) with its crop box")),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, method="none", polarity="auto", width=0, height=0, size_base=512, monochrome="auto",
                extract_size=512, transparency_mask=None, resampling="tensor"):
        image = convert.check_image(image, "sketch")
        prepared = batches.prepare_sketches(
            image, loaded_network, _ticker(image.shape[0], cls), method=method, polarity=polarity, width=width,
            height=height, size_base=size_base, monochrome=monochrome, extract_size=extract_size,
            transparency_mask=transparency_mask, resampling=resampling)
        h, w = prepared.sketch.shape[-2:]
        return io.NodeOutput(_out_image(prepared.image()), w, h, prepared)


class ExtractLineart(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionExtractLineart", display_name="ColorizeDiffusion Extract Lineart",
            category=CATEGORY,
            description=("Line extraction as in ColorizeDiffusion: sketchKeras (the app's default), Anime2Sketch, "
                         "MangaLineExtraction, ControlNet lineart (sk_model) or the weight-free standard extractor. "
                         "Output: white lines on black. For the official pipeline use Prepare Sketch's method "
                         "instead (it avoids a second resize)."),
            inputs=[
                io.Image.Input("image"),
                io.Combo.Input("method", options=list(EXTRACT_METHODS), default="sketchKeras"),
                io.Int.Input("resolution", default=512, min=256, max=2048, step=256, tooltip=(
                    "square the network works on (official 512); anime2sketch needs multiples of 256")),
                io.Combo.Input("output_size", options=["input", "extractor"], default="input", tooltip=(
                    "input: resized back to the picture's size; extractor: the network's square output")),
                io.Boolean.Input("invert_input", default=False, tooltip=(
                    "flip the picture first (for white-on-black drawings; the networks want dark lines)")),
            ],
            outputs=[io.Image.Output(display_name="lineart")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, method="sketchKeras", resolution=512, output_size="input", invert_input=False):
        image = convert.check_image(image)
        lines = batches.extract_lines(image, loaded_network, _ticker(image.shape[0], cls), method=method,
                                      resolution=resolution, keep_size=output_size == "input",
                                      invert_input=invert_input)
        return io.NodeOutput(_out_image(convert.from_model(lines)))


class SketchMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionSketchMask", display_name="ColorizeDiffusion Sketch Mask (ISNet)",
            category=CATEGORY,
            description=("Foreground mask of a prepared sketch with ISNet-sketch (sketch-segment.safetensors), as the "
                         "official app computes it: bicubic squash to 1024², no normalisation, bicubic back, clamp. "
                         "Connect Prepare Sketch's colorizer_sketch for the exact official numbers (its sketch image "
                         "is clamped)."),
            inputs=[
                io.MultiType.Input("sketch", types=[ColorizerSketch, io.Image], tooltip=(
                    "Prepare Sketch output: colorizer_sketch (exact) or the sketch IMAGE")),
                io.Combo.Input("polarity", options=list(sketch_mod.POLARITIES), default="auto", tooltip=(
                    "for an IMAGE: keep = white lines on black (Prepare Sketch output), invert = black lines on "
                    "white, auto = from the strokes")),
                _net_size("ISNet input size (official 1024)"),
                weights_input("isnet_sketch"),
            ],
            outputs=[io.Mask.Output(display_name="sketch_mask", tooltip=(
                "soft foreground mask at the sketch's size, [0,1]; Split Attention compares it with its threshold"))],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, sketch, polarity="auto", net_size=1024, weights=None):
        if isinstance(sketch, sketch_mod.PreparedSketch):
            white = -sketch.sketch
        else:
            white = sketch_mod.image_to_white_sketch(sketch, polarity)
        return io.NodeOutput(_out_mask(batches.sketch_masks(white, _networks(weights), _ticker(white.shape[0], cls),
                                                            net_size)))


class ReferenceMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionReferenceMask", display_name="ColorizeDiffusion Reference Mask",
            category=CATEGORY,
            description=("Character mask of a (padded) reference. Without a mask input: ISNet (isnetis.safetensors) "
                         "the official way (long side to 1024 on a padded canvas, colours inverted, crop back, "
                         "clamp). With a mask input (e.g. BiRefNet/RMBG from another pack): that mask, fitted to the "
                         "reference. Dilation = the app's max-pool (SD2.1 app 11x11; XL app 21x21, then binarised)."),
            inputs=[
                io.Image.Input("reference", tooltip="the reference (after Reference Pad when padding is used)"),
                io.Boolean.Input("dilate", default=True, tooltip="11x11 max-pool as the app (dilate=True)"),
                _net_size("ISNet canvas size (official 1024)"),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "use this mask instead of ISNet (any MASK layout; a mask of the unpadded reference is padded "
                    "like the image)")),
                io.Int.Input("dilation", default=masks.DILATE_KERNEL, min=1, max=63, step=2, optional=True,
                             tooltip="max-pool size of the dilation: 11 as the SD2.1 app, 21 as the XL app"),
                io.Boolean.Input("binarize", default=False, optional=True,
                                 tooltip="the XL app: 1 where the dilated mask is above 0.5, else 0"),
                weights_input("isnet"),
            ],
            outputs=[io.Mask.Output(display_name="mask"), io.Mask.Output(display_name="mask_undilated")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, reference, dilate=True, net_size=1024, mask=None, dilation=masks.DILATE_KERNEL, binarize=False,
                weights=None):
        image = convert.rgb(convert.check_image(reference, "reference"))
        if mask is not None:
            raw = _mask_for(image, mask, "mask").clamp(0, 1).expand(image.shape[0], -1, -1, -1)
        else:
            raw = batches.reference_masks(convert.to_model(image), _networks(weights), _ticker(image.shape[0], cls),
                                          net_size)
        final = masks.dilate(raw, int(dilation)).clamp(0, 1) if dilate else raw
        if binarize:
            final = (final > 0.5).to(final.dtype)
        return io.NodeOutput(_out_mask(final), _out_mask(raw))


class ReferencePad(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionReferencePad", display_name="ColorizeDiffusion Reference Pad", category=CATEGORY,
            description=("The app's 'Reference padding scale': white margins left and right so the picture is "
                         "int(width * pad_scale) wide (no vertical padding). Apply it to reference and background."),
            inputs=[
                io.Image.Input("image"),
                io.Float.Input("pad_scale", default=1.0, min=1.0, max=2.0, step=0.05,
                               tooltip="official 'Reference padding scale' (1 = no padding)"),
                io.Mask.Input("mask", optional=True, tooltip="padded the same way, margins 0 (background)"),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="padded picture"),
                     io.Mask.Output(display_name="mask", tooltip="the padded mask (all 0 when no mask is connected)")],
        )

    @classmethod
    def execute(cls, image, pad_scale=1.0, mask=None):
        image = convert.rgb(convert.check_image(image))
        out = reference.pad_image_with_margin(image, pad_scale)
        if mask is None:
            m = torch.zeros((image.shape[0], 1, out.shape[1], out.shape[2]))
        else:
            m = reference.pad_mask_with_margin(_mask_for(image, mask, "mask"), pad_scale)
            m = m.expand(image.shape[0], -1, -1, -1)
        return io.NodeOutput(_out_image(out), _out_mask(m))


class BackgroundOnlyReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionBackgroundOnlyReference", display_name="ColorizeDiffusion Background-only Reference",
            category=CATEGORY,
            description=("Background-only reference: the character (mask >= threshold) painted white, as the app's "
                         "BG enhance does without a Background image; the same operation is its 'Remove foreground "
                         "in background input'."),
            inputs=[
                io.Image.Input("image", tooltip="reference (or background) picture"),
                io.Mask.Input("mask", tooltip="its character mask (Reference Mask output or any MASK)"),
                fraction("threshold", 0.5, "official 'Reference mask threshold' (mask_ts)", 0.01),
            ],
            outputs=[io.Image.Output(display_name="background_only")],
        )

    @classmethod
    def execute(cls, image, mask, threshold=0.5):
        image = convert.rgb(convert.check_image(image))
        return io.NodeOutput(_out_image(reference.background_only(image, _mask_for(image, mask, "mask"), threshold)))


class MaskOverlay(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionMaskOverlay", display_name="ColorizeDiffusion Mask Overlay", category=CATEGORY,
            description=("Mask previews as the app's gallery shows them: the thresholded mask, the foreground-only and "
                         "background-only composites on white, or a tinted overlay. Use threshold 0.05 for sketch "
                         "masks (Sketch mask threshold) and 0.5 for reference masks (Reference mask threshold)."),
            inputs=[
                io.Image.Input("image"),
                io.Mask.Input("mask"),
                io.Combo.Input("mode", options=list(reference.OVERLAY_MODES), default="tint"),
                fraction("threshold", 0.5, "mask threshold", 0.01),
                fraction("opacity", 0.5, "tint only"),
                io.String.Input("color", default="#ff0000", tooltip="tint colour, #rrggbb"),
            ],
            outputs=[io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(cls, image, mask, mode="tint", threshold=0.5, opacity=0.5, color="#ff0000"):
        image = convert.rgb(convert.check_image(image))
        rgb = _parse_color(color)
        return io.NodeOutput(_out_image(reference.overlay(image, _mask_for(image, mask, "mask"), mode, threshold, rgb,
                                                          opacity)))


def _parse_color(text: str):
    t = text.strip().lstrip("#")
    if len(t) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in t):
        raise ColorizerInputError(f"color must be #rrggbb, got {text!r}")
    return tuple(int(t[i:i + 2], 16) / 255 for i in (0, 2, 4))



NODES = [PrepareSketch, ExtractLineart, SketchMask, ReferenceMask, ReferencePad, BackgroundOnlyReference, MaskOverlay]
