"""ColorizeDiffusion Guider: the official dual guidance (reference and sketch scales) for SamplerCustomAdvanced."""
from __future__ import annotations

from ..model_patches.guidance import guider


class ColorizeDiffusionGuider:
    DESCRIPTION = ("Dual classifier-free guidance as the official sampler: reference scale on the zero-context "
                   "pass, sketch scale on the blank-sketch pass, averaged when both are above 1; all passes "
                   "in one batch.")
    CATEGORY = "ColorizeDiffusion"
    FUNCTION = "make"
    RETURN_TYPES = ("GUIDER",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "reference_scale": ("FLOAT", {"default": 4.0, "min": 1.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                "tooltip": "Reference guidance scale (1 = off)"}),
            "sketch_scale": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 10.0, "step": 0.1, "round": 0.01,
                             "tooltip": "Sketch guidance scale (1 = off; needs sketch_negative)"}),
        }, "optional": {"sketch_negative": ("CONDITIONING",)}}

    def make(self, model, positive, negative, reference_scale, sketch_scale, sketch_negative=None):
        return (guider(model, positive, negative, sketch_negative, reference_scale, sketch_scale),)


NODE_CLASS_MAPPINGS = {"ColorizeDiffusionGuider": ColorizeDiffusionGuider}
NODE_DISPLAY_NAME_MAPPINGS = {"ColorizeDiffusionGuider": "ColorizeDiffusion Guider"}
