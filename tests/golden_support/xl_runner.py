"""ColorizeDiffusion XL cases (a golden root laid out like ../shared/golden_xl): encoders (A), one UNet forward (B),
dual guidance (C), DDIM sampling (E) and attention injection (F, the SD2.1 injection runner on the XL model, conditions
and sampler) through the pack's loader, networks, conditioning, patched ComfyUI model and guider. Which part runs is
decided by the case's fields and input keys."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import torch

from colorize_diffusion.model_patches.colorize_diffusion import xl_conditioning as xl
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import HeadSizes, load_checkpoint
from colorize_diffusion.model_patches.colorize_diffusion.conditioning import guidance_conditionings
from colorize_diffusion.model_patches.colorize_diffusion.modes import official_mode
from colorize_diffusion.model_patches.colorize_diffusion.settings import attention_settings
from colorize_diffusion.model_patches.colorize_diffusion.split_attention import BANK_THRESHOLD
from colorize_diffusion.model_patches.colorize_diffusion.step_data import Banks

from .model_eval import CASE_MODES, guided_step, listed, param


def head_sizes(root: Path, checkpoint: str) -> HeadSizes:
    """Head sizes of a reduced checkpoint from the root's `models/tiny-configs.json` (the effective official configs,
    read by the loader's own config reader); the released values when the root has none."""
    path = Path(root) / "models" / "tiny-configs.json"
    if not path.is_file():
        return HeadSizes()
    entry = json.loads(path.read_text()).get(Path(checkpoint).name, {})
    return HeadSizes.from_config(entry.get("effective_config", {}))


@functools.lru_cache(maxsize=None)
def loaded(path: str, prediction: str, heads: HeadSizes):
    return load_checkpoint(path, prediction=prediction, dtype=torch.float32, heads=heads)


def checkpoint_of(case: dict, root: Path):
    return loaded(str(Path(root) / case["checkpoint"]), case["prediction_type"], head_sizes(root, case["checkpoint"]))


def level_strengths(case: dict) -> list:
    for p in case["parameters"]:
        if (p.get("ui_name") or "").startswith("Sketch strength 1..4"):
            return [float(v) for v in p["value"]]
    return [1.0] * 4


def check_level_mode(case: dict) -> None:
    """XL cases are in level mode: the official XL app crashes with accurate crossattn control (reference-app
    §1.11), so a case with it on cannot come from the app."""
    assert not param(case, "Activate accurate crossattn control", False), "accurate mode: the XL app crashes there"


def case_settings(case: dict, family: str):
    check_level_mode(case)
    scales = xl.reference_scales(family, param(case, "Reference strength", 1.0), param(case, "Encoder crossattn scale", 1.0),
                                 param(case, "Semantics crossattn scale", 1.0))
    if "reference_scale_per_block" in case:
        want = tuple(float(s) for s in case["reference_scale_per_block"])
        assert all(abs(a - b) < 1e-9 for a, b in zip(scales, want)), f"reference scales {scales} != case {want}"
    mode = official_mode(CASE_MODES[case["mode"]], family)
    settings = attention_settings(family, mode, scales, param(case, "Sketch mask threshold", 0.05),
                                  param(case, "Foreground strength", 1.0), param(case, "Background strength", 1.0),
                                  param(case, "Merging scale", 0.0))
    check_derived(case, settings)
    return settings


def check_derived(case: dict, settings) -> None:
    """The per-block values the case records as the app derived them agree with the settings built from the sliders:
    attn2 `[fg, bg, merge, threshold]` (the strengths only where the split attention uses them) and the xlv2 bank
    reader's (decoder attn1 keeps its defaults whatever the sliders: the pack's fixed bank threshold, no merging)."""
    for p in case["parameters"]:
        name = p.get("internal_name") or ""
        if name.startswith("attn2.fg_scale / bg_scale / merge_scale / mask_threshold"):
            fg, bg, merge, threshold = (float(v) for v in p["value"])
            assert abs(threshold - settings.threshold) < 1e-9 and abs(merge - settings.merge_scale) < 1e-9, name
            if settings.split and settings.merge_scale:
                assert (fg, bg) == (settings.foreground_strength, settings.background_strength), name
        elif name.startswith("decoder attn1 (bank reader) mask_threshold"):      # merge 0: a hard split
            assert abs(float(p["value"][0]) - BANK_THRESHOLD) < 1e-9 and float(p["value"][1]) == 0.0, name


