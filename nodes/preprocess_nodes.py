"""Preprocessing nodes (category "ColorizeDiffusion/preprocess"): thin wrappers around `preprocess/`.

Weights live in the model folder `colorizediffusion_preprocessors` = `models/colorizediffusion/preprocessors`
(relocatable with an `extra_model_paths.yaml` entry of that name); the line-extractor files that
comfyui_controlnet_aux already downloaded (`ckpts/lllyasviel/Annotators/`) are used too. Networks are
cached between runs (a few at most), run in fp32 on ComfyUI's torch device and moved back to the CPU.

Types: IMAGE [B,H,W,3] in [0,1]; MASK [B,H,W] (any layout accepted on input); COLORIZER_SKETCH =
`preprocess.sketch.PreparedSketch` (the exact, unclamped [-1,1] sketch the model receives + crop box).
"""
from __future__ import annotations

import os
from collections import OrderedDict

import torch

import comfy.model_management as mm
import comfy.utils
import folder_paths

from ..comfy_compat import new_model_patcher
from ..errors import ColorizerInputError
from ..model_folders import PREPROCESSORS
from ..preprocess import convert, extractors, isnet, masks, reference
from ..preprocess import sketch as sketch_mod
from ..preprocess.weights import find_weight_file, load_network

CATEGORY = "ColorizeDiffusion/preprocess"

EXTRACT_METHODS = ("standard",) + extractors.METHODS
SKETCH_TYPES = "IMAGE,COLORIZER_SKETCH"
_CACHE: "OrderedDict[tuple, object]" = OrderedDict()     # model patchers of the loaded networks
_CACHE_SIZE = 3


# ----------------------------------------------------------------------------------------- helpers
def _aux_annotator_dirs() -> list[str]:
    out = []
    for root in folder_paths.get_folder_paths("custom_nodes"):
        d = os.path.join(root, "comfyui_controlnet_aux", "ckpts", "lllyasviel", "Annotators")
        if os.path.isdir(d):
            out.append(d)
    return out


