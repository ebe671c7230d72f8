"""Checks of a ColorFlow colorizer case's records against the pack: the run it was cut from (`variant`) and the
official scheduler of a sampling case."""
from __future__ import annotations

import torch

# what this runner's samplers implement, per official scheduler class: a case asking for anything else fails
SOLVERS = {
    "DPMSolverMultistepScheduler": {      # ComfyUI's dpmpp_2m
        "solver_order": 2, "prediction_type": "epsilon", "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
        "lower_order_final": True, "euler_at_final": False, "use_lu_lambdas": False, "lambda_min_clipped": None,
        "variance_type": None},
    "UniPCMultistepScheduler": {          # the pack's sample_unipc (bh2, corrector on every step but the last)
        "solver_order": 2, "prediction_type": "epsilon", "predict_x0": True, "solver_type": "bh2",
        "lower_order_final": True, "disable_corrector": [], "solver_p": None, "clip_sample": False},
}
COMMON = {"thresholding": False, "use_karras_sigmas": False, "use_exponential_sigmas": False, "trained_betas": None,
          "final_sigmas_type": "zero", "rescale_betas_zero_snr": False}
SAMPLE_FAMILY = {"DPMSolverMultistepScheduler": "pixart", "UniPCMultistepScheduler": "sd15"}


def check_scheduler(case: dict) -> None:
    """The case's scheduler is one the runner's samplers implement, and its noise levels (from the case's betas) are
    the pack's official sigmas at the case's timesteps."""
    from colorize_diffusion.model_patches.colorflow import sampling as colorflow_sampling

    kind, config = case["scheduler_class"], case["scheduler_config"]
    assert kind in SOLVERS and SAMPLE_FAMILY[kind] == case["family"], f"{kind} for a {case['family']} case"
    for key, want in {**COMMON, **SOLVERS[kind]}.items():
        if key in config:
            assert config[key] == want, f"scheduler_config.{key} = {config[key]!r}: this runner implements {want!r}"
    n = int(config["num_train_timesteps"])
    start, end = float(config["beta_start"]), float(config["beta_end"])
    if config["beta_schedule"] == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float32)
    else:
        assert config["beta_schedule"] == "scaled_linear", config["beta_schedule"]
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float32) ** 2
    alphas = torch.cumprod(1.0 - betas, dim=0)
    want = ((1 - alphas) / alphas) ** 0.5
    got = colorflow_sampling.official_sigmas(case["family"], int(case["num_inference_steps"]))[:-1]
    assert torch.allclose(got, want[case["timesteps"]], rtol=1e-6, atol=0), (got, want[case["timesteps"]])


def check_variant(case: dict, inputs: dict) -> None:
    """The run this case was cut from (`variant`) agrees with the case's own values and input sizes: guidance and
    steps, the working size W x H (canvas 2W x 2H, latents a 16th of it; the super-resolution's pictures W x H), and
    the ColorFlow LoRA (the app always merges it)."""
    v = case.get("variant")
    if not v:
        return
    if "guidance_scale" in case:
        assert float(v["guidance"]) == float(case["guidance_scale"]), v
    if "num_inference_steps" in case:
        assert int(v["steps"]) == int(case["num_inference_steps"]), v
    if "lora_case" in v:
        assert v["lora_case"] is True, "a case without the ColorFlow LoRA: the app always merges it"
    height, width = int(v["H"]), int(v["W"])
    sized = {"canvas_hwc": (2 * height, 2 * width), "test_low_color": (height, width)}
    for key, hw in sized.items():
        if key in inputs:
            shape = inputs[key].shape
            assert tuple(shape[:2] if key.endswith("_hwc") else shape[-2:]) == hw, (key, tuple(shape), hw)
    for key in ("sample", "latent_model_input", "initial_latents"):
        if key in inputs:
            assert tuple(inputs[key].shape[-2:]) == (2 * height // 8, 2 * width // 8), (key, inputs[key].shape)