# ---------------------------------------------------------------------------------------------------- level A
def _clip(case, inputs, root):
    from colorize_diffusion.model_patches.common import clip_tokens
    from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

    cv = load_vision_file(str(Path(root) / case["clip"]))
    image = inputs["image"]
    return {"full": clip_tokens.encode_reference(cv, image, token_type="full"),
            "preprocessed_224": clip_tokens.preprocess(image, 224)}


def _tagger(case, inputs, root):
    from colorize_diffusion.model_patches.colorize_diffusion.tagger import load_tagger

    tagger = load_tagger(str(Path(root) / case["tagger"])).model
    tokens, logits = tagger.tokens(inputs["image"], logits=True)
    return {"tokens": tokens, "logits": logits,
            "preprocessed_448_bgr_mean": tagger.preprocess(inputs["image"]).mean(dim=(2, 3))}


def _encoders(case, inputs, root):
    enc = checkpoint_of(case, root).colorizer.encoders
    if "clip_full" in inputs:
        emb = enc.reference_projection(inputs["clip_full"], inputs["wd_tokens"])
        return {"emb": emb, "emb_fgbg": torch.cat(emb.chunk(2), 1)}   # the official batch fold (fgbg=True)
    if "sketch" in inputs:
        cond, blank = enc.sketch_encoder.encode_with_blank(inputs["sketch"])
        s = level_strengths(case)
        out = {f"control.{k}": t * s[k] for k, t in enumerate(cond)}
        out.update({f"blank_control.{k}": t * s[k] for k, t in enumerate(blank)})
        return out
    if "z_bg" in inputs:
        height, width = int(param(case, "Height")), int(param(case, "Width"))
        rmask = inputs["reference_mask"]
        bg_h, bg_w = (int(v) for v in case["background_source_pixel_size_hw"])   # the picture the latent came from
        crop = xl.crop_scale(height, width, bg_h, bg_w)
        assert all(abs(float(a) - float(b)) < 1e-6 for a, b in zip(crop, case["crop_scale_ch_cw"])), crop
        assert float(case["timestep"]) == 0.0, "the xlv2 ReferenceNet runs once at t = 0 (official)"
        bgy = xl.background_vector(height, width, bg_h, bg_w)
        x = xl.reference_net_input(inputs["z_bg"], inputs["sketch_mask"], rmask, (height, width))
        banks = enc.reference_net.banks(x, bgy)
        out = {"bgy": bgy, "bg_encoder_input": x}
        out.update({f"bank.{k}": b for k, b in enumerate(banks)})
        return out
    raise AssertionError(f"no XL encoder for inputs {sorted(inputs)}")


def platform_atol(case: dict) -> dict:
    """The `y` vectors are sinusoids of √(H·W) ≈ 10³ computed in float32 (the official code keeps this island in
    float32 in its fp64 reference too, so the case's tolerance has no room for it). A float32 argument that large is
    only known to within one unit in the last place of the argument, and the recording machine's vectorised
    exp/cos/sin (CPU-dependent) land a unit away from this machine's on a few frequencies: up to 2·ulp(arg) apart.
    Any structural mistake (order, score, size, frequencies) is orders of magnitude above that bound."""
    if case["level"] != "A" or case.get("checkpoint") or case.get("clip") or case.get("tagger"):
        return {}
    bounds = {}
    for key, size in _vector_sizes(case).items():
        if key.startswith("y."):
            arg = math.sqrt(size[0] * size[1])
            bounds[key] = 2 * float(np.spacing(np.float32(arg)))      # two float32 units of the argument
    return bounds


def _vectors(case):
    out = {}
    for key, size in _vector_sizes(case).items():
        out[key] = xl.size_vector(*size) if key.startswith("y.") else xl.background_vector(*size)
    return out


def _vector_sizes(case) -> dict:
    ys, bgys = case["sizes_hw"], case["crops_H_W_bgh_bgw"]
    sizes = {f"y.{i}": tuple(v) for i, v in enumerate(ys)}
    sizes.update({f"bgy.{i}": tuple(v) for i, v in enumerate(bgys)})
    return sizes


# ---------------------------------------------------------------------------------------------- levels B C E F
def _conds(case, inputs, colorizer):
    settings = case_settings(case, colorizer.family)
    controls = listed(inputs, "control")
    blank = listed(inputs, "blank_control") or controls
    banks = listed(inputs, "bank")
    return guidance_conditionings(inputs["context"], settings, controls, blank, inputs.get("mask"),
                                  y=inputs["y"], banks=Banks(banks) if banks else None)


