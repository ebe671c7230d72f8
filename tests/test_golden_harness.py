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


def test_mask_sliders_are_excused_only_when_no_mask_guided_mode_is_on():
    off = {"parameters": [{"ui_name": "Low-level injection", "value": False},
                          {"ui_name": "Sketch mask threshold", "value": 0.05}]}
    on = copy.deepcopy(off)
    on["parameters"][0]["value"] = True
    assert "parameters[Sketch mask threshold]" in consumed.declared_for("golden_support.xl_runner", off)
    assert "parameters[Sketch mask threshold]" not in consumed.declared_for("golden_support.xl_runner", on)
    recorded, log = consumed.recording(on)
    param(recorded, "Low-level injection")
    assert consumed.unread(on, log, consumed.declared_for("golden_support.xl_runner", on)) == [
        "parameters[Sketch mask threshold].value"]


def test_a_runner_without_declarations_is_still_checked():
    case = {"parameters": [], "resolution": "640x640"}
    recorded, log = consumed.recording(case)
    assert consumed.unread(case, log, consumed.declared_for("golden_support.new_runner", case)) == ["resolution"]


def test_decolorize_target_comes_from_the_working_resolution():
    import pytest

    from golden_support.decolorize_runner import _target

    assert _target({"resolution": None, "custom_resolution": [64, 100], "target_wh": [96, 150]}) == (96, 150)
    assert _target({"resolution": "512x800", "custom_resolution": None, "target_wh": [768, 1200]}) == (768, 1200)
    with pytest.raises(AssertionError):
        _target({"resolution": None, "custom_resolution": [64, 100], "target_wh": [96, 96]})
