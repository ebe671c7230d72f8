"""Attention injection node (the official "Attention injection" option). The maths: model_patches/colorize_diffusion/injection.py."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..model_patches.colorize_diffusion.injection import (SKETCH_FIDELITY_MAX, InjectionSettings, apply_injection,
                                                          build_injection)
from ..preprocess import convert
from .io_types import CATEGORY, Colorizer, fraction


class AttentionInjection(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionAttentionInjection", display_name="ColorizeDiffusion Attention Injection",
            category=CATEGORY,
            description=("Strengthens the similarity to the reference (the official 'Attention injection'): at every "
                         "step from the start on, the reference (noised to the step) runs through the UNet first and "
                         "every block's self-attention then also attends to its features. Costs one extra UNet pass "
                         "per step. Connect the MODEL of ColorizeDiffusion Apply Sketch and the unpadded reference. "
                         "With xlv2 the background ReferenceNet's features are then not read (as in the official "
                         "app)."),
            inputs=[
                io.Model.Input("model", tooltip="the MODEL of ColorizeDiffusion Apply Sketch"),
                Colorizer.Input("colorizer"),
                io.Vae.Input("vae"),
                io.Image.Input("reference_image", tooltip="the reference picture (unpadded), resized to the generation"),
                io.Latent.Input("latent", tooltip="the latent to be sampled (gives the generation size)"),
                fraction("reference_fidelity", 0.5, "Injection fidelity (reference): share of plain self-attention "
                                                    "on the reference-unconditional pass"),
                fraction("sketch_fidelity", 0.0, "Injection fidelity (sketch): sketch residuals of the negated "
                                                 "reference in the injected pass", hi=SKETCH_FIDELITY_MAX),
                fraction("start", 0.0, "Injection start step, as a fraction of the schedule"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="noise of the injected pass"),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, colorizer, vae, reference_image, latent, reference_fidelity=0.5, sketch_fidelity=0.0,
                start=0.0, seed=0):
        image = convert.rgb(convert.check_image(reference_image, "reference_image"))[:1]
        h, w = (int(s) * 8 for s in latent["samples"].shape[-2:])
        settings = InjectionSettings(reference_fidelity, sketch_fidelity, start)
        return io.NodeOutput(apply_injection(model, build_injection(model, colorizer, vae, image, h, w, settings,
                                                                    seed)))


NODES = [AttentionInjection]
