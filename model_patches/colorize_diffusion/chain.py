"""The conditioning chain: Apply Sketch starts a prompt, each encoder node adds its part.

A `ColorizerPrompt` travels inside the positive and negative CONDITIONING it describes. Every node of the chain
computes its own expensive part once (sketch residuals, background tokens and features, style vectors) and
stores it; the per-call tensors (context, settings, mask) are then assembled from the parts, so the order in
which Split Attention, Background Encoder, Style Encoder and the reference-strength nodes are wired does not
matter. Mirrors the official `prepare_conditions` per family (reference-app.md §1.3, model-spec §3).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ColorizerInputError
from ...preprocess import convert
from ...preprocess.masks import bleach
from . import modes
from .conditioning import guidance_conditionings
from .settings import GuidanceWindow, attention_settings, level_reference_scales

LATENT_SCALE = 8
PROMPT_KEY = "colorize_diffusion_prompt"          # conditioning entry: the ColorizerPrompt it was built from
NEGATIVE_KEY = "colorize_diffusion_negative"      # conditioning entry: marks the reference-unconditional one
APPLY_SKETCH = "ColorizeDiffusion Apply Sketch"


@dataclass(frozen=True)
class SplitPart:
    """Split Attention: the sketch mask at latent size and the official mask-guided knobs."""
    mask: torch.Tensor                # [B, 1, H/8, W/8] soft sketch mask
    threshold: float                  # Sketch mask threshold
    fg_strength: float = 1.0
    bg_strength: float = 1.0
    merge_scale: float = 0.0
    foreground: bool = True           # FG enhance (v1.5: the foreground LoRA)
    official_fgbg_reset: bool = True  # v1/v1.5: strengths reset to 1 as in the official app
    full_mask: torch.Tensor | None = None   # XL: the mask at the generation size (xlv2 ReferenceNet input)


@dataclass(frozen=True)
class BackgroundPart:
    """Background Encoder: CLIP local tokens of the background (picture or background-only reference)."""
    tokens: torch.Tensor              # [B, T, C]
    separate: bool                    # a separate background picture (v1.5: no cluster transformer)
    reference_threshold: float        # v1.5: its threshold embedding is added to the background tokens
    hs_bg: list | None = None         # v2: 12 × [B, N_j, C_j] background features × background factor
    z_bg: torch.Tensor | None = None  # xlv2: VAE latent of the background source at the generation size
    reference_mask: torch.Tensor | None = None   # xlv2: the reference's character mask (ReferenceNet input)
    bgy: torch.Tensor | None = None   # xlv2: the ReferenceNet's y (crop scales of the background source)
    copy_latent: torch.Tensor | None = None      # XL "Latent copy BG input": the background picture's latent


@dataclass(frozen=True)
class ColorizerPrompt:
    colorizer: object
    reference: object                 # ColorizerReference, one row per generated picture
    controls: list                    # 5 × sketch residuals × sketch strength
    blank_controls: list              # 5 × blank-sketch residuals × sketch strength
    size: tuple                       # (H, W) generation size in pixels
    reference_scales: tuple = level_reference_scales()
    split: SplitPart | None = None
    background: BackgroundPart | None = None
    style: list | None = None         # v2: 12 × [B, D_j] style modulations
    window: GuidanceWindow | None = None
    y: torch.Tensor | None = None     # XL: [B, 512] size and aesthetic-score vector of the UNet
    xl_context: torch.Tensor | None = None      # XL: [B, 196, C] ClusterConcat of the reference's tokens
    control_scales: tuple = (1.0, 1.0, 1.0, 1.0)   # Sketch Level Strength (XL app's Sketch strength 1..4)
    banks: object = None              # xlv2: the ReferenceNet's banks (derived once split and background are known)

    @property
    def family(self) -> str:
        return self.colorizer.family

    @property
    def batch(self) -> int:
        return int(self.controls[0].shape[0])

    @property
    def parts(self) -> modes.ModeParts:
        return modes.ModeParts(split=self.split is not None, foreground=bool(self.split and self.split.foreground),
                               background=self.background is not None, style=self.style is not None)


def _intermediate(t):
    import comfy.model_management as mm

    return None if t is None else t.to(mm.intermediate_device())


def _rows(t: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """`t` with one row per generated picture: a single row is repeated; otherwise it must already match."""
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch, *t.shape[1:])
    raise ColorizerInputError(f"{what} has {t.shape[0]} rows but {batch} pictures are generated: give one, or one "
                              "per picture")


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
    if not colorizer.is_xl:
        reference.check_context_dim(colorizer.context_dim)
    ref = reference.expand_to(sketches).repeat_each(samples_per_sketch)
    device = colorizer.load_encoders()
    enc = colorizer.encoders.sketch_encoder
    dtype = next(enc.parameters()).dtype
    controls, blank = enc.encode_with_blank(sketch.to(device, dtype), sketch_strength)
    def repeat(ts):
        return [_intermediate(t if samples_per_sketch == 1 else t.repeat_interleave(samples_per_sketch, 0))
                for t in ts]

    prompt = ColorizerPrompt(colorizer, ref, repeat(controls), repeat(blank), (height, width))
    if colorizer.is_xl:
        from .xl_conditioning import reference_scales, size_vector

        prompt = dataclasses.replace(prompt, reference_scales=reference_scales(colorizer.family),
                                     xl_context=_xl_tokens(colorizer, ref.full, _tagger_tokens_of(ref)),
                                     y=size_vector(height, width).expand(prompt.batch, -1).contiguous())
    return prompt


def _tagger_tokens_of(reference) -> torch.Tensor:
    tokens = reference.tagger_tokens
    if tokens is None:
        raise ColorizerInputError(
            "a ColorizeDiffusion XL checkpoint needs the reference's WD tagger tokens beside its CLIP tokens: connect "
            "ColorizeDiffusion Load WD Tagger to the tagger input of ColorizeDiffusion Encode Reference (and load "
            "clip_vision_g.safetensors as its CLIP vision)")
    return tokens


def _xl_tokens(colorizer, clip_full, tagger_tokens) -> torch.Tensor:
    """The XL reference context: ClusterConcat of the CLIP bigG "full" tokens and the WD tagger tokens."""
    device = colorizer.load_encoders()
    with torch.no_grad():
        return _intermediate(colorizer.encoders.reference_projection(clip_full.to(device), tagger_tokens.to(device)))


def with_control_scales(prompt: ColorizerPrompt, scales) -> ColorizerPrompt:
    scales = tuple(float(s) for s in scales)
    if any(s < 0 for s in scales):
        raise ColorizerInputError(f"sketch level strengths must not be negative, got {scales}")
    return dataclasses.replace(prompt, control_scales=scales)


def with_reference_scales(prompt: ColorizerPrompt, scales: tuple) -> ColorizerPrompt:
    if prompt.colorizer.is_xl and len(scales) != len(prompt.reference_scales):
        raise ColorizerInputError(
            f"the per-block reference strengths are the SD2.1 app's 16 sliders; an {modes.family_name(prompt.family)} "
            "UNet has 70 transformer blocks: use ColorizeDiffusion Reference Strength (level sliders) instead")
    return dataclasses.replace(prompt, reference_scales=tuple(float(s) for s in scales))


def with_reference_levels(prompt: ColorizerPrompt, strength: float, encoder: float, color: float, semantics: float,
                          all_blocks: bool = False) -> ColorizerPrompt:
    """Reference Strength: the level sliders as the family's official app maps them to blocks."""
    if prompt.colorizer.is_xl:
        from .xl_conditioning import reference_scales

        return with_reference_scales(prompt, reference_scales(prompt.family, strength, encoder, semantics))
    return with_reference_scales(prompt, level_reference_scales(strength, encoder, color, semantics,
                                                                all_blocks=all_blocks))


