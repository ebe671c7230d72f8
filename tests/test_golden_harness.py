"""The golden harness reads every field a case defines: the recorder names the fields a runner ignored, and an
option the public cases leave at its default (accurate crossattn control) still changes what the runner computes."""
from __future__ import annotations

import copy
import json

import torch

from golden_support import consumed
from golden_support.compare import check_model_case
from golden_support.model_eval import case_reference_scales, param
from shared_data import GOLDEN

B_CASE = GOLDEN / "cases" / "B_v2_strength_16x24"


def _case(path):
    from safetensors.torch import load_file

    return (json.loads((path / "case.json").read_text()), load_file(str(path / "inputs.safetensors")),
            load_file(str(path / "expected.safetensors")))


def test_the_recorder_names_what_a_runner_never_read():
    case = {"name": "x", "tolerance": {"rtol_rms": 1e-3, "how_chosen": "prose"}, "timesteps": [1, 2],
            "parameters": [{"ui_name": "Reference strength", "value": 0.5},
                           {"ui_name": "Merging scale", "value": 0.2},
                           {"ui_name": None, "internal_name": "attn2.scale (all blocks)", "value": 1.0}],
            "inputs": {"x": {"shape": [1], "dtype": "float32", "doc": "prose"}}}
    recorded, log = consumed.recording(case)
    assert param(recorded, "Reference strength") == 0.5      # looking the others up by name is not reading them
    assert recorded["tolerance"]["rtol_rms"] == 1e-3
    unread = consumed.unread(case, log, {"parameters[attn2.scale (all blocks)]": "derived"})
    assert unread == ["timesteps", "parameters[Merging scale].value"]
    recorded["timesteps"]
    param(recorded, "Merging scale")
    assert consumed.unread(case, log, {"parameters[attn2.scale (all blocks)]": "derived"}) == []


def test_accurate_crossattn_control_is_read_as_the_app_reads_it():
    case, _, _ = _case(B_CASE)
    assert param(case, "Activate accurate crossattn control") is False      # the public cases leave it off
    level = case_reference_scales(case)
    accurate = copy.deepcopy(case)
    for p in accurate["parameters"]:
        if p.get("ui_name") == "Activate accurate crossattn control":
            p["value"] = True
    sliders = [0.05 * (i + 1) for i in range(16)]
    accurate["parameters"] += [{"ui_name": f"{i}.block.attn{i % 3}", "value": v} for i, v in enumerate(sliders)]
    scales = case_reference_scales(accurate)
    assert scales != level
    assert scales == pytest_approx(sliders[1:] + [1.0])        # the app's shifted reading (block i <- slider i+1)


def pytest_approx(values):
    import pytest

    return tuple(pytest.approx(v) for v in values)


def test_the_unet_runner_honours_accurate_mode():
    """Turning accurate mode on with other block scales moves the output past the case's tolerance; with the scales
    the level sliders give, it stays within it."""
    from golden_support import unet_runner

    case, inputs, expected = _case(B_CASE)
    level = list(case_reference_scales(case))

    def run(scales):
        c = copy.deepcopy(case)
        for p in c["parameters"]:
            if p.get("ui_name") == "Activate accurate crossattn control":
                p["value"] = True
        c["reference_scale_per_block"] = scales
        return unet_runner.run(c, dict(inputs), B_CASE, GOLDEN)

    check_model_case(case, run(level), expected)
    changed = run([0.0] * 16)
    err = (changed["out"] - expected["out"]).abs().max() / expected["out"].pow(2).mean().sqrt()
    assert err > 10 * float(case["tolerance"]["rtol_rms"]), float(err)
    assert not torch.equal(changed["out"], expected["out"])
