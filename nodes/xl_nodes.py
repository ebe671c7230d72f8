"""ColorizeDiffusion XL nodes: the WD tagger loader and the per-level sketch strengths.

The XL reference is the CLIP bigG tokens and the WD tagger tokens of a picture (Encode Reference with its tagger
input); everything else goes through the same chain as the SD2.1 families (Apply Sketch, Split Attention,
Background Encoder, Reference Strength, Guidance Window, Guider).
"""
from __future__ import annotations

import folder_paths
from comfy_api.v0_0_2 import io

from ..errors import ColorizerLoadError
from ..model_folders import TAGGERS
from ..model_patches.colorize_diffusion import chain
from ..model_patches.colorize_diffusion.assembly import conditionings
from ..model_patches.colorize_diffusion.prompt import prompt_of
from ..model_patches.colorize_diffusion.tagger import load_tagger
from .io_types import CATEGORY, WDTagger


class LoadWDTagger(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadWDTagger", display_name="ColorizeDiffusion Load WD Tagger",
            category=CATEGORY,
            description=("Loads SmilingWolf's WD v1.4 SwinV2 tagger (wd-v1-4-swinv2-tagger-v2, model.safetensors) "
                         "from models/colorizediffusion/tagger: the second half of the ColorizeDiffusion XL reference "
                         "(its 196 feature tokens), beside the CLIP bigG tokens."),
            inputs=[io.Combo.Input("tagger_name", options=folder_paths.get_filename_list(TAGGERS),
                                   tooltip="model.safetensors of wd-v1-4-swinv2-tagger-v2 (any file name)")],
            outputs=[WDTagger.Output(display_name="tagger")],
        )

    @classmethod
    def execute(cls, tagger_name):
        path = folder_paths.get_full_path(TAGGERS, tagger_name)
        if path is None:
            raise ColorizerLoadError(f"{tagger_name} not found in models/colorizediffusion/tagger (searched: "
                                     f"{', '.join(folder_paths.get_folder_paths(TAGGERS))})")
        return io.NodeOutput(load_tagger(path))


class SketchLevelStrength(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        levels = [io.Float.Input(f"level_{i + 1}", default=1.0, min=0.0, max=3.0, step=0.05,
                                 tooltip=f"Sketch strength {i + 1}: the residual after UNet input block {b}")
                  for i, b in enumerate((0, 3, 6, 8))]
        return io.Schema(
            node_id="ColorizeDiffusionSketchLevelStrength", display_name="ColorizeDiffusion Sketch Level Strength",
            category=CATEGORY,
            description=("The XL app's per-level sketch strengths (Sketch strength 1..4): each of the sketch "
                         "encoder's residuals, from the finest to the coarsest, times its own strength (and Apply "
                         "Sketch's sketch_strength). For the SD2.1 families the five residuals take level_1..4 and "
                         "the last one level_4."),
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"), *levels],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, level_1=1.0, level_2=1.0, level_3=1.0, level_4=1.0):
        prompt = prompt_of(positive, negative, "ColorizeDiffusion Sketch Level Strength")
        prompt = chain.with_control_scales(prompt, (level_1, level_2, level_3, level_4))
        return io.NodeOutput(*conditionings(prompt))


NODES = [LoadWDTagger, SketchLevelStrength]
