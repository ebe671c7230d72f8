"""scripts/gpu_check.sh in --dry-run mode: every code path of the GPU check on the CPU with the tiny golden models,
under both current-host modes (it starts its own child process per mode), and the records it writes."""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

import host_emulation

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(host_emulation.session_emulated(), reason=(
    "the GPU check runs both current-host modes in its own child processes: run once, in the pinned pass"))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    res = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out),
                          "--rounds", "1", "--max-cases", "2", "--timeout", "900"], cwd=REPO, capture_output=True, text=True, timeout=1500)
    return res, json.loads((out / "results.json").read_text()), (out / "performance-lines.md").read_text()


def test_dry_run_passes_on_both_hosts(dry_run):
    res, results, _ = dry_run
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert results["dry_run"] is True and results["device"] == "cpu"
    assert set(results["hosts"]) == {"current", "current-static"}
    for rec in results["hosts"].values():
        assert set(rec) == {"precision", "steps"} and all("error" not in r for r in rec.values())


def test_precision_records(dry_run):
    """A level-B and a level-C golden case (the GPU run takes all), fp32 within the case's tolerance; fp16 and bf16
    really ran in their precision (a non-zero, finite error against fp32, bf16's larger: 8 mantissa bits, not 11)."""
    _, results, _ = dry_run
    for host, rec in results["hosts"].items():
        p = rec["precision"]
        assert len(p["cases"]) == 2, (host, sorted(p["cases"]))
        assert {name.split("/")[-1][0] for name in p["cases"]} == {"B", "C"}
        assert all(c["fp32_matches_expected"] for c in p["cases"].values()), p["cases"]
        for case in p["cases"].values():
            assert 0 < case["float16"] < case["bfloat16"] < 1
        for name in ("float16", "bfloat16"):
            assert p["bound"][name] == max(c[name] for c in p["cases"].values())


def test_step_records(dry_run):
    """The three targets, plain UNet against the patched model, at the dry run's sizes; no VRAM figure on the CPU."""
    _, results, _ = dry_run
    sizes = {"v2_full_768": [64, 64], "xlv2_background_1024": [64, 64], "colorflow_page_1024x1600": [768, 512]}
    for rec in results["hosts"].values():
        assert set(rec["steps"]["targets"]) == set(sizes) and rec["steps"]["device"] == "cpu"
        for name, r in rec["steps"]["targets"].items():
            assert "error" not in r, r
            assert r["size"] == sizes[name]
            for side in ("plain", "patched"):
                assert len(r[side]["steps_s"]) == 1 and r[side]["step_s"] > 0
                assert r[side]["peak_vram_bytes"] is None
            assert math.isclose(r["step_ratio"], r["patched"]["step_s"] / r["plain"]["step_s"])


def test_lines_for_the_docs(dry_run):
    _, results, text = dry_run
    assert "DRY RUN" in text
    for host_words in ("dynamic VRAM on", "dynamic VRAM off"):
        rows = [line for line in text.splitlines() if line.startswith(f"| {host_words} |")]
        assert len(rows) == 2 + 3, rows                # fp16 and bf16 bounds, three step targets
    bound = results["hosts"]["current"]["precision"]["bound"]["float16"]
    assert f"{bound:.2e}" in text