def get_network(name: str):
    """Network `name` of preprocess.weights.NETWORKS from the model folder, in a model patcher (cached), so that
    ComfyUI loads, offloads and frees it like any model."""
    path = find_weight_file(name, folder_paths.get_folder_paths(PREPROCESSORS), _aux_annotator_dirs())
    st = os.stat(path)
    key = (name, path, st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    patcher = new_model_patcher(load_network(name, path), mm.get_torch_device(), mm.unet_offload_device())
    _CACHE[key] = patcher
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return patcher


def _loaded(patcher):
    """The network of `patcher`, on the compute device through ComfyUI's model management."""
    mm.load_models_gpu([patcher])
    return patcher.model


def _progress(n: int, unique_id=None):
    return comfy.utils.ProgressBar(n, node_id=unique_id) if n > 1 else None


def _tick(pbar):
    mm.throw_exception_if_processing_interrupted()
    if pbar is not None:
        pbar.update(1)


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


def _pick(m: torch.Tensor, i: int) -> torch.Tensor:
    return m[i:i + 1] if m.shape[0] > 1 else m


# ----------------------------------------------------------------------------------------- nodes
class ColorizeDiffusionPrepareSketch:
    DESCRIPTION = ("Any line art -> the sketch ColorizeDiffusion wants: white lines on black, letterboxed into the "
                   "generation size exactly like the official app (aspect fit with int() truncation, bicubic "
                   "antialias resize, black padding). Optionally extracts lines first (sketchKeras is the app's "
                   "default extractor; standard = the app's 'invert-webui').")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "line art: black on white, white on black, grey, coloured lines or RGBA"}),
            "method": (sketch_mod.METHODS, {"default": "none", "tooltip":
                       "none: use the lines as drawn (official 'none'/'invert'); standard: weight-free line "
                       "extraction ('invert-webui'); others: line-extraction networks ('extract')"}),
            "polarity": (sketch_mod.POLARITIES, {"default": "auto", "tooltip":
                         "none method: keep = already white on black, invert = black on white (official "
                         "default), auto = decided from the paper colour. Extractors: invert flips the picture "
                         "before extraction, auto/keep pass it as is"}),
            "width": ("INT", {"default": 0, "min": 0, "max": sketch_mod.MAX_GENERATION_SIDE, "step": 64,
                              "tooltip": "generation width; 0 = from the sketch's aspect ratio"}),
            "height": ("INT", {"default": 0, "min": 0, "max": sketch_mod.MAX_GENERATION_SIDE, "step": 64,
                               "tooltip": "generation height; 0 = from the sketch's aspect ratio"}),
            "size_base": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64, "tooltip":
                          "automatic size: about size_base² pixels (v1/v1.5: 512, v2: 768)"}),
            "monochrome": (sketch_mod.MONOCHROME, {"default": "auto", "tooltip":
                           "turn coloured lines grey (darkest channel) so they count fully; auto = only when "
                           "the picture has coloured pixels (grey line art is unchanged)"}),
            "extract_size": ("INT", {"default": 512, "min": 256, "max": 2048, "step": 256, "tooltip":
                             "square the extractor works on (official SD2.1 app: 512, XL app: 768)"}),
        }, "optional": {
            "transparency_mask": ("MASK", {"tooltip": "Load Image's MASK (1 = transparent) for drawings on a "
                                                      "transparent background"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("IMAGE", "INT", "INT", "COLORIZER_SKETCH")
    RETURN_NAMES = ("sketch", "width", "height", "colorizer_sketch")
    OUTPUT_TOOLTIPS = ("white lines on black at the generation size, [0,1] (clamped, for previews)",
                       "generation width", "generation height",
                       "the exact sketch in [-1,1] (unclamped, as the model receives it) with its crop box")
    FUNCTION = "prepare"
    CATEGORY = CATEGORY

    def prepare(self, image, method="none", polarity="auto", width=0, height=0, size_base=512,
                monochrome="auto", extract_size=512, transparency_mask=None, unique_id=None):
        image = convert.check_image(image, "sketch")
        net = get_network(method) if method in extractors.METHODS else None
        if net is not None:
            extractors.check_size(method, extract_size)
        h, w = sketch_mod.choose_size(image.shape[1], image.shape[2], width, height, size_base)
        mask = None
        if transparency_mask is not None:
            mask = convert.as_mask_batch(transparency_mask, "transparency_mask")
            convert.match_batch(image.shape[0], mask.shape[0], "transparency_mask")
        parts, pbar = [], _progress(image.shape[0], unique_id)
        dev_net = _loaded(net) if net is not None else None
        for i in range(image.shape[0]):
            parts.append(sketch_mod.prepare_sketch(
                image[i:i + 1], h, w, polarity=polarity, method=method, monochrome=monochrome, net=dev_net,
                transparency=None if mask is None else _pick(mask, i), size_base=size_base,
                extract_size=extract_size))
            _tick(pbar)
        prepared = sketch_mod.PreparedSketch(torch.cat([p.sketch for p in parts]), parts[0].crop_box,
                                         sum((p.polarity for p in parts), ()), method)
        return _out_image(prepared.image()), w, h, prepared


class ColorizeDiffusionExtractLineart:
    DESCRIPTION = ("Line extraction as in ColorizeDiffusion: sketchKeras (the app's default), Anime2Sketch, "
                   "MangaLineExtraction, ControlNet lineart (sk_model) or the weight-free standard extractor. "
                   "Output: white lines on black. For the official pipeline use Prepare Sketch's method instead "
                   "(it avoids a second resize).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "method": (EXTRACT_METHODS, {"default": "sketchKeras"}),
            "resolution": ("INT", {"default": 512, "min": 256, "max": 2048, "step": 256, "tooltip":
                           "square the network works on (official 512); anime2sketch needs multiples of 256"}),
            "output_size": (["input", "extractor"], {"default": "input", "tooltip":
                            "input: resized back to the picture's size; extractor: the network's square output"}),
            "invert_input": ("BOOLEAN", {"default": False, "tooltip":
                             "flip the picture first (for white-on-black drawings; the networks want dark lines)"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("lineart",)
    FUNCTION = "extract"
    CATEGORY = CATEGORY

    def extract(self, image, method="sketchKeras", resolution=512, output_size="input", invert_input=False,
                unique_id=None):
        image = convert.rgb(convert.check_image(image))
        b, h, w, _ = image.shape
        net = None
        if method != "standard":
            extractors.check_size(method, resolution)
            net = get_network(method)
        outs, pbar = [], _progress(b, unique_id)
        dev_net = _loaded(net) if net is not None else None
        for i in range(b):
            x, _ = sketch_mod.model_space(image[i], method, "invert" if invert_input else "keep", net=dev_net,
                                          extract_size=resolution)
            if x.shape[-2:] != (h, w) and output_size == "input":
                x = sketch_mod.resize(x, h, w)
            outs.append(x.cpu())
            _tick(pbar)
        return (_out_image(convert.from_model(torch.cat(outs))),)


class ColorizeDiffusionSketchMask:
    DESCRIPTION = ("Foreground mask of a prepared sketch with ISNet-sketch (sketch-segment.safetensors), as the "
                   "official app computes it: bicubic squash to 1024², no normalisation, bicubic back, clamp. "
                   "Connect Prepare Sketch's colorizer_sketch for the exact official numbers (its sketch image "
                   "is clamped).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sketch": (SKETCH_TYPES, {"tooltip": "Prepare Sketch output: colorizer_sketch (exact) or the sketch "
                                                 "IMAGE"}),
            "polarity": (sketch_mod.POLARITIES, {"default": "auto", "tooltip":
                         "for an IMAGE: keep = white lines on black (Prepare Sketch output), invert = black lines "
                         "on white, auto = from the paper colour"}),
            "net_size": ("INT", {"default": 1024, "min": 256, "max": 2048, "step": 32,
                                 "tooltip": "ISNet input size (official 1024)"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("sketch_mask",)
    OUTPUT_TOOLTIPS = ("soft foreground mask at the sketch's size, [0,1]; the app compares it with the Sketch "
                       "mask threshold (0.05) inside the model",)
    FUNCTION = "mask"
    CATEGORY = CATEGORY

    def mask(self, sketch, polarity="auto", net_size=1024, unique_id=None):
        if isinstance(sketch, sketch_mod.PreparedSketch):
            white = -sketch.sketch
        else:
            white = sketch_mod.image_to_white_sketch(sketch, polarity)
        b, _, h, w = white.shape
        outs, pbar = [], _progress(b, unique_id)
        net = _loaded(get_network("isnet_sketch"))
        for i in range(b):
            outs.append(isnet.sketch_mask(net, white[i:i + 1], h, w, size=net_size).cpu())
            _tick(pbar)
        return (_out_mask(torch.cat(outs)),)


class ColorizeDiffusionReferenceMask:
    DESCRIPTION = ("Character mask of a (padded) reference. Without a mask input: ISNet (isnetis.safetensors) the "
                   "official way (long side to 1024 on a padded canvas, colours inverted, crop back, clamp). With a "
                   "mask input (e.g. BiRefNet/RMBG from another pack): that mask, fitted to the reference. "
                   "Dilation = the app's 11x11 max-pool.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "reference": ("IMAGE", {"tooltip": "the reference (after Reference Pad when padding is used)"}),
            "dilate": ("BOOLEAN", {"default": True, "tooltip": "11x11 max-pool as the app (dilate=True)"}),
            "net_size": ("INT", {"default": 1024, "min": 256, "max": 2048, "step": 32,
                                 "tooltip": "ISNet canvas size (official 1024)"}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "use this mask instead of ISNet (any MASK layout; a mask of the unpadded "
                                         "reference is padded like the image)"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("MASK", "MASK")
    RETURN_NAMES = ("mask", "mask_undilated")
    FUNCTION = "mask"
    CATEGORY = CATEGORY

    def mask(self, reference, dilate=True, net_size=1024, mask=None, unique_id=None):
        image = convert.rgb(convert.check_image(reference, "reference"))
        if mask is not None:
            raw = _mask_for(image, mask, "mask").clamp(0, 1).expand(image.shape[0], -1, -1, -1)
        else:
            x = convert.to_model(image)
            outs, pbar = [], _progress(x.shape[0], unique_id)
            net = _loaded(get_network("isnet"))
            for i in range(x.shape[0]):
                outs.append(isnet.reference_mask(net, x[i:i + 1], size=net_size, dilate=False).cpu())
                _tick(pbar)
            raw = torch.cat(outs)
        final = masks.dilate(raw).clamp(0, 1) if dilate else raw
        return _out_mask(final), _out_mask(raw)


class ColorizeDiffusionReferencePad:
    DESCRIPTION = ("The app's 'Reference padding scale': white margins left and right so the picture is "
                   "int(width * pad_scale) wide (no vertical padding). Apply it to reference and background.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "pad_scale": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 2.0, "step": 0.05,
                                    "tooltip": "official 'Reference padding scale' (1 = no padding)"}),
        }, "optional": {"mask": ("MASK", {"tooltip": "padded the same way, margins 0 (background)"})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("padded picture", "the padded mask (all 0 when no mask is connected)")
    FUNCTION = "pad"
    CATEGORY = CATEGORY

    def pad(self, image, pad_scale=1.0, mask=None):
        image = convert.rgb(convert.check_image(image))
        out = reference.pad_image_with_margin(image, pad_scale)
        if mask is None:
            m = torch.zeros((image.shape[0], 1, out.shape[1], out.shape[2]))
        else:
            m = reference.pad_mask_with_margin(_mask_for(image, mask, "mask"), pad_scale)
            m = m.expand(image.shape[0], -1, -1, -1)
        return _out_image(out), _out_mask(m)


class ColorizeDiffusionBackgroundOnlyReference:
    DESCRIPTION = ("Background-only reference: the character (mask >= threshold) painted white, as the app's "
                   "BG enhance does without a Background image; the same operation is its 'Remove foreground in "
                   "background input'.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "reference (or background) picture"}),
            "mask": ("MASK", {"tooltip": "its character mask (Reference Mask output or any MASK)"}),
            "threshold": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "official 'Reference mask threshold' (mask_ts)"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("background_only",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY

    def apply(self, image, mask, threshold=0.5):
        image = convert.rgb(convert.check_image(image))
        return (_out_image(reference.background_only(image, _mask_for(image, mask, "mask"), threshold)),)


class ColorizeDiffusionMaskOverlay:
    DESCRIPTION = ("Mask previews as the app's gallery shows them: the thresholded mask, the foreground-only and "
                   "background-only composites on white, or a tinted overlay. Use threshold 0.05 for sketch masks "
                   "(Sketch mask threshold) and 0.5 for reference masks (Reference mask threshold).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "mask": ("MASK",),
            "mode": (reference.OVERLAY_MODES, {"default": "tint"}),
            "threshold": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            "opacity": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "tint only"}),
            "color": ("STRING", {"default": "#ff0000", "tooltip": "tint colour, #rrggbb"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("preview",)
    FUNCTION = "overlay"
    CATEGORY = CATEGORY

    def overlay(self, image, mask, mode="tint", threshold=0.5, opacity=0.5, color="#ff0000"):
        image = convert.rgb(convert.check_image(image))
        rgb = _parse_color(color)
        return (_out_image(reference.overlay(image, _mask_for(image, mask, "mask"), mode, threshold, rgb, opacity)),)


def _parse_color(text: str):
    t = text.strip().lstrip("#")
    if len(t) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in t):
        raise ColorizerInputError(f"color must be #rrggbb, got {text!r}")
    return tuple(int(t[i:i + 2], 16) / 255 for i in (0, 2, 4))



NODE_CLASS_MAPPINGS = {
    "ColorizeDiffusionPrepareSketch": ColorizeDiffusionPrepareSketch,
    "ColorizeDiffusionExtractLineart": ColorizeDiffusionExtractLineart,
    "ColorizeDiffusionSketchMask": ColorizeDiffusionSketchMask,
    "ColorizeDiffusionReferenceMask": ColorizeDiffusionReferenceMask,
    "ColorizeDiffusionReferencePad": ColorizeDiffusionReferencePad,
    "ColorizeDiffusionBackgroundOnlyReference": ColorizeDiffusionBackgroundOnlyReference,
    "ColorizeDiffusionMaskOverlay": ColorizeDiffusionMaskOverlay,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ColorizeDiffusionPrepareSketch": "ColorizeDiffusion Prepare Sketch",
    "ColorizeDiffusionExtractLineart": "ColorizeDiffusion Extract Lineart",
    "ColorizeDiffusionSketchMask": "ColorizeDiffusion Sketch Mask (ISNet)",
    "ColorizeDiffusionReferenceMask": "ColorizeDiffusion Reference Mask",
    "ColorizeDiffusionReferencePad": "ColorizeDiffusion Reference Pad",
    "ColorizeDiffusionBackgroundOnlyReference": "ColorizeDiffusion Background-only Reference",
    "ColorizeDiffusionMaskOverlay": "ColorizeDiffusion Mask Overlay",
}