def _unet(case, inputs, root):
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import apply_colorizer

    ckpt = checkpoint_of(case, root)
    model = apply_colorizer(ckpt.model, ckpt.colorizer)
    pos, neg, sk = _conds(case, inputs, ckpt.colorizer)
    if case["level"] == "F":
        from . import injection_runner
        return injection_runner.run_injected(case, inputs, ckpt, model, (pos, neg, sk), _sampling)
    sigma = [case["timesteps"][0]["comfy_sigma"]] if case["level"] in ("B", "C") else None
    if case["level"] == "B":
        rec, _, _ = guided_step(model, pos, neg, sk, inputs["x_t"], sigma, 1.0, 1.0, case["prediction_type"])
        return {"out": rec.calls[0][0]}
    if case["level"] == "C":
        got = {}
        scales = zip(param(case, "Reference guidance scale"), param(case, "Sketch guidance scale"))
        for (label, spec), gs in zip(case["passes"].items(), scales, strict=True):
            assert list(gs) == list(spec["gs"]), f"{label}: the guidance sliders and the pass's gs differ"
            rec, guided, _ = guided_step(model, pos, neg, sk, inputs["x_t"], sigma, *gs, case["prediction_type"])
            got[f"guided.{label}"] = guided[0]
            for position, name in enumerate(spec["passes"]):
                got[f"raw.{label}.{name}"] = rec.calls[0][position]
        return got
    return _sampling(case, inputs, model, pos, neg, sk)


def _sampling(case, inputs, model, pos, neg, sk, recorder=None):
    from .unet_runner import _ddim_schedule, _timesteps_of

    ts = [int(t) for t in case["timesteps"]] if not isinstance(case["timesteps"][0], dict) else \
        [int(e["t"]) for e in case["timesteps"]]
    alphas, final_alpha = _ddim_schedule(case, len(ts))
    sigmas = [math.sqrt((1 - alphas[t]) / alphas[t]) for t in ts]
    copy = param(case, "Latent copy BG input", False)
    assert copy == ("inpaint_bg" in inputs), "Latent copy BG input and the case's inpaint_bg input disagree"
    if copy:                        # Latent copy BG input (sdxl: threshold 0.5; xlv2: Sketch mask threshold)
        from colorize_diffusion.model_patches.colorize_diffusion.latent_copy import LATENT_COPY_KEY, LatentCopy

        threshold = 0.5 if case["family"] == "sdxl" else param(case, "Sketch mask threshold", 0.05)
        pos[0][1][LATENT_COPY_KEY] = LatentCopy(inputs["inpaint_bg"], inputs["mask"], threshold)
    rec, guided, xs = guided_step(model, pos, neg, sk, inputs["noise"], sigmas, param(case, "Reference guidance scale"),
                                  param(case, "Sketch guidance scale"), case["prediction_type"], recorder=recorder)
    got = {"timesteps": torch.tensor(_timesteps_of(model, sigmas), dtype=torch.int64)}
    for i, (g, x) in enumerate(zip(guided, xs)):
        a_prev = alphas[ts[i + 1]] if i + 1 < len(ts) else final_alpha
        got[f"step.{i}.guided"] = g
        got[f"step.{i}.x_in"] = rec.inputs[i]
        if copy:
            # The sampler keeps its own value in the copied region, which the next call replaces; the official
            # scheduler output is the DDIM step from the latent the model saw (checked as x_in) and its output.
            got[f"step.{i}.x_out"] = _ddim_step(rec.inputs[i], g, alphas[ts[i]], a_prev)
        else:
            got[f"step.{i}.x_out"] = (x.double() * math.sqrt(a_prev)).float()
    got["final"] = got[f"step.{len(ts) - 1}.x_out"]
    return got


def _ddim_step(x_t, v, a_t, a_prev):
    """DDIM (eta 0) for v-prediction, DDPM space, float64."""
    x_t, v = x_t.double(), v.double()
    x0 = math.sqrt(a_t) * x_t - math.sqrt(1 - a_t) * v
    eps = math.sqrt(1 - a_t) * x_t + math.sqrt(a_t) * v
    return (math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps).float()


def run(case: dict, inputs: dict, case_dir: Path, root: Path) -> dict:
    with torch.no_grad():
        if case["level"] == "A":
            if case.get("clip") and "image" in inputs and not case.get("checkpoint"):
                return _clip(case, inputs, root)
            if case.get("tagger") and "image" in inputs:
                return _tagger(case, inputs, root)
            if not inputs:
                return _vectors(case)
            return _encoders(case, inputs, root)
        if case["level"] in ("B", "C", "E", "F"):
            return _unet(case, inputs, root)
        if case["level"] == "D":
            from . import xl_pipeline_runner
            return xl_pipeline_runner.run(case, inputs, case_dir, root)
    raise AssertionError(f"no XL runner for level {case['level']}")
