"""From a `ColorizerPrompt` to the positive and negative CONDITIONING: the per-call tensors (context, attention
settings, mask, background features, style, XL vectors and banks) assembled from the prompt's parts, whatever the
order in which the chain's nodes added them."""
from __future__ import annotations

import dataclasses

import torch

from . import sd21_chain, xl_chain
from .conditioning import guidance_conditionings
from .prompt import NEGATIVE_KEY, PROMPT_KEY, ColorizerPrompt
from .settings import attention_settings


def context(prompt: ColorizerPrompt) -> torch.Tensor:
    """The positive cross-attention context: the reference tokens, or the (foreground, background) halves of the
    split attention (v1.5: with the threshold embeddings and the cluster transformer)."""
    emb = prompt.xl_context if prompt.xl_context is not None else prompt.reference.tokens
    split, bg = prompt.split, prompt.background
    if split is None:
        return emb
    if prompt.spec.threshold_context:
        return prompt.split_context if prompt.split_context is not None else sd21_chain.v15_context(prompt, emb,
                                                                                                    split, bg)
    return torch.cat([emb, prompt.per_picture(bg.tokens, "background") if bg is not None else emb], dim=1)


def settings(prompt: ColorizerPrompt):
    split = prompt.split
    if split is None:
        out = attention_settings(prompt.spec, prompt.parts, prompt.reference_scales, 0.05, window=prompt.window)
    else:
        out = attention_settings(prompt.spec, prompt.parts, prompt.reference_scales, split.threshold,
                                 split.foreground_strength, split.background_strength, split.merge_scale,
                                 split.official_fgbg_reset, prompt.window)
    return dataclasses.replace(out, batch=prompt.batch)


def _scaled(controls, scales):
    if all(s == 1 for s in scales):
        return controls
    return [c * scales[min(i, len(scales) - 1)] for i, c in enumerate(controls)]


def conditionings(prompt: ColorizerPrompt) -> tuple[list, list]:
    """(positive, negative) of a prompt; each entry carries the prompt, so the next node of the chain can add to it
    and the guider can derive the sketch-unconditional pass."""
    prompt = xl_chain.with_banks(prompt)
    if prompt.spec.threshold_context and prompt.split is not None and prompt.split_context is None:
        prompt = dataclasses.replace(prompt, split_context=context(prompt))   # its networks run once per prompt
    split, bg = prompt.split, prompt.background
    extra = {PROMPT_KEY: prompt, **xl_chain.latent_copy_entry(prompt)}
    positive, negative, _ = guidance_conditionings(
        context(prompt), settings(prompt), _scaled(prompt.controls, prompt.control_scales),
        _scaled(prompt.blank_controls, prompt.control_scales),
        split.mask if split is not None else None, bg.hs_bg if bg is not None else None, prompt.style,
        extra=extra, y=prompt.y, banks=prompt.banks)
    negative[0][1][NEGATIVE_KEY] = True
    return positive, negative
