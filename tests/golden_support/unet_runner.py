"""Levels B, C and E: the loaded tiny checkpoint, the patched ComfyUI model, our conditioning and guider."""
from __future__ import annotations

import math

import torch

from colorize_diffusion.model_patches.colorize_diffusion.conditioning import guidance_conditionings

from .model_eval import CASE_MODES, case_settings, guided_step, listed, loaded, param

def _conds(case, inputs, colorizer):
    settings = case_settings(case, colorizer.family, CASE_MODES[case["mode"]])
    controls = listed(inputs, "control")
    blank = listed(inputs, "blank_control") or controls
    return guidance_conditionings(inputs["context"], settings, controls, blank, inputs.get("mask"),
                                  listed(inputs, "hs_bg"), listed(inputs, "style"))


def run(case, inputs, case_dir, root):
    ckpt = loaded(str(root / case["checkpoint"]), case["prediction_type"])
    model = _apply(ckpt)
    pos, neg, sk = _conds(case, inputs, ckpt.colorizer)
    if case["level"] == "B":
        rec, _, _ = guided_step(model, pos, neg, sk, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]], 1.0, 1.0,
                                case["prediction_type"])
        return {"out": rec.calls[0][0]}
    if case["level"] == "C":
        got = {}
        scales = zip(param(case, "Reference guidance scale"), param(case, "Sketch guidance scale"))
        for (label, spec), (gs_ref, gs_sk) in zip(case["passes"].items(), scales, strict=True):
            assert [gs_ref, gs_sk] == list(spec["gs"]), f"{label}: the guidance sliders and the pass's gs differ"
            assert spec["unet_batch"] == len(spec["passes"]) * inputs["x_t"].shape[0], f"{label}: UNet batch"
            rec, guided, _ = guided_step(model, pos, neg, sk, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]],
                                         gs_ref, gs_sk, case["prediction_type"])
            got[f"guided.{label}"] = guided[0]
            for position, name in enumerate(spec["passes"]):   # cond_or_uncond = position among active passes
                got[f"raw.{label}.{name}"] = rec.calls[0][position]
        return got
    if case["level"] == "E":
        return _run_sampling(case, inputs, model, pos, neg, sk)
    raise AssertionError(f"unet_runner cannot run level {case['level']}")


def _apply(ckpt):
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import apply_colorizer

    return apply_colorizer(ckpt.model, ckpt.colorizer)


def _run_sampling(case, inputs, model, pos, neg, sk, recorder=None):
    """Deterministic DDIM (eta 0) is Euler on ComfyUI's sigmas σ_t of the official integer timesteps."""
    ts = [e["t"] if isinstance(e, dict) else e for e in case["timesteps"]]   # F cases list {t, sigma, ...}
    alphas, final_alpha = _ddim_schedule(case, len(ts))
    sigmas = [math.sqrt((1 - alphas[t]) / alphas[t]) for t in ts]
    x_t = inputs["noise"]
    _, guided, xs = guided_step(model, pos, neg, sk, x_t, sigmas, param(case, "Reference guidance scale"),
                                param(case, "Sketch guidance scale"), case["prediction_type"], recorder=recorder)
    got = {"timesteps": torch.tensor(_timesteps_of(model, sigmas), dtype=torch.int64)}
    for i, (g, x) in enumerate(zip(guided, xs)):
        a_prev = alphas[ts[i + 1]] if i + 1 < len(ts) else final_alpha
        got[f"step.{i}.guided"] = g
        got[f"step.{i}.x_out"] = (x.double() * math.sqrt(a_prev)).float()   # back to DDPM space
    got["final"] = got[f"step.{len(ts) - 1}.x_out"]
    return got


def _ddim_schedule(case, steps: int):
    """ᾱ_t of the case's DDIM scheduler and the ᾱ after the last step. The runner is deterministic DDIM (eta 0) on
    the case's listed timesteps; any other scheduler setting is refused rather than ignored."""
    assert param(case, "Sampler", "diffuser_ddim") == "diffuser_ddim", "DDIM cases only"
    assert param(case, "Step", steps) == steps, f"Step {param(case, 'Step')} but {steps} timesteps listed"
    if "scheduler_config" not in case:          # the format's default: the official training schedule
        return _alphas_cumprod(0.00085, 0.012, 1000), 1.0
    cfg = case["scheduler_config"]
    assert case["scheduler"] == "DDIMScheduler", "DDIM cases only"
    assert float(case["ddim_eta"]) == 0.0, "the runner is deterministic DDIM (eta 0)"
    assert cfg["beta_schedule"] == "scaled_linear" and cfg["trained_betas"] is None
    assert not cfg["clip_sample"] and not cfg["thresholding"] and not cfg["rescale_betas_zero_snr"]
    want = {"v": "v_prediction", "eps": "epsilon"}[case["prediction_type"]]
    assert cfg["prediction_type"] == want, f"scheduler predicts {cfg['prediction_type']}, the case {want}"
    alphas = _alphas_cumprod(cfg["beta_start"], cfg["beta_end"], cfg["num_train_timesteps"])
    return alphas, 1.0 if cfg["set_alpha_to_one"] else alphas[0]


def _alphas_cumprod(beta_start: float, beta_end: float, steps: int):
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).tolist()


def _timesteps_of(model, sigmas):
    ms = model.get_model_object("model_sampling")
    return [int(round(float(ms.timestep(torch.tensor(s))))) for s in sigmas]
