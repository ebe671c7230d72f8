"""The SD2.1 families' own chain parts (v1, v1.5, v2): the background tokens of a picture or of the background-only
reference, v2's background encoder and style encoder, and v1.5's context with its threshold embeddings and cluster
transformer (official `prepare_conditions`, reference-app.md §1.3, model-spec §3)."""
from __future__ import annotations

import dataclasses

import torch

from ...errors import ColorizerInputError
from ...preprocess import convert
from ..common import clip_tokens
from . import modes
from .networks import v2_encoders
from .pictures import background_only, vae_latent
from .prompt import BackgroundPart, ColorizerPrompt, to_intermediate


def with_background(prompt: ColorizerPrompt, *, vae, clip_vision, background, reference_mask, reference_threshold,
                    factor) -> ColorizerPrompt:
    """Background Encoder (SD2.1): CLIP local tokens of the background picture, or of the reference with its character
    whitened; v2 also runs its background encoder on the VAE latent."""
    colorizer, ref = prompt.colorizer, prompt.distinct_reference
    separate = background is not None
    if separate:
        background.check_context_dim(colorizer.context_dim)
        image, tokens = background.image, background.tokens
    else:
        if reference_mask is None:
            raise ColorizerInputError(
                f"{modes.BACKGROUND_NODE} without a background picture whitens the character out of the reference: "
                "connect reference_mask (ColorizeDiffusion Reference Mask, or any MASK of the character), or a "
                "background picture")
        if clip_vision is None:
            raise ColorizerInputError(f"{modes.BACKGROUND_NODE} without a background picture encodes the "
                                      "background-only reference: connect clip_vision")
        source, mask = prompt.common_rows(ref.image, convert.as_mask_batch(reference_mask, "reference_mask"))
        image = background_only(source, mask, reference_threshold)
        tokens = clip_tokens.encode_reference(clip_vision, image, context_dim=colorizer.context_dim,
                                              token_type="local")
    prompt.per_picture(tokens, "background")   # one row, one per sketch or one per picture, else a clear error now
    tokens = to_intermediate(tokens)            # the distinct rows; the context repeats them per picture
    hs_bg = None
    if prompt.spec.background_encoder:          # on the distinct pictures, then repeated per picture
        device = colorizer.load_encoders()
        gen_hw = prompt.size
        size_of = tuple(image.shape[-2:]) if separate else ref.size
        z_bg = vae_latent(vae, colorizer, image, gen_hw, device, modes.BACKGROUND_NODE)
        z_bg, emb = prompt.common_rows(z_bg, ref.tokens.to(device))
        size = v2_encoders.size_embedding(size_of, gen_hw).to(device).expand(z_bg.shape[0], -1)
        hs_bg = [to_intermediate(prompt.per_picture(h * factor, "background features"))
                 for h in colorizer.encoders.bg_encoder(z_bg, emb, size)]
    part = BackgroundPart(tokens, separate, float(reference_threshold), hs_bg)
    return dataclasses.replace(prompt, background=part, split_context=None)


def with_style(prompt: ColorizerPrompt, *, vae=None, background=None, merge_scale: float = 0.0) -> ColorizerPrompt:
    """Style Encoder (v2): per-decoder-block modulations from the reference's VAE latent; with a background
    picture, blended with the background's own (`(1 - merge)·ref + merge·background`)."""
    modes.check_style(prompt.spec)
    colorizer, gen_hw = prompt.colorizer, prompt.size
    device = colorizer.load_encoders()
    style_encoder = colorizer.encoders.style_encoder
    ref = prompt.distinct_reference              # on the distinct pictures, then repeated per picture

    def style_of(image, tokens, size_of):
        z, emb = prompt.common_rows(vae_latent(vae, colorizer, image, gen_hw, device, modes.STYLE_NODE),
                                    tokens.to(device))
        size = v2_encoders.size_embedding(size_of, gen_hw).to(device).expand(z.shape[0], -1)
        return [prompt.per_picture(m, "style") for m in style_encoder(z, emb, size)]

    style = style_of(ref.image, ref.tokens, ref.size)
    if background is not None:
        background.check_context_dim(colorizer.context_dim)
        style_bg = style_of(background.image, background.tokens, tuple(background.image.shape[-2:]))
        style = [f * (1 - merge_scale) + b * merge_scale for f, b in zip(style, style_bg)]
    return dataclasses.replace(prompt, style=[to_intermediate(s) for s in style])


def v15_context(prompt: ColorizerPrompt, emb, split, bg):
    """v1.5's split context: the reference and background tokens with their threshold embeddings, the background
    through the cluster transformer unless it is a separate picture; doubled for the foreground LoRA half."""
    if bg is None:                                  # foreground enhance only: the same tokens twice
        return emb.repeat(1, 2, 1)
    device = prompt.colorizer.load_encoders()
    enc = prompt.colorizer.encoders
    th = enc.threshold_embedder([bg.reference_threshold, split.threshold], device=device).to(device)   # [2, 1, C]
    th_ref, th_sk = th[0:1], th[1:2]
    tokens = bg.tokens.to(device) + th_ref
    bg_tokens = prompt.per_picture(tokens if bg.separate else enc.cluster_transformer(tokens), "background")
    ctx = torch.cat([emb.to(device) + th_sk, bg_tokens.to(device)], dim=1)
    return to_intermediate(ctx.repeat(1, 2, 1) if split.foreground else ctx)
