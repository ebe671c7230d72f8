"""Reference nodes: CLIP reference tokens as the official ColorizeDiffusion computes them.

Nodes (category "ColorizeDiffusion"):

* ``ColorizeDiffusionEncodeReference`` -- "ColorizeDiffusion Encode Reference":
  inputs ``clip_vision`` (CLIP_VISION: ComfyUI's CLIP Vision loader, e.g. ``clip_vision_h.safetensors``, or
  "ColorizeDiffusion Load OpenCLIP Vision"), ``image`` (IMAGE ``[B,H,W,C]`` in [0,1]);
  output ``reference`` (COLORIZER_REFERENCE). Encodes once per execution (ComfyUI caches the output, so a
  re-queue with unchanged inputs re-encodes nothing).
* ``ColorizeDiffusionLoadOpenCLIPVision`` -- "ColorizeDiffusion Load OpenCLIP Vision":
  inputs ``clip_name`` (a file of ``models/clip_vision``), ``heads`` (INT, 0 = infer), ``activation``
  (gelu / quick_gelu), ``dtype`` (fp32 / fp16 / bf16); output ``clip_vision`` (CLIP_VISION). OpenCLIP-layout
  files (``visual.*``) are built with open_clip locally (any tower size); transformers-layout files
  (``vision_model.*``, e.g. ``clip_vision_h.safetensors``) are handed to ComfyUI's own loader.

The ``COLORIZER_REFERENCE`` value is a :class:`model_patches.clip_tokens.ColorizerReference`:

====================  ==================================================================================
``tokens``            ``[B, 256, C]`` float32 -- ``ln_post`` + ``proj`` of every ViT token, CLS dropped
                      (C = 1024 for ViT-H/14); the reference context ("tokens" = "local")
``cls``               ``[B, 1, C]`` float32 -- projected CLS token; ``.full`` = ``cat([cls, tokens], 1)``
``image``             ``[B, 3, H, W]`` float32 in [-1, 1] -- the reference as given, before the CLIP resize
                      (the v2 background/style encoders VAE-encode it)
``size``              ``(H, W)`` -- pixel size of ``image`` (v2 size embedding)
``backend``           ``"comfy"`` or ``"open_clip"``
``uncond()``          zeros like ``tokens`` (the unconditional reference)
``expand_to(n)``      repeats a single reference for a batch of n generations
``check_context_dim`` raises ``ColorizerInputError`` when C differs from a checkpoint's context dim
====================  ==================================================================================

All tensors are on ComfyUI's intermediate device (CPU unless ``--gpu-only``).
"""
from __future__ import annotations

import torch

import folder_paths

from ..model_patches import clip_tokens
from ..model_patches.checkpoint_file import read_state_dict
from ..errors import ColorizerLoadError
from ..preprocess import convert

CATEGORY = "ColorizeDiffusion"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ColorizeDiffusionEncodeReference:
    DESCRIPTION = ("CLIP reference tokens exactly as ColorizeDiffusion computes them: squash-resize to 224 "
                   "(bicubic, align_corners, antialias; no crop, no 8-bit rounding), CLIP normalisation, ViT, "
                   "ln_post + projection on every token, CLS dropped -> [B,256,1024] for ViT-H/14.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip_vision": ("CLIP_VISION", {"tooltip": "OpenCLIP ViT-H/14 vision tower (clip_vision_h.safetensors)"}),
            "image": ("IMAGE", {"tooltip": "reference picture(s); a batch gives one reference per image"}),
        }}

    RETURN_TYPES = ("COLORIZER_REFERENCE",)
    RETURN_NAMES = ("reference",)
    OUTPUT_TOOLTIPS = ("reference tokens [B,256,C] + the reference image and its size",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY

    def encode(self, clip_vision, image):
        x = convert.to_model(convert.rgb(convert.check_image(image, "reference")))
        return (clip_tokens.make_reference(clip_vision, x),)


class ColorizeDiffusionLoadOpenCLIPVision:
    DESCRIPTION = ("Loads a CLIP vision tower from models/clip_vision. OpenCLIP-layout files (visual.*) are built "
                   "locally with open_clip from shapes (any size); other files go through ComfyUI's CLIP vision loader.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip_name": (folder_paths.get_filename_list("clip_vision"),),
            "heads": ("INT", {"default": 0, "min": 0, "max": 256,
                              "tooltip": "attention heads; 0 = infer (ViT-B/L/H/g/bigG widths, else width/64, "
                                         "or a <name>.json open_clip config next to the file)"}),
            "activation": (["gelu", "quick_gelu"], {"default": "gelu",
                                                     "tooltip": "OpenCLIP ViT-H uses gelu; OpenAI-trained towers quick_gelu"}),
            "dtype": (list(_DTYPES), {"default": "fp32",
                                      "tooltip": "weight dtype of the OpenCLIP tower (the official app runs CLIP in fp32)"}),
        }}

    RETURN_TYPES = ("CLIP_VISION",)
    RETURN_NAMES = ("clip_vision",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, clip_name, heads=0, activation="gelu", dtype="fp32"):
        path = folder_paths.get_full_path_or_raise("clip_vision", clip_name)
        return (load_vision_file(path, heads=heads, activation=activation, dtype=dtype),)


def load_vision_file(path: str, *, heads: int = 0, activation: str = "gelu", dtype: str = "fp32"):
    """Load ``path`` as a CLIP_VISION value: OpenCLIP layout -> :class:`clip_tokens.OpenCLIPVision`,
    anything else -> ``comfy.clip_vision.load``."""
    import comfy.clip_vision

    sd = read_state_dict(path, "CLIP vision file")
    if clip_tokens.find_openclip_vision_prefix(sd) is not None:
        side = clip_tokens.read_sidecar_config(path)
        h = heads if heads and heads > 0 else side.get("heads")
        quick = activation == "quick_gelu" or bool(side.get("quick_gelu", False))
        try:
            return clip_tokens.load_openclip_vision(sd, heads=h, quick_gelu=quick, dtype=_DTYPES[dtype])
        except ColorizerLoadError as exc:
            if "open_clip_torch is not installed" not in str(exc):
                raise
            # no open_clip: a ComfyUI CLIP vision model with the inferred config (host text-encoder dtype)
            return clip_tokens.build_comfy_clip_vision(sd, heads=h, quick_gelu=quick)
    del sd
    cv = comfy.clip_vision.load(path)
    if cv is None:
        raise ColorizerLoadError(f"{path} is neither an OpenCLIP vision tower nor a CLIP vision file ComfyUI knows")
    return cv


NODE_CLASS_MAPPINGS = {
    "ColorizeDiffusionEncodeReference": ColorizeDiffusionEncodeReference,
    "ColorizeDiffusionLoadOpenCLIPVision": ColorizeDiffusionLoadOpenCLIPVision,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ColorizeDiffusionEncodeReference": "ColorizeDiffusion Encode Reference",
    "ColorizeDiffusionLoadOpenCLIPVision": "ColorizeDiffusion Load OpenCLIP Vision",
}
