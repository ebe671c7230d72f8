"""ColorizeDiffusion Conditioning (patched MODEL + positive/negative/sketch-negative) and its attention knobs."""
from __future__ import annotations

import torch

from ..model_patches.conditioning import guidance_conditionings
from ..errors import ColorizerInputError
from ..model_patches.prompt_encoding import PromptInputs, encode_prompt
from ..model_patches.settings import (MODES, accurate_reference_scales, attention_settings, level_reference_scales,
                                      mode_flags)
from ..model_patches.unet_patches import apply_colorizer
from ..preprocess import convert


def _float(default, lo, hi, step, tooltip):
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tooltip})


def _fgbg_inputs() -> dict:
    """The split-attention strengths both attention nodes offer."""
    return {
        "foreground_strength": _float(1.0, 0.0, 2.0, 0.05, "Foreground strength of the split attention"),
        "background_strength": _float(1.0, 0.0, 2.0, 0.05, "Background strength of the split attention"),
    }


FGBG_ALL_FAMILIES = ("BOOLEAN", {"default": False, "tooltip": "not official: let the fg/bg strengths act on "
                                 "v1/v1.5 too (the official app resets them to 1 there)"})


def _attention(reference_scales, foreground_strength, background_strength, fgbg_strength_all_families) -> tuple:
    return ({"reference_scales": tuple(reference_scales), "fg_strength": foreground_strength,
             "bg_strength": background_strength, "official_fgbg_reset": not fgbg_strength_all_families},)


class _AttentionSettingsNode:
    """What both attention nodes share: they give the Conditioning's `attention` input."""
    CATEGORY = "ColorizeDiffusion"
    FUNCTION = "settings"
    RETURN_TYPES = ("COLORIZER_ATTENTION",)
    RETURN_NAMES = ("attention",)


class ColorizeDiffusionAttention(_AttentionSettingsNode):
    DESCRIPTION = ("Cross-attention strengths (the official 'Reference strength', per-level crossattn scales and "
                   "foreground/background strengths). Defaults reproduce the official app.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "reference_strength": _float(1.0, 0.0, 2.0, 0.05, "Reference strength: multiplies the level scales"),
            "encoder_scale": _float(1.0, 0.0, 2.0, 0.05, "Encoder crossattn scale (blocks 0-5)"),
            "color_scale": _float(1.0, 0.0, 2.0, 0.05, "Color crossattn scale (middle level: blocks 2,3,10,11,12)"),
            "semantics_scale": _float(1.0, 0.0, 2.0, 0.05, "Semantics crossattn scale (low level: blocks 4,5,7,8,9)"),
            **_fgbg_inputs(),
            "scale_all_blocks": ("BOOLEAN", {"default": False, "tooltip":
                                 "not official: also scale the UNet middle block and the last three decoder "
                                 "blocks, which the official level mode leaves at 1"}),
            "fgbg_strength_all_families": FGBG_ALL_FAMILIES,
        }}

    def settings(self, reference_strength, encoder_scale, color_scale, semantics_scale, foreground_strength,
                 background_strength, scale_all_blocks, fgbg_strength_all_families):
        return _attention(level_reference_scales(reference_strength, encoder_scale, color_scale, semantics_scale,
                                                 all_blocks=scale_all_blocks),
                          foreground_strength, background_strength, fgbg_strength_all_families)


BLOCK_NAMES = ("input 1", "input 2", "input 4", "input 5", "input 7", "input 8", "middle", "output 3",
               "output 4", "output 5", "output 6", "output 7", "output 8", "output 9", "output 10", "output 11")


class ColorizeDiffusionBlockAttention(_AttentionSettingsNode):
    DESCRIPTION = ("Accurate crossattn control: the reference strength of each of the 16 transformer blocks on its "
                   "own (the official 'Activate accurate crossattn control' sliders 0.down0.attn0 … 15.up0.attn2), "
                   "with the foreground/background strengths. By default the official reading is reproduced: the "
                   "app shifts the sliders by one (slider 0 is unused, block i takes slider i+1, block 15 stays 1).")

    @classmethod
    def INPUT_TYPES(cls):
        blocks = {f"block_{i}": _float(1.0, 0.0, 2.0, 0.05, f"slider attn{i} ({name})")
                  for i, name in enumerate(BLOCK_NAMES)}
        return {"required": {
            **blocks,
            **_fgbg_inputs(),
            "official_slider_shift": ("BOOLEAN", {"default": True, "tooltip":
                                      "as the official app: block i takes slider i+1 (slider 0 unused, block 15 "
                                      "stays 1); off: each slider sets its own block"}),
            "fgbg_strength_all_families": FGBG_ALL_FAMILIES,
        }}

    def settings(self, foreground_strength, background_strength, official_slider_shift, fgbg_strength_all_families,
                 **blocks):
        sliders = [blocks[f"block_{i}"] for i in range(len(BLOCK_NAMES))]
        return _attention(accurate_reference_scales(sliders, official_slider_shift), foreground_strength,
                          background_strength, fgbg_strength_all_families)


DEFAULT_ATTENTION = {"reference_scales": level_reference_scales(), "fg_strength": 1.0, "bg_strength": 1.0,
                     "official_fgbg_reset": True}


