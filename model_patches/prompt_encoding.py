"""The once-per-prompt work: sketch residuals, reference/background context, v2 encoders, v1.5 context.

Everything here runs in the conditioning node, once per prompt; ComfyUI caches the node's outputs, so an
unchanged re-queue runs none of it again. Mirrors the official `prepare_conditions` per family and mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ColorizerInputError
from ..preprocess.masks import bleach
from .settings import AttentionSettings, ModeFlags

LATENT_SCALE = 8


@dataclass
class PromptEncoding:
    context: torch.Tensor                 # [B, T, C] positive context (T = 256, 512 or 1024)
    controls: list                        # 5 × sketch residuals (× sketch strength)
    blank_controls: list                  # 5 × blank-sketch residuals (× sketch strength)
    settings: AttentionSettings
    mask: torch.Tensor | None = None      # [B, 1, H/8, W/8] soft sketch mask
    hs_bg: list | None = None             # 12 × [B, N_j, C_j], × background factor
    style: list | None = None             # 12 × [B, D_j]


@dataclass
class PromptInputs:
    sketch: torch.Tensor                  # [B, 3, H, W] in [-1, 1], white lines on black
    reference: object                     # ColorizerReference
    flags: ModeFlags
    settings: AttentionSettings
    sketch_strength: float = 1.0
    reference_threshold: float = 0.5
    background_factor: float = 1.0
    merge_scale: float = 0.0
    sketch_mask: torch.Tensor | None = None       # [B or 1, 1, H, W] at generation pixel size
    reference_mask: torch.Tensor | None = None    # [1, 1, h_ref, w_ref] at (padded) reference size
    background: object = None                     # ColorizerReference of a separate background picture
    clip_vision: object = None                    # to encode the background-only reference
    vae: object = None


def encode_prompt(colorizer, p: PromptInputs) -> PromptEncoding:
    from . import clip_tokens
    from .networks.v2_encoders import size_embedding

    family, flags = colorizer.family, p.flags
    batch, _, height, width = p.sketch.shape
    if height % LATENT_SCALE or width % LATENT_SCALE:
        raise ColorizerInputError(f"sketch size {width}x{height} must be a multiple of 8 (64 recommended)")
    ref = p.reference.expand_to(batch)
    ref.check_context_dim(colorizer.context_dim)

    device = colorizer.load_encoders()
    enc = colorizer.encoders
    dtype = next(enc.sketch_encoder.parameters()).dtype
    controls, blank = enc.sketch_encoder.encode_with_blank(p.sketch.to(device, dtype), p.sketch_strength)

    emb = ref.tokens.to(device)
    mask = None
    if flags.split:
        if p.sketch_mask is None:
            raise ColorizerInputError("background/foreground enhance needs a sketch mask: connect 'ColorizeDiffusion "
                                      "Sketch Mask' (or any MASK of the character) to sketch_mask")
        if tuple(p.sketch_mask.shape[-2:]) != (height, width):
            raise ColorizerInputError(f"sketch mask is {p.sketch_mask.shape[-1]}x{p.sketch_mask.shape[-2]}, the "
                                      f"prepared sketch is {width}x{height}; make the mask from the prepared sketch")
        mask = F.interpolate(p.sketch_mask.float().to(device), scale_factor=1 / LATENT_SCALE, mode="bicubic")
        mask = mask.expand(batch, -1, -1, -1) if mask.shape[0] == 1 else mask

    bg_image = bg_tokens = None
    separate_background = p.background is not None
    needs_bg_source = flags.background or (flags.style and separate_background)
    if needs_bg_source:
        if separate_background:
            bg = p.background.expand_to(batch)
            bg.check_context_dim(colorizer.context_dim)
            bg_image, bg_tokens = bg.image, bg.tokens.to(device)
        else:
            bg_image = _background_only(ref.image, p.reference_mask, p.reference_threshold)
            if p.clip_vision is None:
                raise ColorizerInputError("background enhance without a background picture encodes the "
                                          "background-only reference: connect clip_vision")
            bg_tokens = clip_tokens.encode_reference(p.clip_vision, bg_image, context_dim=colorizer.context_dim,
                                                     token_type="local").to(device)

    context = emb
    if family == "v1.5" and flags.split:
        context = _v15_context(enc, emb, bg_tokens, flags, separate_background, p, device)
    elif flags.split:
        second = bg_tokens if flags.background else emb
        context = torch.cat([emb, second], dim=1)

    hs_bg = style = None
    if family == "v2" and (flags.style or flags.background):
        gen_hw = (height, width)
        size_ref = size_embedding(ref.size, gen_hw).to(device).expand(batch, -1)
        z_bg = size_bg = None
        if bg_image is not None:
            z_bg = _vae_latent(p.vae, colorizer, bg_image, gen_hw, device)
            size_bg = size_embedding(tuple(bg_image.shape[-2:]), gen_hw).to(device).expand(batch, -1)
        if flags.style:
            z_ref = _vae_latent(p.vae, colorizer, ref.image, gen_hw, device)
            style = enc.style_encoder(z_ref, emb, size_ref)
            if separate_background:
                style_bg = enc.style_encoder(z_bg, bg_tokens, size_bg)
                style = [f * (1 - p.merge_scale) + b * p.merge_scale for f, b in zip(style, style_bg)]
        if flags.background:
            size = size_bg if separate_background else size_ref
            hs_bg = [h * p.background_factor for h in enc.bg_encoder(z_bg, emb, size)]

    return PromptEncoding(context=context, controls=controls, blank_controls=blank, settings=p.settings,
                          mask=mask, hs_bg=hs_bg, style=style)


def _background_only(image, reference_mask, threshold):
    """The official bleaching: where(mask < threshold, reference, white) at the reference's size."""
    if reference_mask is None:
        raise ColorizerInputError("background enhance without a background picture needs a reference mask "
                                  "(connect 'ColorizeDiffusion Reference Mask' or any MASK of the character)")
    m = reference_mask.float().to(image.device)
    if tuple(m.shape[-2:]) != tuple(image.shape[-2:]):
        raise ColorizerInputError(f"reference mask is {m.shape[-1]}x{m.shape[-2]}, the reference is "
                                  f"{image.shape[-1]}x{image.shape[-2]} (after padding); make the mask from the "
                                  "padded reference")
    return bleach(image, m, threshold)


def _v15_context(enc, emb, bg_tokens, flags, separate_background, p, device):
    th = enc.threshold_embedder([p.reference_threshold, p.settings.threshold], device=device).to(device)   # [2, 1, C]
    th_ref, th_sk = th[0:1], th[1:2]
    if not flags.background:                       # foreground enhance only: the same tokens twice
        return emb.repeat(1, 2, 1)
    if separate_background:
        bg = bg_tokens + th_ref
    else:
        bg = enc.cluster_transformer(bg_tokens + th_ref)
    context = torch.cat([emb + th_sk, bg.expand(emb.shape[0], -1, -1)], dim=1)
    return context.repeat(1, 2, 1) if flags.foreground else context


def _vae_latent(vae, colorizer, image, gen_hw, device):
    """VAE latent (×0.18215) of `image` ([-1,1]) squashed to the generation size (official: plain bicubic)."""
    if vae is None:
        raise ColorizerInputError("style/background enhance VAE-encodes the reference: connect a VAE")
    pixels = F.interpolate(image.float(), size=gen_hw, mode="bicubic", align_corners=False)
    latent = vae.encode(((pixels + 1) / 2).movedim(1, -1))
    return colorizer.latent_format.process_in(latent).to(device)
