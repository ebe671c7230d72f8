"""Attention injection node (the official "Attention injection" option). The maths: model_patches/injection.py."""
from __future__ import annotations

from ..model_patches.injection import InjectionSettings, apply_injection, build_injection
from ..preprocess import convert


def _fraction(default, tooltip):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": tooltip})


class ColorizeDiffusionAttentionInjection:
    DESCRIPTION = ("Strengthens the similarity to the reference: at every step from the start on, the reference "
                   "(noised to the step) runs through the UNet first and every block's self-attention then also "
                   "attends to its features. Costs one extra UNet pass per step. Connect the MODEL from "
                   "ColorizeDiffusion Conditioning and the unpadded reference picture.")
    CATEGORY = "ColorizeDiffusion"
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "the MODEL from ColorizeDiffusion Conditioning"}),
            "colorizer": ("COLORIZER",),
            "vae": ("VAE",),
            "reference_image": ("IMAGE", {"tooltip": "the reference picture (unpadded), resized to the generation"}),
            "latent": ("LATENT", {"tooltip": "the latent to be sampled (gives the generation size)"}),
            "reference_fidelity": _fraction(0.5, "Injection fidelity (reference): share of plain self-attention "
                                                 "on the reference-unconditional pass"),
            "sketch_fidelity": _fraction(0.0, "Injection fidelity (sketch): sketch residuals of the negated "
                                              "reference in the injected pass"),
            "start": _fraction(0.0, "Injection start step, as a fraction of the schedule"),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "noise of the injected pass"}),
        }}

    def apply(self, model, colorizer, vae, reference_image, latent, reference_fidelity, sketch_fidelity, start,
              seed):
        image = convert.rgb(convert.check_image(reference_image, "reference_image"))[:1]
        h, w = (int(s) * 8 for s in latent["samples"].shape[-2:])
        settings = InjectionSettings(reference_fidelity, sketch_fidelity, start)
        return (apply_injection(model, build_injection(model, colorizer, vae, image, h, w, settings, seed)),)


NODE_CLASS_MAPPINGS = {"ColorizeDiffusionAttentionInjection": ColorizeDiffusionAttentionInjection}
NODE_DISPLAY_NAME_MAPPINGS = {"ColorizeDiffusionAttentionInjection": "ColorizeDiffusion Attention Injection"}
