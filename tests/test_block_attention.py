"""Accurate crossattn control: 16 per-block reference strengths, official slider shift by default."""
from __future__ import annotations

import dataclasses

import pytest

import golden_support.unet_runner as unet_runner
from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_patches.colorize_diffusion.conditioning import guidance_conditionings
from colorize_diffusion.model_patches.colorize_diffusion.settings import accurate_reference_scales
from conftest import GOLDEN
from golden_support.compare import check_model_case
from golden_support.discovery import discover_cases
from golden_support.model_eval import CASE_MODES, case_settings, guided_step, listed, loaded



def test_official_shift_and_own_block_mapping():
    sliders = [0.1 * i for i in range(16)]
    assert accurate_reference_scales(sliders) == tuple(sliders[1:]) + (1.0,)   # slider 0 unused, block 15 stays 1
    assert accurate_reference_scales(sliders, official_shift=False) == tuple(sliders)
    with pytest.raises(ColorizerInputError, match="16 block scales"):
        accurate_reference_scales(sliders[:15])


def test_block_scales_through_the_patched_unet_match_the_official_numbers():
    """The per-level case B_v2_strength expressed with the 16 sliders (shifted as the app reads them) gives the
    official output."""
    golden = next(c for c in discover_cases() if c.name == "B_v2_strength_16x24")
    case, inputs, expected = golden.load()
    levels = case["reference_scale_per_block"]
    assert levels[15] == 1.0
    scales = accurate_reference_scales([0.77] + list(levels[:15]))
    ckpt = loaded(str(GOLDEN / case["checkpoint"]), case["prediction_type"])
    level_settings = case_settings(case, "v2", CASE_MODES[case["mode"]])
    assert level_settings.reference_scales == tuple(levels)
    settings = dataclasses.replace(level_settings, reference_scales=scales)
    controls = listed(inputs, "control")
    conds = guidance_conditionings(inputs["context"], settings, controls, listed(inputs, "blank_control") or controls,
                                   inputs.get("mask"), listed(inputs, "hs_bg"), listed(inputs, "style"))
    model = unet_runner._apply(ckpt)
    rec, _, _ = guided_step(model, *conds, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]], 1.0, 1.0, "v")
    check_model_case(case, {"out": rec.calls[0][0]}, expected)
