"""Where the tests' data lives: the project's shared folder beside this checkout (``../shared``), or the folder
named in COLORIZEDIFFUSION_SHARED.

Every folder the suite reads is listed in REQUIRED. conftest.py stops the run with one line naming what is missing
before any test runs, so no test is skipped in silence because its data is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "COLORIZEDIFFUSION_SHARED"
SHARED = Path(os.environ.get(ENV_VAR) or REPO.parent / "shared").resolve()

GOLDEN = SHARED / "golden"                        # SD2.1: tiny checkpoints, CLIP towers, cases A–G, preprocess/
GOLDEN_XL = SHARED / "golden_xl"                  # XL: tiny sdxl/xlv2, CLIP bigG, WD tagger, cases A–F
GOLDEN_RAP = SHARED / "golden_rap"                # ColorFlow retrieval
GOLDEN_COLORFLOW = SHARED / "golden_colorflow"    # ColorFlow colorizers, super-resolution, diffusers bases
GOLDEN_COLORFLOW_DECOLORIZE = SHARED / "golden_colorflow_decolorize"   # ColorFlow decolorize: erika, ScreenVAE

REQUIRED = {
    GOLDEN: ("models", "clip", "cases", "manifests", "preprocess"),
    GOLDEN_XL: ("models", "clip", "tagger", "cases", "manifests"),
    GOLDEN_RAP: (),
    GOLDEN_COLORFLOW: ("models", "cases"),
    GOLDEN_COLORFLOW_DECOLORIZE: ("models", "cases"),
}


def missing() -> list[str]:
    """The required folders that are not there, as paths."""
    out = []
    for root, subs in REQUIRED.items():
        if not root.is_dir():
            out.append(str(root))
            continue
        out += [str(root / s) for s in subs if not (root / s).is_dir()]
    return out


def missing_message(paths: list[str]) -> str:
    return (f"test data missing: {', '.join(paths)} - the suite reads the project's golden sets from {SHARED} "
            f"(the shared folder laid beside this checkout); put it there or set {ENV_VAR} to where it is")
