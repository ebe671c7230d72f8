"""Numerical parity with the official implementation, one test per golden case folder.

Cases come from ../shared/golden and every root in COLORIZEDIFFUSION_GOLDEN_DIRS; each is run through
the pack's own code (loader, nodes, patched ComfyUI model) by the runner its format calls for.
"""
from __future__ import annotations

import pytest

from golden_support import consumed, decolorize_runner
from golden_support.compare import check_model_case, check_preprocess_case
from golden_support.discovery import discover_cases

CASES = discover_cases()


def _model_runner(case: dict, inputs: dict):
    level = case["level"]
    from golden_support import colorflow_runner
    if colorflow_runner.is_colorflow_case(case):        # ColorFlow's colorizers and super-resolution
        return colorflow_runner.run
    if "tagger" in case:                   # the XL case format (CLIP bigG + WD tagger encoders)
        from golden_support import xl_runner
        return xl_runner.run
    if level == "A":
        if case["family"] == "clip":
            from golden_support import clip_runner
            return clip_runner.run
        if {"sketch"} & inputs.keys() or {"z"} & inputs.keys() or {"tokens"} & inputs.keys():
            from golden_support import encoder_runner
            return encoder_runner.run
    if level in ("B", "C", "E"):
        from golden_support import unet_runner
        return unet_runner.run
    if level == "D" or (level == "G" and case["family"] != "clip"):      # G3: level D with manipulation
        from golden_support import pipeline_runner
        return pipeline_runner.run
    if level == "F":
        from golden_support import injection_runner
        return injection_runner.run
    if level == "G" and case["family"] == "clip":
        from golden_support import manipulation_runner
        return manipulation_runner.run
    raise AssertionError(f"no runner for a level-{level} case with inputs {sorted(inputs)}")


@pytest.mark.parametrize("golden", CASES, ids=[c.test_id for c in CASES])
def test_golden_case(golden):
    raw, inputs, expected = golden.load()
    case, read = consumed.recording(raw)          # every field the runner reads is noted
    runner = None
    if golden.preprocess:
        from golden_support import preprocess_runner
        runner = preprocess_runner
        got = preprocess_runner.run(case, inputs, golden.case_dir, golden.base)
        report = check_preprocess_case(case, got, expected, inputs)
        print(f"\n{golden.test_id}: max abs error per key " +
              ", ".join(f"{k}={v:.2e}" for k, v in report.items()))
    elif decolorize_runner.is_decolorize_case(case):      # ColorFlow's decolorize step
        runner = decolorize_runner
        got = decolorize_runner.run(case, inputs, golden.case_dir, golden.base)
        report = decolorize_runner.check(case, got, expected)
        print(f"\n{golden.test_id}: per key (floats max|R-E|/rms(E), pictures max abs) " +
              ", ".join(f"{k}={v:.2e}" for k, v in report.items()))
    elif "canvas.sha256" in case.get("expected", {}):      # the retrieval format: pictures by digest
        from golden_support import rap_runner
        runner = rap_runner
        got = rap_runner.run(case, inputs, golden.case_dir, golden.base)
        report = rap_runner.check(case, got, expected)
        print(f"\n{golden.test_id}: exact pictures, canvas and mask; embeddings/cosine max|R-E|/rms(E) = "
              f"{max(report.values()):.2e}")
    else:
        run = _model_runner(case, inputs)
        runner = __import__(run.__module__, fromlist=["_"])
        got = run(case, inputs, golden.case_dir, golden.base)
        widened = getattr(runner, "platform_atol", lambda c: {})(case)
        report = check_model_case(case, got, expected, widened)
        worst = max(report.values()) if report else 0.0
        print(f"\n{golden.test_id}: max|R-E|/rms(E) = {worst:.2e} (tolerance {case['tolerance']['rtol_rms']})")
    declared = consumed.declared_for(runner.__name__, raw)       # golden_support/consumed.py
    ignored = consumed.unread(raw, read, declared)
    assert not ignored, (f"{golden.test_id}: the runner ({runner.__name__}) never read {ignored}; honour them, "
                         "or declare them irrelevant with the reason in golden_support/consumed.py")


def test_cases_found():
    assert any(not c.preprocess for c in CASES), "no model golden cases found"
    assert any(c.preprocess for c in CASES), "no preprocess golden cases found"
