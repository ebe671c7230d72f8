"""A case folder in the golden format, placed anywhere and named in COLORIZEDIFFUSION_GOLDEN_DIRS, is found and run."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from golden_support import discovery
from golden_support.compare import check_model_case
from golden_support.unet_runner import run
from conftest import GOLDEN


def test_extra_golden_root_is_discovered_and_runs(tmp_path, monkeypatch):
    root = tmp_path / "my_golden"
    case_dir = root / "cases" / "my_case"
    shutil.copytree(GOLDEN / "cases" / "B_v1_plain_b2_16x24", case_dir)
    (root / "models").mkdir()
    os.symlink(GOLDEN / "models" / "mult-eps-tiny.safetensors", root / "models" / "mult-eps-tiny.safetensors")
    case = json.loads((case_dir / "case.json").read_text())
    assert case["checkpoint"] == "models/mult-eps-tiny.safetensors"   # relative to the root, as in shared/golden

    monkeypatch.setenv(discovery.ENV_VAR, os.pathsep.join([str(root), str(tmp_path / "absent_is_an_error")]))
    with pytest.raises(FileNotFoundError, match="absent_is_an_error"):   # a missing root is reported
        discovery.discover_cases()

    monkeypatch.setenv(discovery.ENV_VAR, str(root))
    found = [c for c in discovery.discover_cases() if c.case_dir == case_dir]
    assert len(found) == 1 and found[0].base == root and "my_case" in found[0].test_id
    case, inputs, expected = found[0].load()
    report = check_model_case(case, run(case, inputs, found[0].case_dir, found[0].base), expected)  # raises
    assert set(report) == set(expected)                   # every expected tensor of the case was compared


def test_extra_decolorize_root_runs_and_every_parameter_counts(tmp_path, monkeypatch):
    """A decolorize root (README layout: models/ in the released snapshot layout, cases/) named in the variable runs;
    the case's seeds, masks and target size are what the run uses (changing any of them breaks the parity)."""
    from golden_support import decolorize_runner
    from shared_data import GOLDEN_COLORFLOW_DECOLORIZE as SOURCE

    root = tmp_path / "my_decolorize"
    shutil.copytree(SOURCE / "cases" / "screen_96x96_grey", root / "cases" / "my_screen")
    os.symlink(SOURCE / "models", root / "models")
    monkeypatch.setenv(discovery.ENV_VAR, str(root))
    (found,) = [c for c in discovery.discover_cases() if c.base == root]
    case, inputs, expected = found.load()
    assert decolorize_runner.is_decolorize_case(case)
    report = decolorize_runner.check(case, decolorize_runner.run(case, inputs, found.case_dir, root), expected)
    assert {"fake_M2", "blend_u8", "A.sha256"} <= set(report)

    def fails(edit):
        changed = json.loads(json.dumps(case))
        edit(changed)
        with pytest.raises((AssertionError, ValueError)):
            decolorize_runner.check(changed, decolorize_runner.run(changed, inputs, found.case_dir, root), expected)

    fails(lambda c: c["noise"]["draws"][2].update(seed=c["noise"]["draws"][2]["seed"] + 1))
    fails(lambda c: c["dropout"]["draws"].reverse())         # the masks in the other order: refused by shape
    fails(lambda c: c.update(target_wh=[96, 112]))