WINDOW_FAMILIES = ("v1", "sdxl", "xlv2")    # the official wrappers that apply the guidance window


def with_window(prompt: ColorizerPrompt, window: GuidanceWindow, all_families: bool = False) -> ColorizerPrompt:
    """Guidance Window. The official apps honour it for v1 and XL (the SD2.1 v1.5/v2 wrappers never reach the
    code); `all_families` applies it to v1.5/v2 too (not official)."""
    window.check()
    if prompt.family not in WINDOW_FAMILIES and not all_families:
        raise ColorizerInputError(
            f"the official {modes.family_name(prompt.family)} app ignores the guidance window (v1 and XL honour it): "
            "remove ColorizeDiffusion Guidance Window for the official result, or turn its all_families on to "
            "apply the window anyway")
    return dataclasses.replace(prompt, window=window)


def with_split(prompt: ColorizerPrompt, sketch_mask, threshold: float, fg_strength: float = 1.0,
               bg_strength: float = 1.0, merge_scale: float = 0.0, foreground: bool = True,
               official_fgbg_reset: bool = True) -> ColorizerPrompt:
    """Split Attention: `sketch_mask` (any MASK layout) at the generation size, 1 = character."""
    mask = convert.as_mask_batch(sketch_mask, "sketch_mask")
    height, width = prompt.size
    if tuple(mask.shape[-2:]) != (height, width):
        raise ColorizerInputError(f"sketch_mask is {mask.shape[-1]}x{mask.shape[-2]}, the prepared sketch is "
                                  f"{width}x{height}: make the mask from the prepared sketch (ColorizeDiffusion "
                                  "Sketch Mask, or Prepare Sketch's output)")
    _check_not_blank(mask)
    if prompt.colorizer.is_xl:               # the XL code reduces the mask by nearest sampling
        from .xl_conditioning import latent_mask

        small = latent_mask(mask)
    else:
        small = F.interpolate(mask, scale_factor=1 / LATENT_SCALE, mode="bicubic")
    split = SplitPart(_intermediate(_rows(small, prompt.batch, "sketch_mask")), float(threshold), float(fg_strength),
                      float(bg_strength), float(merge_scale), bool(foreground), bool(official_fgbg_reset),
                      full_mask=_intermediate(mask) if prompt.colorizer.is_xl else None)
    return dataclasses.replace(prompt, split=split, banks=None)


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
    `reference_mask` at `reference_threshold`), as CLIP tokens; v2 also runs its background encoder."""
    from ..common import clip_tokens
    from .networks.v2_encoders import size_embedding

    colorizer, batch = prompt.colorizer, prompt.batch
    if colorizer.is_xl:
        return _with_xl_background(prompt, vae=vae, clip_vision=clip_vision, background=background,
                                   reference_mask=reference_mask, reference_threshold=reference_threshold,
                                   tagger=tagger, latent_copy=latent_copy)
    if latent_copy:
        raise ColorizerInputError(f"{modes.BACKGROUND_NODE}: latent copy is an option of the XL app; turn it off for "
                                  f"a {modes.family_name(prompt.family)} checkpoint")
    separate = background is not None
    if separate:
        background.check_context_dim(colorizer.context_dim)
        image, tokens = _rows(background.image, batch, "background"), _rows(background.tokens, batch, "background")
    else:
        if reference_mask is None:
            raise ColorizerInputError(
                f"{modes.BACKGROUND_NODE} without a background picture whitens the character out of the reference: "
                "connect reference_mask (ColorizeDiffusion Reference Mask, or any MASK of the character), or a "
                "background picture")
        if clip_vision is None:
            raise ColorizerInputError(f"{modes.BACKGROUND_NODE} without a background picture encodes the "
                                      "background-only reference: connect clip_vision")
        image = _background_only(prompt.reference.image, convert.as_mask_batch(reference_mask, "reference_mask"),
                                 reference_threshold)
        tokens = _intermediate(clip_tokens.encode_reference(clip_vision, image, context_dim=colorizer.context_dim,
                                                            token_type="local"))
    hs_bg = None
    if prompt.family == "v2":
        device = colorizer.load_encoders()
        gen_hw = prompt.size
        size = size_embedding(prompt.reference.size, gen_hw).to(device).expand(batch, -1)
        z_bg = _vae_latent(vae, colorizer, image, gen_hw, device, modes.BACKGROUND_NODE)
        if separate:
            size = size_embedding(tuple(image.shape[-2:]), gen_hw).to(device).expand(batch, -1)
        emb = prompt.reference.tokens.to(device)
        hs_bg = [_intermediate(h * factor) for h in colorizer.encoders.bg_encoder(z_bg, emb, size)]
    part = BackgroundPart(tokens, separate, float(reference_threshold), hs_bg)
    return dataclasses.replace(prompt, background=part)


def _with_xl_background(prompt, *, vae, clip_vision, background, reference_mask, reference_threshold, tagger,
                        latent_copy):
    """XL background: ClusterConcat tokens of the background picture or the bleached reference; xlv2 also keeps
    what its ReferenceNet needs (latent, reference mask, crop-scale vector), run once the sketch mask is known."""
    from ..common import clip_tokens
    from . import xl_conditioning
    from .tagger import tagger_tokens

    colorizer, batch, node = prompt.colorizer, prompt.batch, modes.BACKGROUND_NODE
    rmask = convert.as_mask_batch(reference_mask, "reference_mask") if reference_mask is not None else None
    if background is not None:
        image, full, wd = background.image, background.full, _tagger_tokens_of(background)
    else:
        if rmask is None:
            raise ColorizerInputError(f"{node} without a background picture whitens the character out of the "
                                      "reference: connect reference_mask, or a background picture")
        if clip_vision is None or tagger is None:
            raise ColorizerInputError(f"{node} without a background picture encodes the background-only reference "
                                      "(XL: CLIP bigG and the WD tagger): connect clip_vision and tagger")
        image = _background_only(prompt.reference.image, rmask, reference_threshold)[:1]
        full = clip_tokens.encode_reference(clip_vision, image, token_type="full")
        wd = tagger_tokens(tagger, image)
    tokens = _rows(_xl_tokens(colorizer, full, wd), batch, "background")
    height, width = prompt.size
    z_bg = ref_mask = bgy = copy = None
    if latent_copy:
        if background is None:
            raise ColorizerInputError(f"{node}: latent copy copies a background picture's latent: connect "
                                      "background, or turn latent_copy off")
        copy = _vae_latent(vae, colorizer, _crop_to_aspect(image, height, width), prompt.size,
                           colorizer.load_encoders(), node)
    elif prompt.family == "xlv2":
        if rmask is None:
            raise ColorizerInputError(f"{node}: the XL v2 background ReferenceNet also reads the reference's "
                                      "character mask: connect reference_mask (ColorizeDiffusion Reference Mask)")
        z_bg = _vae_latent(vae, colorizer, image, prompt.size, colorizer.load_encoders(), node)
        ref_mask = _intermediate(rmask[:1])
        bgy = xl_conditioning.background_vector(height, width, *image.shape[-2:])
    part = BackgroundPart(tokens, background is not None, float(reference_threshold), None, z_bg=z_bg,
                          reference_mask=ref_mask, bgy=bgy, copy_latent=copy)
    return dataclasses.replace(prompt, background=part, banks=None)


def _crop_to_aspect(image, height, width):
    """Official latent copy source: the background's top-left crop of the generation's aspect (`resize_and_crop`),
    left to the VAE encoding's resize."""
    from .xl_conditioning import crop_scale

    h, w = image.shape[-2:]
    ch, cw = crop_scale(height, width, h, w)
    return image[..., :int(float(ch) * h), :int(float(cw) * w)]


