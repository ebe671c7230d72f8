"""The pack's socket types, declared once (ComfyUI V3 schema, versioned import), and its node category."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

CATEGORY = "ColorizeDiffusion"

# Each type, and the value it carries (where its class lives under model_patches/ or preprocess/):
Colorizer = io.Custom("COLORIZER")                       # colorize_diffusion.colorizer.Colorizer: the extra networks
ColorizerSketch = io.Custom("COLORIZER_SKETCH")          # preprocess.sketch.PreparedSketch: a sketch in model space
ColorizerReference = io.Custom("COLORIZER_REFERENCE")    # colorize_diffusion.reference.ColorizerReference
TextTower = io.Custom("COLORIZER_TEXT_TOWER")            # colorize_diffusion.manipulation.TextTower in a ModelPatcher
Manipulations = io.Custom("COLORIZER_MANIPULATIONS")     # list of colorize_diffusion.manipulation.ManipulationGroup
WDTagger = io.Custom("COLORIZER_WD_TAGGER")              # XL: networks.wd_tagger.WDTagger in a ModelPatcher
ReferencePool = io.Custom("COLORIZER_REFERENCE_POOL")    # preprocess.retrieval.Pool: patches and their embeddings
ColorFlow = io.Custom("COLORFLOW_COLORIZER")             # colorflow.colorizer.ColorFlowColorizer: a released folder
ColorFlowSuperResolution = io.Custom("COLORFLOW_SUPER_RESOLUTION")   # colorflow.networks.gsrp.GuidedSuperResolution
#                                                                      in a ModelPatcher


def fraction(id_: str, default: float, tooltip: str, step: float = 0.05, lo: float = 0.0, hi: float = 1.0):
    """A slider 0..1 (or lo..hi) as the official app shows it."""
    return io.Float.Input(id_, default=default, min=lo, max=hi, step=step, tooltip=tooltip)
