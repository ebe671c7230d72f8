"""The pack's socket types, declared once (ComfyUI V3 schema, versioned import), and its node category."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

CATEGORY = "ColorizeDiffusion"

Colorizer = io.Custom("COLORIZER")                       # the checkpoint's extra networks (ColorizerNetworks)
ColorizerSketch = io.Custom("COLORIZER_SKETCH")          # a prepared sketch in model space (PreparedSketch)
ColorizerReference = io.Custom("COLORIZER_REFERENCE")    # CLIP tokens and picture of a reference
TextTower = io.Custom("COLORIZER_TEXT_TOWER")            # OpenCLIP text tower for text manipulation
Manipulations = io.Custom("COLORIZER_MANIPULATIONS")     # rows of text manipulations, applied in order
WDTagger = io.Custom("COLORIZER_WD_TAGGER")              # XL: the WD SwinV2 tagger (second half of the reference)
ReferencePool = io.Custom("COLORIZER_REFERENCE_POOL")    # chapters: a pool's patches and their embeddings
ColorFlow = io.Custom("COLORFLOW_COLORIZER")             # a released ColorFlow folder: ColorGuider + LoRA
ColorFlowSuperResolution = io.Custom("COLORFLOW_SUPER_RESOLUTION")   # ColorFlow's GSRP network (ModelPatcher)


def fraction(id_: str, default: float, tooltip: str, step: float = 0.05, lo: float = 0.0, hi: float = 1.0):
    """A slider 0..1 (or lo..hi) as the official app shows it."""
    return io.Float.Input(id_, default=default, min=lo, max=hi, step=step, tooltip=tooltip)