def _background_only(image, reference_mask, threshold):
    """The official bleaching: where(mask < threshold, reference, white) at the reference's size."""
    m = reference_mask.to(image.device)
    if tuple(m.shape[-2:]) != tuple(image.shape[-2:]):
        raise ColorizerInputError(f"reference_mask is {m.shape[-1]}x{m.shape[-2]}, the reference is "
                                  f"{image.shape[-1]}x{image.shape[-2]} (after padding): make the mask from the "
                                  "reference picture that was encoded")
    return bleach(image, _rows(m, image.shape[0], "reference_mask"), threshold)


def with_style(prompt: ColorizerPrompt, *, vae=None, background=None, merge_scale: float = 0.0) -> ColorizerPrompt:
    """Style Encoder (v2): per-decoder-block modulations from the reference's VAE latent; with a background
    picture, blended with the background's own (`(1 - merge)·ref + merge·background`)."""
    from .networks.v2_encoders import size_embedding

    modes.check_style(prompt.family)
    colorizer, batch, gen_hw = prompt.colorizer, prompt.batch, prompt.size
    device = colorizer.load_encoders()
    style_encoder = colorizer.encoders.style_encoder
    ref = prompt.reference
    size_ref = size_embedding(ref.size, gen_hw).to(device).expand(batch, -1)
    z_ref = _vae_latent(vae, colorizer, ref.image, gen_hw, device, modes.STYLE_NODE)
    style = style_encoder(z_ref, ref.tokens.to(device), size_ref)
    if background is not None:
        background.check_context_dim(colorizer.context_dim)
        bg_image = _rows(background.image, batch, "background")
        size_bg = size_embedding(tuple(bg_image.shape[-2:]), gen_hw).to(device).expand(batch, -1)
        z_bg = _vae_latent(vae, colorizer, bg_image, gen_hw, device, modes.STYLE_NODE)
        style_bg = style_encoder(z_bg, _rows(background.tokens, batch, "background").to(device), size_bg)
        style = [f * (1 - merge_scale) + b * merge_scale for f, b in zip(style, style_bg)]
    return dataclasses.replace(prompt, style=[_intermediate(s) for s in style])