class ColorizeDiffusionConditioning:
    DESCRIPTION = ("Encodes the prepared sketch, the reference (and optional background) once per prompt and "
                   "returns the patched MODEL with positive, negative (reference-unconditional) and sketch "
                   "negative conditionings. With KSampler, cfg is the reference guidance scale; for the sketch "
                   "guidance scale use ColorizeDiffusion Guider.")
    CATEGORY = "ColorizeDiffusion"
    FUNCTION = "encode"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("model", "positive", "negative", "sketch_negative", "latent")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "colorizer": ("COLORIZER",),
                "vae": ("VAE",),
                "sketch": ("COLORIZER_SKETCH", {"tooltip": "from ColorizeDiffusion Prepare Sketch"}),
                "reference": ("COLORIZER_REFERENCE", {"tooltip": "from ColorizeDiffusion Encode Reference"}),
                "mode": (list(MODES), {"default": "vanilla", "tooltip":
                         "style enhance: v2 only; full: v2 style+background, v1.5 background+foreground, "
                         "v1 background"}),
                "sketch_strength": _float(1.0, 0.0, 3.0, 0.05, "Sketch strength (multiplies every sketch residual)"),
                "sketch_mask_threshold": _float(0.05, 0.0, 1.0, 0.01, "Sketch mask threshold: foreground where "
                                                "the mask is above it"),
                "reference_mask_threshold": _float(0.5, 0.0, 1.0, 0.01, "Reference mask threshold: the "
                                                   "character is whitened where the reference mask reaches it"),
                "background_factor": _float(1.0, 0.0, 2.0, 0.05, "Background factor (v2 background features)"),
                "merge_scale": _float(0.0, 0.0, 1.0, 0.05, "Merging scale: blends background into foreground "
                                      "attention (v2: also reference/background style)"),
            },
            "optional": {
                "sketch_mask": ("MASK", {"tooltip": "character mask of the prepared sketch (background/full modes)"}),
                "reference_mask": ("MASK", {"tooltip": "character mask of the reference (background modes "
                                            "without a background picture)"}),
                "clip_vision": ("CLIP_VISION", {"tooltip": "encodes the background-only reference"}),
                "background": ("COLORIZER_REFERENCE", {"tooltip": "a separate background picture"}),
                "attention": ("COLORIZER_ATTENTION",),
            },
        }

    def encode(self, model, colorizer, vae, sketch, reference, mode, sketch_strength, sketch_mask_threshold,
               reference_mask_threshold, background_factor, merge_scale, sketch_mask=None, reference_mask=None,
               clip_vision=None, background=None, attention=None):
        attention = attention or DEFAULT_ATTENTION
        flags = mode_flags(mode, colorizer.family)
        if colorizer.family == "v1" and flags.foreground and not flags.background:
            raise ColorizerInputError("foreground enhance has no effect with a v1 (mult) checkpoint; use background "
                                      "enhance")
        settings = attention_settings(colorizer.family, flags, attention["reference_scales"], sketch_mask_threshold,
                                      attention["fg_strength"], attention["bg_strength"], merge_scale,
                                      attention["official_fgbg_reset"])
        inputs = PromptInputs(
            sketch=sketch.sketch, reference=reference, flags=flags, settings=settings,
            sketch_strength=sketch_strength, reference_threshold=reference_mask_threshold,
            background_factor=background_factor, merge_scale=merge_scale,
            sketch_mask=_mask(sketch_mask, "sketch mask"), reference_mask=_mask(reference_mask, "reference mask"),
            background=background, clip_vision=clip_vision, vae=vae)
        enc = encode_prompt(colorizer, inputs)
        cpu = lambda t: None if t is None else t.to("cpu")  # noqa: E731  (conds live on the intermediate device)
        cpu_list = lambda ts: None if ts is None else [cpu(t) for t in ts]  # noqa: E731
        positive, negative, sketch_negative = guidance_conditionings(
            cpu(enc.context), settings, cpu_list(enc.controls), cpu_list(enc.blank_controls), cpu(enc.mask),
            cpu_list(enc.hs_bg), cpu_list(enc.style))
        batch, _, height, width = sketch.sketch.shape
        latent = {"samples": torch.zeros(batch, 4, height // 8, width // 8)}
        return apply_colorizer(model, colorizer), positive, negative, sketch_negative, latent


def _mask(mask, what):
    return None if mask is None else convert.as_mask_batch(mask, what)


NODE_CLASS_MAPPINGS = {"ColorizeDiffusionConditioning": ColorizeDiffusionConditioning,
                       "ColorizeDiffusionAttention": ColorizeDiffusionAttention,
                       "ColorizeDiffusionBlockAttention": ColorizeDiffusionBlockAttention}
NODE_DISPLAY_NAME_MAPPINGS = {"ColorizeDiffusionConditioning": "ColorizeDiffusion Conditioning",
                              "ColorizeDiffusionAttention": "ColorizeDiffusion Attention Strengths",
                              "ColorizeDiffusionBlockAttention": "ColorizeDiffusion Block Attention (accurate)"}
