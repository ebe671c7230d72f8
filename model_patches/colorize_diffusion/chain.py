"""The conditioning chain's steps: Apply Sketch starts a prompt (prompt.py), each encoder node adds its part.

Every node of the chain computes its own expensive part once (sketch residuals, background tokens and features,
style vectors) and stores it in a copy of the prompt; the per-call tensors are assembled from the parts
(assembly.py), so the order in which Split Attention, Background Encoder, Style Encoder and the reference-strength
nodes are wired does not matter. The steps common to every family are here; each family's own parts are in
sd21_chain.py and xl_chain.py. Mirrors the official `prepare_conditions` per family (reference-app.md §1.3,
model-spec §3).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ...errors import ColorizerInputError
from ...preprocess import convert
from . import modes, sd21_chain, xl_chain, xl_conditioning
from .prompt import LATENT_SCALE, ColorizerPrompt, SplitPart, rows_for, to_intermediate
from .settings import GuidanceWindow, level_reference_scales


def start(colorizer, sketch: torch.Tensor, reference, sketch_strength: float = 1.0,
          samples_per_sketch: int = 1) -> ColorizerPrompt:
    """Apply Sketch: the sketch residuals (and the blank sketch's, for sketch guidance), encoded once per sketch.

    `sketch` [S, 3, H, W] in [-1, 1] (white lines on black); the batch is S × samples_per_sketch pictures,
    sketch-major. `reference` (one, or one per sketch) is repeated to match."""
    sketches, _, height, width = sketch.shape
    if height % LATENT_SCALE or width % LATENT_SCALE:
        raise ColorizerInputError(f"sketch size {width}x{height} must be a multiple of 8 (64 recommended)")
    if samples_per_sketch < 1:
        raise ColorizerInputError(f"samples per sketch must be at least 1, got {samples_per_sketch}")
    if not colorizer.spec.xl:
        reference.check_context_dim(colorizer.context_dim)
    ref = reference.expand_to(sketches).repeat_each(samples_per_sketch)
    device = colorizer.load_encoders()
    enc = colorizer.encoders.sketch_encoder
    dtype = next(enc.parameters()).dtype
    controls, blank = enc.encode_with_blank(sketch.to(device, dtype), sketch_strength)

    def repeat(ts):
        return [to_intermediate(t if samples_per_sketch == 1 else t.repeat_interleave(samples_per_sketch, 0))
                for t in ts]

    prompt = ColorizerPrompt(colorizer, ref, repeat(controls), repeat(blank), (height, width),
                             source_reference=reference.expand_to(sketches) if reference.batch_size > 1 else reference,
                             samples_per_sketch=samples_per_sketch)
    return xl_chain.started(prompt) if colorizer.spec.xl else prompt


def with_control_scales(prompt: ColorizerPrompt, scales) -> ColorizerPrompt:
    scales = tuple(float(s) for s in scales)
    if any(s < 0 for s in scales):
        raise ColorizerInputError(f"sketch level strengths must not be negative, got {scales}")
    return dataclasses.replace(prompt, control_scales=scales)


def with_reference_scales(prompt: ColorizerPrompt, scales: tuple) -> ColorizerPrompt:
    if prompt.spec.xl and len(scales) != len(prompt.reference_scales):
        raise ColorizerInputError(
            f"the per-block reference strengths are the SD2.1 app's 16 sliders; an {prompt.spec.display_name} "
            "UNet has 70 transformer blocks: use ColorizeDiffusion Reference Strength (level sliders) instead")
    return dataclasses.replace(prompt, reference_scales=tuple(float(s) for s in scales))


def with_reference_levels(prompt: ColorizerPrompt, strength: float, encoder: float, color: float, semantics: float,
                          all_blocks: bool = False) -> ColorizerPrompt:
    """Reference Strength: the level sliders as the family's official app maps them to blocks."""
    if prompt.spec.reference_levels != "sd21":
        return with_reference_scales(prompt, xl_conditioning.reference_scales(prompt.spec, strength,
                                                                              encoder, semantics))
    return with_reference_scales(prompt, level_reference_scales(strength, encoder, color, semantics,
                                                                all_blocks=all_blocks))


def with_window(prompt: ColorizerPrompt, window: GuidanceWindow, all_families: bool = False) -> ColorizerPrompt:
    """Guidance Window. The official apps honour it for v1 and XL (the SD2.1 v1.5/v2 wrappers never reach the
    code); `all_families` applies it to v1.5/v2 too (not official)."""
    window.check()
    modes.check_window(prompt.spec, all_families)
    return dataclasses.replace(prompt, window=window)


def with_split(prompt: ColorizerPrompt, sketch_mask, threshold: float, foreground_strength: float = 1.0,
               background_strength: float = 1.0, merge_scale: float = 0.0, foreground: bool = True,
               official_fgbg_reset: bool = True) -> ColorizerPrompt:
    """Split Attention: `sketch_mask` (any MASK layout) at the generation size, 1 = character."""
    mask = convert.as_mask_batch(sketch_mask, "sketch_mask")
    height, width = prompt.size
    if tuple(mask.shape[-2:]) != (height, width):
        raise ColorizerInputError(f"sketch_mask is {mask.shape[-1]}x{mask.shape[-2]}, the prepared sketch is "
                                  f"{width}x{height}: make the mask from the prepared sketch (ColorizeDiffusion "
                                  "Sketch Mask, or Prepare Sketch's output)")
    _check_not_blank(mask)
    if prompt.spec.xl:               # the XL code reduces the mask by nearest sampling
        small = xl_conditioning.latent_mask(mask)
    else:
        small = F.interpolate(mask, scale_factor=1 / LATENT_SCALE, mode="bicubic")
    split = SplitPart(to_intermediate(rows_for(small, prompt.batch, "sketch_mask")), float(threshold),
                      float(foreground_strength), float(background_strength), float(merge_scale), bool(foreground),
                      bool(official_fgbg_reset), full_mask=to_intermediate(mask) if prompt.spec.xl else None)
    return dataclasses.replace(prompt, split=split, banks=None, split_context=None)


def _check_not_blank(mask: torch.Tensor) -> None:
    """An all-black or all-white (any flat) mask marks no character or no background: refused where it enters."""
    for i, m in enumerate(mask):
        lo, hi = float(m.min()), float(m.max())
        if hi - lo < 1e-6:
            which = "" if mask.shape[0] == 1 else f" (picture {i + 1})"
            raise ColorizerInputError(
                f"the sketch mask{which} is blank (every pixel {lo:g}), so the split attention would see no character "
                "or no background. Connect ColorizeDiffusion Sketch Mask (or another MASK of the character); Load "
                "Image's MASK is empty for pictures without transparency")


def with_background(prompt: ColorizerPrompt, *, vae=None, clip_vision=None, background=None, reference_mask=None,
                    reference_threshold: float = 0.5, factor: float = 1.0, tagger=None,
                    latent_copy: bool = False) -> ColorizerPrompt:
    """Background Encoder: the background picture, or the reference with its character whitened (bleached by
    `reference_mask` at `reference_threshold`), as the family's background tokens and features."""
    if prompt.spec.xl:
        return xl_chain.with_background(prompt, vae=vae, clip_vision=clip_vision, background=background,
                                        reference_mask=reference_mask, reference_threshold=reference_threshold,
                                        tagger=tagger, latent_copy=latent_copy)
    if latent_copy:
        raise ColorizerInputError(f"{modes.BACKGROUND_NODE}: latent copy is an option of the XL app; turn it off for "
                                  f"a {prompt.spec.display_name} checkpoint")
    return sd21_chain.with_background(prompt, vae=vae, clip_vision=clip_vision, background=background,
                                      reference_mask=reference_mask, reference_threshold=reference_threshold,
                                      factor=factor)


def with_style(prompt: ColorizerPrompt, *, vae=None, background=None, merge_scale: float = 0.0) -> ColorizerPrompt:
    """Style Encoder (v2 only: the rules table refuses the others)."""
    return sd21_chain.with_style(prompt, vae=vae, background=background, merge_scale=merge_scale)