def _vae_latent(vae, colorizer, image, gen_hw, device, node):
    """VAE latent (×0.18215) of `image` ([-1,1]) squashed to the generation size (official: plain bicubic)."""
    if vae is None:
        raise ColorizerInputError(f"{node} VAE-encodes the picture (v2): connect a VAE")
    pixels = F.interpolate(image.float(), size=gen_hw, mode="bicubic", align_corners=False)
    latent = vae.encode(((pixels + 1) / 2).movedim(1, -1))
    return _rows(colorizer.latent_format.process_in(latent), image.shape[0], "the VAE latent").to(device)


# ------------------------------------------------------------------------------------------------ assembly
def context(prompt: ColorizerPrompt) -> torch.Tensor:
    """The positive cross-attention context: the reference tokens, or the (foreground, background) halves of the
    split attention (v1.5: with the threshold embeddings and the cluster transformer)."""
    emb = prompt.xl_context if prompt.xl_context is not None else prompt.reference.tokens
    split, bg = prompt.split, prompt.background
    if split is None:
        return emb
    if prompt.family == "v1.5":
        return _v15_context(prompt, emb, split, bg)
    return torch.cat([emb, bg.tokens if bg is not None else emb], dim=1)


def _v15_context(prompt, emb, split, bg):
    if bg is None:                                  # foreground enhance only: the same tokens twice
        return emb.repeat(1, 2, 1)
    device = prompt.colorizer.load_encoders()
    enc = prompt.colorizer.encoders
    th = enc.threshold_embedder([bg.reference_threshold, split.threshold], device=device).to(device)   # [2, 1, C]
    th_ref, th_sk = th[0:1], th[1:2]
    tokens = bg.tokens.to(device) + th_ref
    bg_tokens = tokens if bg.separate else enc.cluster_transformer(tokens)
    ctx = torch.cat([emb.to(device) + th_sk, bg_tokens.expand(emb.shape[0], -1, -1)], dim=1)
    return _intermediate(ctx.repeat(1, 2, 1) if split.foreground else ctx)


