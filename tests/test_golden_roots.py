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
