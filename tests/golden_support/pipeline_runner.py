"""Level D: from the user's images through the pack's node functions to one guided evaluation.

Prepare Sketch → (Reference Pad) → Encode Reference (tiny OpenCLIP file) → Apply Sketch → the encoder nodes
the case's checkboxes wire (modes.from_checkboxes) → ColorizeDiffusion Guider at the case's sigma. The VAE is a stand-in that returns the latents the case
supplies (`z_ref`, `z_bg`); the images handed to it are returned as `vae_input.*` and compared. The other
intermediates (`debug.*`) are read where the pack computes them: the public functions it calls (recorded for
the duration of the node call) and forward hooks on the colorizer's networks.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from colorize_diffusion.model_patches.common import clip_tokens, clip_vision
from colorize_diffusion.model_patches.colorize_diffusion import manipulation, modes
from colorize_diffusion.nodes import node_classes
from colorize_diffusion.model_patches.colorize_diffusion.networks import v2_encoders

from colorize_diffusion.model_patches.colorize_diffusion.conditioning import sketch_unconditional
from colorize_diffusion.model_patches.colorize_diffusion.prompt import prompt_of

from .clip_runner import tower_heads
from .model_eval import accurate_sliders, case_window, guided_step, loaded, param

LATENT_SCALE = 0.18215
NODES = node_classes()


class LatentStandIn:
    """Plays the VAE for one node: returns the case's latents `names` (in ComfyUI's unscaled convention) in the
    order that node encodes its pictures."""

    def __init__(self, latents: dict, names: list, inputs: dict):
        self.latents = latents
        self.names = list(names)
        self.inputs = inputs

    def encode(self, pixels):
        name = self.names.pop(0)
        self.inputs[f"vae_input.{name}"] = pixels.movedim(-1, 1) * 2 - 1    # the node hands over (x+1)/2, BHWC
        return self.latents[name] / LATENT_SCALE


def _node(name):
    return NODES[name].execute


def _parts(case):
    return modes.from_checkboxes(style=param(case, "Style enhance", False),
                                 background=param(case, "BG enhance (mask guided)", False),
                                 foreground=param(case, "FG enhance (mask guided)", False))


def _mask(inputs, name):
    return inputs[name][:, 0] if name in inputs else None


def _hwc(x):
    return x[None] if x.ndim == 3 else x


# the app's "Sketch preprocessor" as Prepare Sketch's (method, polarity) (reference-app §2.1); `extract` also needs
# the app's line extractor, which the case format does not name
SKETCH_PREPROCESSORS = {"none": ("none", "keep"), "invert": ("none", "invert"), "invert-webui": ("standard", "keep")}


def sketch_preprocessor(case) -> tuple[str, str]:
    value = param(case, "Sketch preprocessor", "invert")
    assert value in SKETCH_PREPROCESSORS, f"Sketch preprocessor {value!r}: this runner knows {list(SKETCH_PREPROCESSORS)}"
    return SKETCH_PREPROCESSORS[value]


def check_recorded(case, prompt, vae_inputs: dict) -> None:
    """The values the case records from the app's run agree with the chain's: the per-block reference scales, the
    pictures the VAE encoded, and the threshold the UNet forward got (the split attention's)."""
    if case.get("reference_scale_per_block") is not None:
        want, got = [float(v) for v in case["reference_scale_per_block"]], [float(v) for v in prompt.reference_scales]
        assert len(want) == len(got) and all(abs(a - b) < 1e-9 for a, b in zip(want, got)), (got, want)
    if case.get("vae_latents_used") is not None:
        encoded = sorted(k.removeprefix("vae_input.") for k in vae_inputs)
        assert encoded == sorted(case["vae_latents_used"]), (encoded, case["vae_latents_used"])
    threshold = case.get("threshold_passed_to_unet")
    if threshold is not None:
        assert prompt.split is not None and abs(prompt.split.threshold - float(threshold)) < 1e-9, threshold


def prepared_pictures(case, inputs, resampling: str = "tensor"):
    """The user's pictures as the app prepares them, through Prepare Sketch and Reference Pad:
    (COLORIZER_SKETCH, reference IMAGE, background IMAGE or None)."""
    height, width = param(case, "Height"), param(case, "Width")
    pad = param(case, "Reference padding scale", 1.0)
    method, polarity = sketch_preprocessor(case)
    sketch = _node("ColorizeDiffusionPrepareSketch")(
        image=_hwc(inputs["sketch_image"]), width=width, height=height, polarity=polarity, method=method,
        resampling=resampling)[3]
    ref_image = _hwc(inputs["reference_image"])
    bg_image = _hwc(inputs["background_image"]) if "background_image" in inputs else None
    if pad != 1.0:
        ref_image = _node("ColorizeDiffusionReferencePad")(image=ref_image, pad_scale=pad)[0]
        if bg_image is not None:
            bg_image = _node("ColorizeDiffusionReferencePad")(image=bg_image, pad_scale=pad)[0]
    return sketch, ref_image, bg_image


def run(case, inputs, case_dir, root):
    ckpt = loaded(str(root / case["checkpoint"]), case["prediction_type"])
    clip = clip_vision.load_openclip_vision(str(root / case["clip"]), heads=tower_heads(root / case["clip"]))
    sketch, ref_image, bg_image = prepared_pictures(case, inputs)
    encode = _node("ColorizeDiffusionEncodeReference")
    reference = original_reference = encode(clip_vision=clip, image=ref_image)[0]
    manipulated = {}
    if case.get("parsed_manipulation_params"):                  # level G3: the manipulation nodes on the way
        reference, manipulated = _manipulate(case, root, reference)
    background = encode(clip_vision=clip, image=bg_image)[0] if bg_image is not None else None

    latents = {k: inputs[k] for k in ("z_ref", "z_bg") if k in inputs}
    vae_inputs: dict = {}
    parts = _parts(case)
    with _recorded(ckpt.colorizer, reference.size) as seen:
        model, pos, neg, latent = _node("ColorizeDiffusionApplySketch")(
            model=ckpt.model, colorizer=ckpt.colorizer, sketch=sketch, reference=reference,
            sketch_strength=param(case, "Sketch strength"), samples_per_sketch=param(case, "Batch size", 1))
        accurate = accurate_sliders(case)
        if accurate is None:
            pos, neg = _node("ColorizeDiffusionReferenceStrength")(
                positive=pos, negative=neg, reference_strength=param(case, "Reference strength"),
                encoder_scale=param(case, "Encoder crossattn scale"), color_scale=param(case, "Color crossattn scale"),
                semantics_scale=param(case, "Semantics crossattn scale"))
        else:                                                    # "Activate accurate crossattn control"
            values, shifted = accurate
            pos, neg = _node("ColorizeDiffusionBlockReferenceStrength")(
                positive=pos, negative=neg, official_slider_shift=shifted,
                **{f"block_{i}": v for i, v in enumerate(values)})
        window = case_window(case, ckpt.colorizer.family)
        if window is not None:
            pos, neg = _node("ColorizeDiffusionGuidanceWindow")(
                positive=pos, negative=neg, start=window.start, end=window.end, no_guidance_start=window.no_start,
                no_guidance_end=window.no_end)
        merge = param(case, "Merging scale")
        if parts.split:
            pos, neg = _node("ColorizeDiffusionSplitAttention")(
                positive=pos, negative=neg, sketch_mask=_mask(inputs, "sketch_mask"),
                threshold=param(case, "Sketch mask threshold"), foreground_strength=param(case, "Foreground strength"),
                background_strength=param(case, "Background strength"), merge_scale=merge,
                foreground_enhance=parts.foreground)
        if parts.background:
            pos, neg = _node("ColorizeDiffusionBackgroundEncoder")(
                positive=pos, negative=neg, reference_mask_threshold=param(case, "Reference mask threshold"),
                background_factor=param(case, "Background factor"), clip_vision=clip,
                vae=LatentStandIn(latents, ["z_bg"], vae_inputs), reference_mask=_mask(inputs, "reference_mask"),
                background=background)
        if parts.style:
            names = ["z_ref"] + (["z_bg"] if background is not None else [])
            pos, neg = _node("ColorizeDiffusionStyleEncoder")(
                positive=pos, negative=neg, vae=LatentStandIn(latents, names, vae_inputs), merge_scale=merge,
                background=background)
    sk = sketch_unconditional(pos)
    assert latent["samples"].shape[-2:] == inputs["x_t"].shape[-2:]
    check_recorded(case, prompt_of(pos, neg, "golden"), vae_inputs)

    gs_ref, gs_sk = param(case, "Reference guidance scale"), param(case, "Sketch guidance scale")
    rec, guided, _ = guided_step(model, pos, neg, sk, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]],
                                 gs_ref, gs_sk, case["prediction_type"])
    got = {"guided": guided[0], "pre.sketch": sketch.sketch, "pre.reference": reference.image}
    if background is not None:
        got["pre.background"] = background.image
    for position, name in enumerate(case["passes"]):
        got[f"raw.{name}"] = rec.calls[0][position]
    got.update(_conditioning_tensors(pos, sk))
    got.update(vae_inputs)
    got["debug.reference_tokens"] = original_reference.tokens
    got.update(manipulated)
    if background is not None:
        seen["background_local_tokens"] = background.tokens
    got.update({f"debug.{k}": v for k, v in seen.items()})
    return got


