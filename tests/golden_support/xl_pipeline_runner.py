"""XL level D: from the user's images through the pack's nodes to one guided evaluation.

Prepare Sketch (pillow resampling, the XL app's fit) → (Reference Pad) → Load CLIP vision + Load WD Tagger →
Encode Reference (with the tagger) → Apply Sketch → Sketch Level Strength → Reference Strength → Split Attention +
Background Encoder when the case turns "Low-level injection" on → ColorizeDiffusion Guider at the case's sigma.
The VAE is a stand-in returning the case's latents; intermediates are read from the chain's prompt and from the
public functions the nodes call (recorded for the duration of the call).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from colorize_diffusion.model_patches.common import clip_tokens
from colorize_diffusion.model_patches.colorize_diffusion import xl_conditioning, tagger as xl_reference
from colorize_diffusion.model_patches.colorize_diffusion.prompt import prompt_of
from colorize_diffusion.model_patches.colorize_diffusion.conditioning import sketch_unconditional
from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

from .model_eval import guided_step, param
from .pipeline_runner import LatentStandIn, _conditioning_tensors, _mask, _node, check_recorded, prepared_pictures
from .xl_runner import check_level_mode, checkpoint_of, level_strengths

XL_LATENT_SCALE = 0.13025


class XLLatentStandIn(LatentStandIn):
    def encode(self, pixels):
        name = self.names.pop(0)
        self.inputs[f"vae_input.{name}"] = pixels.movedim(-1, 1) * 2 - 1
        return self.latents[name] / XL_LATENT_SCALE


def run(case, inputs, case_dir, root):
    root = Path(root)
    ckpt = checkpoint_of(case, root)
    clip = load_vision_file(str(root / case["clip"]))
    tagger = xl_reference.load_tagger(str(root / case["tagger"]))
    sketch, ref_image, bg_image = prepared_pictures(case, inputs, resampling="pillow")
    encode = _node("ColorizeDiffusionEncodeReference")
    reference = encode(clip_vision=clip, image=ref_image, tagger=tagger)[0]
    background = encode(clip_vision=clip, image=bg_image, tagger=tagger)[0] if bg_image is not None else None

    vae_inputs: dict = {}
    latents = {k: inputs[k] for k in ("z_bg",) if k in inputs}
    model, pos, neg, latent = _node("ColorizeDiffusionApplySketch")(
        model=ckpt.model, colorizer=ckpt.colorizer, sketch=sketch, reference=reference,
        sketch_strength=param(case, "Sketch strength"), samples_per_sketch=param(case, "Batch size", 1))
    levels = level_strengths(case)
    pos, neg = _node("ColorizeDiffusionSketchLevelStrength")(
        positive=pos, negative=neg, **{f"level_{i + 1}": s for i, s in enumerate(levels)})
    check_level_mode(case)
    assert not param(case, "Latent copy BG input", False), "Latent copy BG input: level D runs one evaluation"
    pos, neg = _node("ColorizeDiffusionReferenceStrength")(
        positive=pos, negative=neg, reference_strength=param(case, "Reference strength"),
        encoder_scale=param(case, "Encoder crossattn scale"), color_scale=param(case, "Color crossattn scale"),
        semantics_scale=param(case, "Semantics crossattn scale"))
    seen: dict = {}
    if param(case, "Low-level injection", False):
        pos, neg = _node("ColorizeDiffusionSplitAttention")(
            positive=pos, negative=neg, sketch_mask=_mask(inputs, "sketch_mask"),
            threshold=param(case, "Sketch mask threshold"), foreground_strength=param(case, "Foreground strength"),
            background_strength=param(case, "Background strength"), merge_scale=param(case, "Merging scale"),
            foreground_enhance=False)
        with _recorded(seen):
            pos, neg = _node("ColorizeDiffusionBackgroundEncoder")(
                positive=pos, negative=neg, reference_mask_threshold=param(case, "Reference mask threshold"),
                background_factor=param(case, "Background factor"), clip_vision=clip, tagger=tagger,
                vae=XLLatentStandIn(latents, ["z_bg"], vae_inputs), reference_mask=_mask(inputs, "reference_mask"),
                background=background)
    prompt = prompt_of(pos, neg, "golden")
    check_recorded(case, prompt, vae_inputs)
    sk = sketch_unconditional(pos)
    assert latent["samples"].shape[-2:] == inputs["x_t"].shape[-2:]
    rec, guided, _ = guided_step(model, pos, neg, sk, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]],
                                 param(case, "Reference guidance scale"), param(case, "Sketch guidance scale"),
                                 case["prediction_type"])
    got = {"guided": guided[0], "pre.sketch": sketch.sketch, "pre.reference": reference.image,
           "cond.y": pos[0][1]["model_conds"]["y"].cond,
           "debug.reference_clip_full": reference.full,
           "debug.reference_wd_tokens": reference.tagger_tokens}
    for position, name in enumerate(case["passes"]):
        got[f"raw.{name}"] = rec.calls[0][position]
    got.update(_conditioning_tensors(pos, sk))
    got.update(vae_inputs)
    if background is not None:
        seen["background_clip_full"] = background.full
        seen["background_wd_tokens"] = background.tagger_tokens
    if prompt.banks is not None:
        got.update({f"bank.{k}": b for k, b in enumerate(prompt.banks.banks)})
        got["debug.bgy"] = prompt.background.bgy
    got.update({f"debug.{k}": v for k, v in seen.items()})
    return got


@contextlib.contextmanager
def _recorded(seen):
    """The background-only reference, its CLIP and tagger tokens, and the ReferenceNet input, as the Background
    Encoder computes them."""
    encode_reference, tagger_tokens, net_input = (clip_tokens.encode_reference, xl_reference.tagger_tokens,
                                                  xl_conditioning.reference_net_input)

    def record_encode(clip_vision, images, **kwargs):
        out = encode_reference(clip_vision, images, **kwargs)
        seen["bg_only_reference"], seen["background_clip_full"] = images, out
        return out

    def record_tagger(tagger, images):
        out = tagger_tokens(tagger, images)
        seen["background_wd_tokens"] = out
        return out

    def record_input(*args, **kwargs):
        out = net_input(*args, **kwargs)
        seen["bg_encoder_input"] = out
        return out

    clip_tokens.encode_reference, xl_reference.tagger_tokens = record_encode, record_tagger
    xl_conditioning.reference_net_input = record_input
    try:
        yield seen
    finally:
        clip_tokens.encode_reference, xl_reference.tagger_tokens = encode_reference, tagger_tokens
        xl_conditioning.reference_net_input = net_input