def settings(prompt: ColorizerPrompt):
    split = prompt.split
    if split is None:
        out = attention_settings(prompt.family, prompt.parts, prompt.reference_scales, 0.05, window=prompt.window)
    else:
        out = attention_settings(prompt.family, prompt.parts, prompt.reference_scales, split.threshold,
                                 split.fg_strength, split.bg_strength, split.merge_scale, split.official_fgbg_reset,
                                 prompt.window)
    return dataclasses.replace(out, batch=prompt.batch)


def _scaled(controls, scales):
    if all(s == 1 for s in scales):
        return controls
    return [c * scales[min(i, len(scales) - 1)] for i, c in enumerate(controls)]


def _with_banks(prompt: ColorizerPrompt) -> ColorizerPrompt:
    """xlv2 with Split Attention and a Background Encoder: the ReferenceNet run once at t=0 on the background latent
    and both masks; its banks are the prompt's own (never shared with another prompt or model)."""
    split, bg = prompt.split, prompt.background
    if prompt.family != "xlv2" or split is None or bg is None or bg.z_bg is None or prompt.banks is not None:
        return prompt
    from .step_data import Banks
    from .xl_conditioning import reference_net_input

    device = prompt.colorizer.load_encoders()
    net = prompt.colorizer.encoders.reference_net
    with torch.no_grad():
        x = reference_net_input(bg.z_bg[:1].to(device), split.full_mask[:1].to(device),
                                bg.reference_mask.to(device), prompt.size)
        banks = net.banks(x, bg.bgy.to(device))
    return dataclasses.replace(prompt, banks=Banks([_intermediate(b) for b in banks]))


