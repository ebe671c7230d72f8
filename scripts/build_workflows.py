#!/usr/bin/env python3
"""Write the example workflows from their one definition (headless/workflows.py).

    .venv/bin/python scripts/build_workflows.py            # write every file
    .venv/bin/python scripts/build_workflows.py --check    # exit 1 if a shipped file differs (what the test does)

Writes, per workflow in headless.workflows.WORKFLOWS:
    example_workflows/<stem>.json       UI (LiteGraph) format: ComfyUI's template browser lists it
    example_workflows/<stem>.jpg        a drawing of the graph (thumbnail; needs Pillow)
    tests/workflows/<stem>.api.json     API format (POST /prompt), for the tests

The UI form is laid out from the nodes' /object_info, so this starts the ComfyUI host of the checkout
(COMFYUI_DIR, else .host/ComfyUI from scripts/setup.sh) in this process, on the CPU.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "_colorizediffusion"


def load_pack():
    """The pack as a package without importing ComfyUI (its root imports the nodes only inside a host)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = mod
        spec.loader.exec_module(mod)
    return sys.modules[PACKAGE]


def load_headless():
    """headless.workflows (pure Python: the API form of every workflow needs no ComfyUI)."""
    load_pack()
    return importlib.import_module(f"{PACKAGE}.headless.workflows")


def object_info(wf) -> dict:
    """/object_info of every node the workflows use, from the host of this checkout."""
    import logging

    host = importlib.import_module(f"{PACKAGE}.headless.host")
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)       # the host's warnings about optional extras it lacks
    try:
        host.setup(cpu=True)
    finally:
        logging.getLogger().setLevel(level)
    used = {n.type for stem in wf.WORKFLOWS for n in wf.build(stem).nodes}
    return host.object_info(sorted(used))


def expected_files(thumbnails: bool = True, info: dict | None = None) -> dict[str, bytes]:
    wf = load_headless()
    info = info if info is not None else object_info(wf)
    out = {path: text.encode() for path, text in wf.shipped_files(info).items()}
    if thumbnails:
        thumbs = importlib.import_module(f"{PACKAGE}.headless.thumbnails")
        for stem in wf.WORKFLOWS:
            out[f"example_workflows/{stem}.jpg"] = thumbs.render(wf.build(stem), info)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing (thumbnails: presence only)")
    args = p.parse_args(argv)
    files = expected_files(thumbnails=not args.check)
    stale = []
    wf = load_headless()
    if args.check:
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
    if not args.check:
        for extra in sorted((REPO / "example_workflows").glob("*.jpg")):
            if extra.stem not in wf.WORKFLOWS:
                extra.unlink()
                print(f"removed {extra.relative_to(REPO)}")
    if stale:
        print("out of date:\n  " + "\n  ".join(stale) + "\nrun: .venv/bin/python scripts/build_workflows.py",
              file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
