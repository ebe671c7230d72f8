"""ColorizeDiffusion Guider: the official dual guidance (reference and sketch scales) for SamplerCustomAdvanced."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..model_patches.colorize_diffusion.prompt import prompt_of
from ..model_patches.colorize_diffusion.conditioning import sketch_unconditional
from ..model_patches.colorize_diffusion.guidance import guider
from ..model_patches.colorize_diffusion.modes import check_runnable
from .io_types import CATEGORY


class Guider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionGuider", display_name="ColorizeDiffusion Guider", category=CATEGORY,
            description=("Dual classifier-free guidance as the official sampler: reference scale on the zero-context "
                         "pass (negative), sketch scale on the blank-sketch pass (derived from the positive), "
                         "averaged when both are above 1; all passes in one batch."),
            inputs=[
                io.Model.Input("model", tooltip="the MODEL of ColorizeDiffusion Apply Sketch (or of a node after it)"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Float.Input("reference_scale", default=4.0, min=1.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Reference guidance scale (1 = off)"),
                io.Float.Input("sketch_scale", default=1.0, min=1.0, max=10.0, step=0.1, round=0.01,
                               tooltip="Sketch guidance scale (1 = off)"),
            ],
            outputs=[io.Guider.Output(display_name="GUIDER")],
        )

    @classmethod
    def execute(cls, model, positive, negative, reference_scale=4.0, sketch_scale=1.0):
        prompt = prompt_of(positive, negative, "ColorizeDiffusion Guider")
        check_runnable(prompt.family, prompt.parts)        # before any sampling, whatever the order of the chain
        sketch_negative = sketch_unconditional(positive) if sketch_scale > 1 else None
        return io.NodeOutput(guider(model, positive, negative, sketch_negative, reference_scale, sketch_scale))


NODES = [Guider]
