#!/usr/bin/env python3
"""Write the example workflows from their one definition (headless/workflows.py).

    .venv/bin/python scripts/build_workflows.py            # write every file
    .venv/bin/python scripts/build_workflows.py --check    # exit 1 if a shipped file differs (what the test does)

Writes, per workflow in headless.workflows.WORKFLOWS:
    example_workflows/<stem>.json       UI (LiteGraph) format: ComfyUI's template browser lists it
    example_workflows/<stem>.jpg        a drawing of the graph (thumbnail; needs Pillow)
    tests/workflows/<stem>.api.json     API format (POST /prompt), for the tests

Needs no ComfyUI and no torch; only Pillow for the thumbnails (a ComfyUI requirement, in .venv).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_headless():
    """headless.workflows / headless.thumbnails without importing the pack (and so without ComfyUI)."""
    name = "_colorizediffusion_headless"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "headless" / "__init__.py",
                                                      submodule_search_locations=[str(REPO / "headless")])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    workflows = importlib.import_module(f"{name}.workflows")
    return workflows


def expected_files(thumbnails: bool = True) -> dict[str, bytes]:
    wf = load_headless()
    out = {path: text.encode() for path, text in wf.shipped_files().items()}
    if thumbnails:
        thumbs = importlib.import_module(f"{wf.__package__}.thumbnails")
        for stem in wf.WORKFLOWS:
            out[f"example_workflows/{stem}.jpg"] = thumbs.render(wf.build(stem))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing (thumbnails: presence only)")
    args = p.parse_args(argv)
    files = expected_files(thumbnails=not args.check)
    stale = []
    if args.check:
        wf = load_headless()
        for stem in wf.WORKFLOWS:
            if not (REPO / "example_workflows" / f"{stem}.jpg").is_file():
                stale.append(f"example_workflows/{stem}.jpg (missing)")
    for rel, data in files.items():
        path = REPO / rel
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {rel}")
    generated = {REPO / rel for rel in files}
    for folder, pattern in (("example_workflows", "*.json"), ("tests/workflows", "*.api.json")):
        for extra in sorted((REPO / folder).glob(pattern)):
            if extra not in generated:
                stale.append(f"{extra.relative_to(REPO)} (not produced by the generator)")
    if stale:
        print("out of date:\n  " + "\n  ".join(stale) + "\nrun: .venv/bin/python scripts/build_workflows.py",
              file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
