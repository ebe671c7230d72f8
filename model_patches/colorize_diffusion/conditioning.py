"""Packing the colorizer's per-prompt tensors into ComfyUI CONDITIONING.

Three conditionings share every tensor but one, as the official dual guidance builds its passes:
positive (c), negative = reference-unconditional (u_ref: zero context of the same shape), and the
sketch-unconditional pass (u_sk: the blank sketch's residuals), which the guider derives from the positive.
Mask, settings, background features and style vectors are the same in all three, so ComfyUI batches them
in one forward. Each entry may also carry the chain's `ColorizerPrompt` (see prompt.py).
"""
from __future__ import annotations

import torch

from ...errors import ColorizerInputError
from .step_data import COND_PREFIX

BLANK_CONTROLS_KEY = "colorize_diffusion_blank_controls"   # entry key (not a model cond: never batched per step)


def _model_conds(settings, controls=None, mask=None, hs_bg=None, style=None, y=None, banks=None) -> dict:
    import comfy.conds

    conds = {COND_PREFIX + "settings": comfy.conds.CONDConstant(settings)}
    if y is not None:                    # XL: the UNet's own label-embedding input (size and aesthetic score)
        conds["y"] = comfy.conds.CONDRegular(y)
    if banks is not None:
        conds[COND_PREFIX + "banks"] = comfy.conds.CONDConstant(banks)
    if controls is not None:
        conds[COND_PREFIX + "controls"] = comfy.conds.CONDList(list(controls))
    if mask is not None:
        conds[COND_PREFIX + "mask"] = comfy.conds.CONDRegular(mask)
    if hs_bg is not None:
        conds[COND_PREFIX + "hs_bg"] = comfy.conds.CONDList(list(hs_bg))
    if style is not None:
        conds[COND_PREFIX + "style"] = comfy.conds.CONDList(list(style))
    return conds


def conditioning(context, settings, controls=None, mask=None, hs_bg=None, style=None, extra=None, y=None,
                 banks=None) -> list:
    return [[context, {"model_conds": _model_conds(settings, controls, mask, hs_bg, style, y, banks), **(extra or {})}]]


def guidance_conditionings(context, settings, controls, blank_controls, mask=None, hs_bg=None, style=None,
                           extra=None, y=None, banks=None):
    """(positive, negative, sketch_negative): c, u_ref and u_sk of the official dual guidance."""
    extra = {BLANK_CONTROLS_KEY: list(blank_controls), **(extra or {})}
    positive = conditioning(context, settings, controls, mask, hs_bg, style, extra, y, banks)
    negative = conditioning(torch.zeros_like(context), settings, controls, mask, hs_bg, style, extra, y, banks)
    return positive, negative, sketch_unconditional(positive)


def sketch_unconditional(positive) -> list:
    """The sketch-unconditional pass of a colorizer positive: the same entry with the blank sketch's residuals."""
    import comfy.conds

    out = []
    for context, options in positive:
        if BLANK_CONTROLS_KEY not in options:
            raise ColorizerInputError(
                "sketch guidance (sketch scale > 1) needs the positive conditioning of ColorizeDiffusion Apply Sketch "
                "(or of a node chained after it); this positive was made by another node")
        conds = dict(options["model_conds"])
        conds[COND_PREFIX + "controls"] = comfy.conds.CONDList(list(options[BLANK_CONTROLS_KEY]))
        out.append([context, {**options, "model_conds": conds}])
    return out
