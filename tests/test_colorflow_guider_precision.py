"""The SD1.5 ColorGuider's residuals at the official code's precision: the timestep reaches the embedding in float32
whatever the guider's dtype, and at every canvas size (the case's, and sizes that are not multiples of 64) the
float32 residuals stay as close to a float64 run as the official float32 run was to its float64 run."""
from __future__ import annotations

import json
import types

import pytest
import torch

from golden_support import colorflow_runner
from shared_data import GOLDEN_COLORFLOW

CASE = GOLDEN_COLORFLOW / "cases" / "A_sd_guider_64x64_s3_g7.5"
SD15_LAYOUT = [(0, None, None)] * 9 + [(0, 1, 1)] * 3      # 12 output blocks, 3 of them with an upsampler


@pytest.fixture(scope="module")
def guider():
    return colorflow_runner.guider(GOLDEN_COLORFLOW, "sd15", json.loads((CASE / "case.json").read_text()))


def _inputs():
    from safetensors.torch import load_file

    return load_file(str(CASE / "inputs.safetensors"))


def test_the_timestep_reaches_the_guider_in_float32_whatever_its_dtype(guider):
    from colorize_diffusion.model_patches.colorflow.sd15 import GuiderPatch

    low = guider.__class__.__new__(guider.__class__)
    low.__dict__.update(guider.__dict__)
    low = torch.nn.Module.to(low, torch.bfloat16)
    seen = []
    original = low.forward
    low.forward = lambda sample, t, cond, scale=1.0: seen.append(t) or original(sample, t, cond, scale)
    patch = GuiderPatch(types.SimpleNamespace(model=low), SD15_LAYOUT, 12)
    inputs = _inputs()
    t = torch.tensor([751.0, 751.0])                 # bf16 holds 752 here, not 751
    res = patch.guider_residuals(inputs["sample"], t, inputs["colorguider_cond"], 1.0)
    assert seen[0].dtype == torch.float32 and torch.equal(seen[0], t)
    assert res.mid.dtype == torch.bfloat16


@pytest.mark.parametrize("latent_hw", [(8, 8), (9, 13), (13, 9), (10, 6)])
def test_float32_residuals_at_the_official_precision_at_every_size(guider, latent_hw):
    case = json.loads((CASE / "case.json").read_text())
    official = case["tolerance"]["per_key_fp32_vs_fp64"]
    worst_official = max(official.values())
    inputs = _inputs()
    g = torch.Generator().manual_seed(sum(latent_hw))
    sample = torch.randn(2, 4, *latent_hw, generator=g)
    cond = torch.cat([torch.randn(2, 4, *latent_hw, generator=g), torch.rand(2, 1, *latent_hw, generator=g)], 1)
    if latent_hw == (8, 8):
        sample, cond = inputs["sample"], inputs["colorguider_cond"]
    runs = {}
    for dtype in (torch.float32, torch.float64):
        net = guider.to(dtype)
        with torch.no_grad():
            down, mid, up = net(sample.to(dtype), inputs["timestep"], cond.to(dtype), 1.0)
        runs[dtype] = {**{f"down.{i}": t for i, t in enumerate(down)}, "mid": mid,
                       **{f"up.{i}": t for i, t in enumerate(up)}}
    guider.float()
    assert runs[torch.float32].keys() == official.keys()
    for key, r64 in runs[torch.float64].items():
        err = float((runs[torch.float32][key].double() - r64).abs().max() / r64.pow(2).mean().sqrt())
        # the official float32 run's own distance to float64, at this key (x2 headroom), or its worst key
        bound = 2 * (official[key] if latent_hw == (8, 8) else worst_official)
        assert err <= bound, f"{key} at latent {latent_hw}: {err:.2e} > {bound:.2e}"
