"""Packing the colorizer's per-prompt tensors into ComfyUI CONDITIONING.

Three conditionings share every tensor but one, as the official dual guidance builds its passes:
positive (c), negative = reference-unconditional (u_ref: zero context of the same shape), and
sketch_negative = sketch-unconditional (u_sk: the blank sketch's residuals). Mask, settings, background
features and style vectors are the same in all three, so ComfyUI can batch them in one forward.
"""
from __future__ import annotations

import torch

from .step_data import COND_PREFIX


def _model_conds(settings, controls=None, mask=None, hs_bg=None, style=None) -> dict:
    import comfy.conds

    conds = {COND_PREFIX + "settings": comfy.conds.CONDConstant(settings)}
    if controls is not None:
        conds[COND_PREFIX + "controls"] = comfy.conds.CONDList(list(controls))
    if mask is not None:
        conds[COND_PREFIX + "mask"] = comfy.conds.CONDRegular(mask)
    if hs_bg is not None:
        conds[COND_PREFIX + "hs_bg"] = comfy.conds.CONDList(list(hs_bg))
    if style is not None:
        conds[COND_PREFIX + "style"] = comfy.conds.CONDList(list(style))
    return conds


def conditioning(context, settings, controls=None, mask=None, hs_bg=None, style=None) -> list:
    return [[context, {"model_conds": _model_conds(settings, controls, mask, hs_bg, style)}]]


def guidance_conditionings(context, settings, controls, blank_controls, mask=None, hs_bg=None, style=None):
    """(positive, negative, sketch_negative) for the sampler or the ColorizeDiffusion guider."""
    positive = conditioning(context, settings, controls, mask, hs_bg, style)
    negative = conditioning(torch.zeros_like(context), settings, controls, mask, hs_bg, style)
    sketch_negative = conditioning(context, settings, blank_controls, mask, hs_bg, style)
    return positive, negative, sketch_negative
