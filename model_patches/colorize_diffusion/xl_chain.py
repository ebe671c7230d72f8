"""The XL families' own chain parts (sdxl, xlv2): the reference context (ClusterConcat of the CLIP bigG and WD
tagger tokens), the size vector, the background of a picture or of the background-only reference, xlv2's
ReferenceNet banks and the latent copy (golden_xl README §4–5)."""
from __future__ import annotations

import dataclasses

import torch

from ...errors import ColorizerInputError
from ...preprocess import convert
from ..common import clip_tokens
from . import modes, xl_conditioning
from . import tagger as wd_tagger
from .latent_copy import LATENT_COPY_KEY, LatentCopy
from .pictures import background_only, vae_latent
from .prompt import BackgroundPart, ColorizerPrompt, to_intermediate
from .step_data import Banks


def tagger_tokens_of(reference) -> torch.Tensor:
    """The WD tagger tokens of an XL reference; what to connect when they are missing."""
    tokens = reference.tagger_tokens
    if tokens is None:
        raise ColorizerInputError(
            "a ColorizeDiffusion XL checkpoint needs the reference's WD tagger tokens beside its CLIP tokens: connect "
            "ColorizeDiffusion Load WD Tagger to the tagger input of ColorizeDiffusion Encode Reference (and load "
            "clip_vision_g.safetensors as its CLIP vision)")
    return tokens


def reference_context(colorizer, clip_full, tagger_tokens) -> torch.Tensor:
    """The XL reference context: ClusterConcat of the CLIP bigG "full" tokens and the WD tagger tokens."""
    device = colorizer.load_encoders()
    with torch.no_grad():
        return to_intermediate(colorizer.encoders.reference_projection(clip_full.to(device),
                                                                       tagger_tokens.to(device)))


def started(prompt: ColorizerPrompt) -> ColorizerPrompt:
    """Apply Sketch's XL part: the family's default reference scales, the reference context, the size vector `y`."""
    height, width = prompt.size
    colorizer, ref = prompt.colorizer, prompt.distinct_reference    # encoded once per distinct reference
    context = prompt.per_picture(reference_context(colorizer, ref.full, tagger_tokens_of(ref)), "reference")
    return dataclasses.replace(prompt, reference_scales=xl_conditioning.reference_scales(colorizer.spec),
                               xl_context=to_intermediate(context),
                               y=xl_conditioning.size_vector(height, width).expand(prompt.batch, -1).contiguous())


def with_background(prompt: ColorizerPrompt, *, vae, clip_vision, background, reference_mask, reference_threshold,
                    tagger, latent_copy) -> ColorizerPrompt:
    """XL background: ClusterConcat tokens of the background picture or the bleached reference; xlv2 also keeps
    what its ReferenceNet needs (latent, reference mask, crop-scale vector), run once the sketch mask is known."""
    colorizer, node = prompt.colorizer, modes.BACKGROUND_NODE
    rmask = convert.as_mask_batch(reference_mask, "reference_mask") if reference_mask is not None else None
    if background is not None:
        image, full, wd = background.image, background.full, tagger_tokens_of(background)
    else:
        if rmask is None:
            raise ColorizerInputError(f"{node} without a background picture whitens the character out of the "
                                      "reference: connect reference_mask, or a background picture")
        if clip_vision is None or tagger is None:
            raise ColorizerInputError(f"{node} without a background picture encodes the background-only reference "
                                      "(XL: CLIP bigG and the WD tagger): connect clip_vision and tagger")
        image = background_only(prompt.distinct_reference.image[:1], rmask[:1], reference_threshold)
        full = clip_tokens.encode_reference(clip_vision, image, token_type="full")
        wd = wd_tagger.tagger_tokens(tagger, image)
    tokens = reference_context(colorizer, full, wd)     # the distinct rows; the context repeats them per picture
    prompt.per_picture(tokens, "background")
    height, width = prompt.size
    z_bg = ref_mask = bgy = copy = None
    if latent_copy:
        if background is None:
            raise ColorizerInputError(f"{node}: latent copy copies a background picture's latent: connect "
                                      "background, or turn latent_copy off")
        copy = vae_latent(vae, colorizer, _crop_to_aspect(image, height, width), prompt.size,
                          colorizer.load_encoders(), node)
    elif colorizer.spec.reference_net:
        if rmask is None:
            raise ColorizerInputError(f"{node}: the XL v2 background ReferenceNet also reads the reference's "
                                      "character mask: connect reference_mask (ColorizeDiffusion Reference Mask)")
        z_bg = vae_latent(vae, colorizer, image, prompt.size, colorizer.load_encoders(), node)
        ref_mask = to_intermediate(rmask[:1])
        bgy = xl_conditioning.background_vector(height, width, *image.shape[-2:])
    part = BackgroundPart(tokens, background is not None, float(reference_threshold), None, z_bg=z_bg,
                          reference_mask=ref_mask, bgy=bgy, copy_latent=copy)
    return dataclasses.replace(prompt, background=part, banks=None)


def _crop_to_aspect(image, height, width):
    """Official latent copy source: the background's top-left crop of the generation's aspect (`resize_and_crop`),
    left to the VAE encoding's resize."""
    h, w = image.shape[-2:]
    ch, cw = xl_conditioning.crop_scale(height, width, h, w)
    return image[..., :int(float(ch) * h), :int(float(cw) * w)]


def with_banks(prompt: ColorizerPrompt) -> ColorizerPrompt:
    """xlv2 with Split Attention and a Background Encoder: the ReferenceNet run once at t=0 on the background latent
    and both masks; its banks are the prompt's own (never shared with another prompt or model)."""
    split, bg = prompt.split, prompt.background
    if not prompt.spec.reference_net or split is None or bg is None or bg.z_bg is None or prompt.banks is not None:
        return prompt
    device = prompt.colorizer.load_encoders()
    net = prompt.colorizer.encoders.reference_net
    with torch.no_grad():
        x = xl_conditioning.reference_net_input(bg.z_bg[:1].to(device), split.full_mask[:1].to(device),
                                                bg.reference_mask.to(device), prompt.size)
        banks = net.banks(x, bg.bgy.to(device))
    return dataclasses.replace(prompt, banks=Banks([to_intermediate(b) for b in banks]))


def latent_copy_entry(prompt: ColorizerPrompt) -> dict:
    """The conditioning entry of the XL app's latent copy (read by the guider), when the prompt has one."""
    split, bg = prompt.split, prompt.background
    if bg is None or bg.copy_latent is None or split is None:
        return {}
    threshold = prompt.spec.latent_copy_threshold    # as the official wrappers pass it
    if threshold is None:
        threshold = split.threshold
    return {LATENT_COPY_KEY: LatentCopy(bg.copy_latent, split.mask, threshold)}
