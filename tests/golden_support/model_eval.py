"""Running the patched ComfyUI model at one sigma, the way a sampler does, and reading raw outputs back.

The sampler state in ComfyUI is x = x_t·√(1+σ²); the UNet sees x·c_in = x_t. The raw outputs (ε or v) of
each pass are recorded by a diffusion-model wrapper on a clone; the guided output comes from the guider
(denoised) and is converted back to the raw parameterisation.
"""
from __future__ import annotations

import functools
import math
import re

import torch

from colorize_diffusion.model_patches.colorize_diffusion import guidance
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.model_patches.colorize_diffusion.modes import official_mode
from colorize_diffusion.model_patches.colorize_diffusion.settings import (GuidanceWindow, accurate_reference_scales,
                                                                          attention_settings,
                                                                          level_reference_scales)

CASE_MODES = {"plain": "vanilla", "bg": "background enhance", "fg": "foreground enhance",
              "fgbg": "full", "style": "style enhance", "full": "full"}


@functools.lru_cache(maxsize=None)
def loaded(path: str, prediction: str):
    return load_checkpoint(path, prediction=prediction, dtype=torch.float32)


def param(case: dict, ui_name: str, default=None):
    for p in case["parameters"]:
        if p.get("ui_name") == ui_name:
            return p["value"]
    return default


def accurate_sliders(case: dict):
    """With "Activate accurate crossattn control": (the 16 values, whether they are the app's sliders, which it
    reads shifted by one) from the block sliders `<i>.<level>.attn<j>`, or else the case's per-block scales; None
    in level mode."""
    if not param(case, "Activate accurate crossattn control", False):
        return None
    sliders = sorted((int(p["ui_name"].split(".")[0]), p) for p in case["parameters"]
                     if re.fullmatch(r"\d+\.\w+\.attn\d+", p.get("ui_name") or ""))
    if sliders:
        return [float(p["value"]) for _, p in sliders], True
    assert "reference_scale_per_block" in case, "accurate crossattn control without its block sliders"
    return [float(s) for s in case["reference_scale_per_block"]], False


def case_reference_scales(case: dict) -> tuple:
    """The blocks' reference strengths: the level sliders, or the accurate mode's block scales."""
    accurate = accurate_sliders(case)
    if accurate is not None:
        return accurate_reference_scales(*accurate)
    return level_reference_scales(param(case, "Reference strength", 1.0), param(case, "Encoder crossattn scale", 1.0),
                                  param(case, "Color crossattn scale", 1.0), param(case, "Semantics crossattn scale", 1.0))


def case_settings(case: dict, family: str, mode: str):
    scales = case_reference_scales(case)
    if "reference_scale_per_block" in case:
        want = tuple(float(s) for s in case["reference_scale_per_block"])
        assert all(abs(a - b) < 1e-9 for a, b in zip(scales, want)), f"reference scales {scales} != case {want}"
    return attention_settings(family, official_mode(mode, family), scales, param(case, "Sketch mask threshold", 0.05),
                              param(case, "Foreground strength", 1.0), param(case, "Background strength", 1.0),
                              param(case, "Merging scale", 0.0), window=case_window(case, family))


def case_window(case: dict, family: str):
    """The case's guidance window where the official app honours it (v1), None when it is the never-acting
    default or the family ignores it."""
    window = GuidanceWindow(param(case, "Guidance start step", 0.0), param(case, "Guidance end step", 1.0),
                            param(case, "No guidance start step", -0.05), param(case, "No guidance end step", -0.05))
    return window if family == "v1" and window != GuidanceWindow() else None


def listed(inputs: dict, name: str):
    keys = sorted((k for k in inputs if k.startswith(name + ".")), key=lambda k: int(k.rsplit(".", 1)[1]))
    return [inputs[k] for k in keys] if keys else None


def sigma_of(timestep_entry: dict) -> float:
    return float(timestep_entry["comfy_sigma"])


class RawRecorder:
    """DIFFUSION_MODEL wrapper that keeps each call's raw output split by cond_or_uncond."""

    def __init__(self):
        self.calls = []
        self.inputs = []      # the UNet input x_t of the first pass of each call

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        out = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        order = transformer_options["cond_or_uncond"]
        self.calls.append({i: chunk for i, chunk in zip(order, out.chunk(len(order)))})
        self.inputs.append(x.chunk(len(order))[0])
        return out


def to_raw(denoised, x, sigma: float, prediction: str):
    x = x.double()
    d = denoised.double()
    if prediction == "eps":
        return ((x - d) / sigma).float()
    return ((x / (sigma ** 2 + 1) - d) * math.sqrt(sigma ** 2 + 1) / sigma).float()


def guided_step(model, positive, negative, sketch_negative, x_t, sigmas: list, ref_scale, sketch_scale,
                prediction: str, sampler_fn=None, recorder=None):
    """Sample through ComfyUI with the ColorizeDiffusion guider; returns (recorder, per-step guided raw, x_final).

    With one sigma the sampler evaluates the model once at it; with a list it runs Euler (= DDIM, eta 0).
    """
    import comfy.patcher_extension
    import comfy.samplers

    m = model.clone()
    recorder = recorder or RawRecorder()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "golden_recorder", recorder)
    g = guidance.guider(m, positive, negative, sketch_negative, ref_scale, sketch_scale)
    guided, xs = [], []
    sig = torch.tensor(list(sigmas) + ([0.0] if len(sigmas) > 1 else []), dtype=torch.float32)
    x0 = x_t * math.sqrt(1 + float(sigmas[0]) ** 2)

    def sample(model_k, x, sigmas_k, extra_args=None, callback=None, disable=None):
        x = x0.clone()
        s_in = x.new_ones([x.shape[0]])
        steps = len(sigmas) if len(sigmas) > 1 else 1
        for i in range(steps):
            s = float(sig[i])
            denoised = model_k(x, s * s_in, **extra_args)
            # the state the model saw (a latent copy replaces part of it inside the guider)
            seen = recorder.inputs[-1].repeat(x.shape[0] // recorder.inputs[-1].shape[0], 1, 1, 1) \
                * math.sqrt(1 + s * s) if recorder.inputs else x
            guided.append(to_raw(denoised, seen, s, prediction))
            if len(sigmas) > 1:
                d = (x - denoised) / s
                x = x + d * (float(sig[i + 1]) - s)
                xs.append(x.clone())
        return x

    sampler = comfy.samplers.KSAMPLER(sample)
    noise = x_t                  # the run's initial noise (the latent copy re-noises with it; `sample` starts at x0)
    g.sample(noise, torch.zeros_like(x_t), sampler, sig, seed=0, disable_pbar=True)
    return recorder, guided, xs