@contextlib.contextmanager
def _recorded(colorizer, reference_hw: tuple):
    """What the conditioning node computes on the way: the background-only reference and its tokens, the size
    embeddings (the reference's, told by its pixel size, and the background's), the v1.5 threshold embedding and
    cluster output."""
    seen, hooks = {}, []
    encode_reference, size_embedding = clip_tokens.encode_reference, v2_encoders.size_embedding

    def record_encode(clip_vision, images, **kwargs):
        out = encode_reference(clip_vision, images, **kwargs)
        seen["bg_only_reference"], seen["background_local_tokens"] = images, out
        return out

    def record_size(ref_hw, gen_hw, *args, **kwargs):
        out = size_embedding(ref_hw, gen_hw, *args, **kwargs)
        seen["size_emb_reference" if tuple(ref_hw) == tuple(reference_hw) else "size_emb_background"] = out
        return out

    for name, key in (("threshold_embedder", "thresh_emb"), ("cluster_transformer", "cluster_out")):
        module = getattr(colorizer.encoders, name)
        if module is not None:
            hooks.append(module.register_forward_hook(lambda m, args, out, key=key: seen.__setitem__(key, out)))
    clip_tokens.encode_reference, v2_encoders.size_embedding = record_encode, record_size
    try:
        yield seen
    finally:
        clip_tokens.encode_reference, v2_encoders.size_embedding = encode_reference, size_embedding
        for h in hooks:
            h.remove()


