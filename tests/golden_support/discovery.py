"""Finds golden case folders: the shared set and every root named in COLORIZEDIFFUSION_GOLDEN_DIRS.

A golden root holds `cases/` and/or `preprocess/cases/`. Paths inside a model case.json are relative to
the root; paths inside a preprocess case.json are relative to the root's `preprocess/` folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from shared_data import GOLDEN, GOLDEN_COLORFLOW, GOLDEN_COLORFLOW_DECOLORIZE, GOLDEN_RAP, GOLDEN_XL

SHARED_GOLDEN = GOLDEN
SHARED_ROOTS = (GOLDEN, GOLDEN_XL, GOLDEN_RAP, GOLDEN_COLORFLOW, GOLDEN_COLORFLOW_DECOLORIZE)
ENV_VAR = "COLORIZEDIFFUSION_GOLDEN_DIRS"


@dataclass(frozen=True)
class GoldenCase:
    case_dir: Path
    base: Path          # what the paths inside case.json are relative to
    preprocess: bool

    @property
    def name(self) -> str:
        return self.case_dir.name

    @property
    def test_id(self) -> str:
        kind = "preprocess" if self.preprocess else "model"
        root = self.case_dir.parent if self.case_dir.parent == self.base else self.case_dir.parent.parent
        return f"{kind}:{root.name}/{self.case_dir.name}"

    def load(self):
        from safetensors.torch import load_file

        case = json.loads((self.case_dir / "case.json").read_text())
        inputs = load_file(str(self.case_dir / "inputs.safetensors"))
        expected = load_file(str(self.case_dir / "expected.safetensors"))
        return case, inputs, expected


def golden_roots() -> list[Path]:
    roots = [root for root in SHARED_ROOTS if root.is_dir()]
    for entry in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(entry).expanduser().resolve())
    seen, unique = set(), []
    for r in roots:
        if r not in seen:
            seen.add(r)
            unique.append(r)
    return unique


def _case_dirs(cases_dir: Path) -> list[Path]:
    if not cases_dir.is_dir():
        return []
    return sorted(p for p in cases_dir.iterdir() if (p / "case.json").is_file())


def _indexed_case_dirs(root: Path) -> list[Path]:
    index = root / "index.json"
    if (root / "cases").is_dir() or not index.is_file():
        return []
    data = json.loads(index.read_text())
    names = [c["name"] for c in data.get("cases", [])] if isinstance(data, dict) else []
    return [root / n for n in names if (root / n / "case.json").is_file()]


def discover_cases() -> list[GoldenCase]:
    found = []
    for root in golden_roots():
        if not root.is_dir():
            raise FileNotFoundError(f"{ENV_VAR} names {root}, which is not a folder")
        for d in _case_dirs(root / "cases"):
            found.append(GoldenCase(d, root, preprocess=False))
        for d in _indexed_case_dirs(root):          # a root whose index.json lists case folders beside it
            found.append(GoldenCase(d, root, preprocess=False))
        for d in _case_dirs(root / "preprocess" / "cases"):
            found.append(GoldenCase(d, root / "preprocess", preprocess=True))
    return found
