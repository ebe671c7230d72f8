"""Reference nodes: CLIP reference tokens as the official ColorizeDiffusion computes them.

The ``COLORIZER_REFERENCE`` value is a ``ColorizerReference`` (model_patches/colorize_diffusion/reference.py: local
tokens ``[B, 256, C]``, the projected CLS, the picture in [-1, 1] and its size, the XL tagger tokens), on ComfyUI's
intermediate device.
"""
from __future__ import annotations

import torch
import folder_paths
from comfy_api.v0_0_2 import io

from ..model_patches.colorize_diffusion.reference import make_reference
from ..model_patches.common.clip_vision import load_vision_file
from ..preprocess import convert
from .io_types import CATEGORY, ColorizerReference, WDTagger

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class EncodeReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionEncodeReference", display_name="ColorizeDiffusion Encode Reference",
            category=CATEGORY,
            description=("CLIP reference tokens exactly as ColorizeDiffusion computes them: squash-resize to 224 "
                         "(bicubic, align_corners, antialias; no crop, no 8-bit rounding), CLIP normalisation, ViT, "
                         "ln_post + projection on every token, CLS dropped -> [B,256,1024] for ViT-H/14. An RGBA "
                         "picture is composited over white."),
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="OpenCLIP ViT-H/14 vision tower (clip_vision_h.safetensors)"),
                io.Image.Input("image", tooltip="reference picture(s); a batch gives one reference per image"),
                WDTagger.Input("tagger", optional=True, tooltip=(
                    "ColorizeDiffusion XL: the WD tagger (Load WD Tagger); its tokens join the CLIP bigG tokens")),
            ],
            outputs=[ColorizerReference.Output(display_name="reference",
                                               tooltip="reference tokens [B,256,C] + the reference image and its size")],
        )

    @classmethod
    def execute(cls, clip_vision, image, tagger=None):
        x = convert.to_model(convert.rgb(convert.check_image(image, "reference")))
        return io.NodeOutput(make_reference(clip_vision, x, tagger=tagger))


class LoadOpenCLIPVision(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadOpenCLIPVision", display_name="ColorizeDiffusion Load OpenCLIP Vision",
            category=CATEGORY,
            description=("Loads a CLIP vision tower from models/clip_vision. OpenCLIP-layout files (visual.*) are "
                         "built locally with open_clip from shapes (any size); transformers-layout files "
                         "(clip_vision_g.safetensors for ColorizeDiffusion XL) become ComfyUI's CLIP vision model in "
                         "the chosen dtype; other files go through ComfyUI's CLIP vision loader."),
            inputs=[
                io.Combo.Input("clip_name", options=folder_paths.get_filename_list("clip_vision")),
                io.Int.Input("heads", default=0, min=0, max=256, tooltip=(
                    "attention heads; 0 = infer (ViT-B/L/H/g/bigG widths, else width/64, or a <name>.json "
                    "open_clip config next to the file)")),
                io.Combo.Input("activation", options=["gelu", "quick_gelu"], default="gelu",
                               tooltip="OpenCLIP ViT-H uses gelu; OpenAI-trained towers quick_gelu"),
                io.Combo.Input("dtype", options=list(_DTYPES), default="fp32",
                               tooltip="weight dtype of the OpenCLIP tower (the official app runs CLIP in fp32)"),
            ],
            outputs=[io.ClipVision.Output(display_name="clip_vision")],
        )

    @classmethod
    def execute(cls, clip_name, heads=0, activation="gelu", dtype="fp32"):
        path = folder_paths.get_full_path_or_raise("clip_vision", clip_name)
        return io.NodeOutput(load_vision_file(path, heads=heads, quick_gelu=activation == "quick_gelu",
                                              dtype=_DTYPES[dtype]))


NODES = [EncodeReference, LoadOpenCLIPVision]