def conditionings(prompt: ColorizerPrompt) -> tuple[list, list]:
    """(positive, negative) of a prompt; each entry carries the prompt, so the next node of the chain can add to it
    and the guider can derive the sketch-unconditional pass."""
    from .latent_copy import LATENT_COPY_KEY, LatentCopy

    prompt = _with_banks(prompt)
    split, bg = prompt.split, prompt.background
    extra = {PROMPT_KEY: prompt}
    if bg is not None and bg.copy_latent is not None and split is not None:
        threshold = 0.5 if prompt.family == "sdxl" else split.threshold     # as the official wrappers pass it
        extra[LATENT_COPY_KEY] = LatentCopy(bg.copy_latent, split.mask, threshold)
    positive, negative, _ = guidance_conditionings(
        context(prompt), settings(prompt), _scaled(prompt.controls, prompt.control_scales),
        _scaled(prompt.blank_controls, prompt.control_scales),
        split.mask if split is not None else None, bg.hs_bg if bg is not None else None, prompt.style,
        extra=extra, y=prompt.y, banks=prompt.banks)
    negative[0][1][NEGATIVE_KEY] = True
    return positive, negative


def prompt_of(positive, negative, node: str) -> ColorizerPrompt:
    """The prompt a (positive, negative) pair from the chain carries; a clear error for anything else."""
    def entry(cond, name):
        if not isinstance(cond, list) or len(cond) != 1 or PROMPT_KEY not in cond[0][1]:
            raise ColorizerInputError(
                f"{node}: {name} must come from {APPLY_SKETCH} or a ColorizeDiffusion node chained after it "
                "(a text or combined conditioning cannot carry the sketch and reference)")
        return cond[0][1]

    pos, neg = entry(positive, "positive"), entry(negative, "negative")
    if pos.get(NEGATIVE_KEY) or not neg.get(NEGATIVE_KEY):
        raise ColorizerInputError(f"{node}: positive and negative are swapped; connect positive to positive and "
                                  "negative to negative")
    if pos[PROMPT_KEY] is not neg[PROMPT_KEY]:
        raise ColorizerInputError(f"{node}: positive and negative come from different chains; connect the pair that "
                                  "one node gave")
    return pos[PROMPT_KEY]