def _manipulate(case, root, reference):
    """The rows as the Manipulation node chains them, applied by Manipulate Reference; the per-group
    intermediates come from the public function that node calls."""
    from .manipulation_runner import _apply, _groups, _towers

    _, tower = _towers(Path(root), case)
    rows = ()
    for g in _groups(case):
        rows = _node("ColorizeDiffusionManipulation")(g.target, g.anchor, g.control, g.scale, g.enhance,
                                                      *g.thresholds, previous=rows)[0]
    _, seen = _apply(reference.full, rows, tower, "manip.group.")
    node_tower = manipulation.load_text_tower_file(str(Path(root) / case["clip"]))   # Load Text Tower's value
    return _node("ColorizeDiffusionManipulateReference")(reference, node_tower, rows)[0], seen


def _conditioning_tensors(positive, sketch_negative):
    context, opts = positive[0]
    conds = opts["model_conds"]
    out = {"cond.context": context}
    for k, v in enumerate(conds["colorize_diffusion_controls"].cond):
        out[f"cond.control.{k}"] = v
    for k, v in enumerate(sketch_negative[0][1]["model_conds"]["colorize_diffusion_controls"].cond):
        out[f"cond.blank_control.{k}"] = v
    if "colorize_diffusion_mask" in conds:
        out["cond.mask"] = conds["colorize_diffusion_mask"].cond
    for name in ("hs_bg", "style"):
        if f"colorize_diffusion_{name}" in conds:
            for j, v in enumerate(conds[f"colorize_diffusion_{name}"].cond):
                out[f"cond.{name}.{j}"] = v
    return out
