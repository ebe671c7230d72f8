"""The COLORIZER object: ColorizeDiffusion's extra networks, managed by ComfyUI like any model.

Two ModelPatchers, so ComfyUI loads only what a phase needs:
* `unet_extras` (LoRA pairs, v2 warp and style modules) run inside every UNet step; the patched MODEL
  lists this patcher as an additional model, so it is loaded, cast and offloaded with the UNet;
* `encoders` (sketch encoder, v2 background/style encoders, v1.5 threshold embedder and cluster
  transformer) run once per prompt in the conditioning node, loaded there and left to be offloaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from .families import FamilySpec, spec_of


class UNetExtras(nn.Module):
    def __init__(self, lora: nn.ModuleDict, warp_modules=None, style_modules=None):
        super().__init__()
        self.lora = lora
        self.warp_modules = warp_modules
        self.style_modules = style_modules


class Encoders(nn.Module):
    def __init__(self, sketch_encoder, bg_encoder=None, style_encoder=None, threshold_embedder=None,
                 cluster_transformer=None, reference_projection=None, reference_net=None):
        super().__init__()
        self.reference_projection = reference_projection     # XL: ClusterConcat (CLIP bigG + WD tagger tokens)
        self.reference_net = reference_net                   # xlv2: the background ReferenceNet
        self.sketch_encoder = sketch_encoder
        self.bg_encoder = bg_encoder
        self.style_encoder = style_encoder
        self.threshold_embedder = threshold_embedder
        self.cluster_transformer = cluster_transformer


@dataclass
class Colorizer:
    family: str                 # "v1" | "v1.5" | "v2" | "sdxl" | "xlv2"; its spec is looked up once (`spec`)
    prediction: str             # "eps" | "v"
    context_dim: int
    unet_extras: UNetExtras
    encoders: Encoders
    unet_extras_patcher: object = None   # comfy.model_patcher.ModelPatcher
    encoders_patcher: object = None
    source: str = ""
    spec: FamilySpec = field(init=False, repr=False)

    def __post_init__(self):
        self.spec = spec_of(self.family)

    def load_encoders(self):
        """Put the once-per-prompt encoders on the compute device (ComfyUI decides, and may offload later)."""
        import comfy.model_management

        comfy.model_management.load_models_gpu([self.encoders_patcher])
        return self.encoders_patcher.load_device

    def get_models(self) -> list:
        """The colorizer's patchers, for the host's memory accounting (current ComfyUI's `PromptModelTracker` reads
        `get_models()` of node outputs that are not patchers)."""
        return [p for p in (self.unet_extras_patcher, self.encoders_patcher) if p is not None]

    def __repr__(self):
        return (f"Colorizer({self.family}, {self.prediction}-prediction, context {self.context_dim}, "
                f"from {self.source!r})")
