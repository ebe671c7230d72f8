#!/usr/bin/env python3
"""Write the example workflows from their one definition (devtools/workflows.py).

    .venv/bin/python scripts/build_workflows.py            # write every file
    .venv/bin/python scripts/build_workflows.py --check    # exit 1 if a shipped file differs (what the test does)

Writes, per workflow in devtools.workflows.WORKFLOWS:
    example_workflows/<stem>.json       UI (LiteGraph) format: ComfyUI's template browser lists it
    example_workflows/<stem>.jpg        a drawing of the graph (thumbnail; needs Pillow)
    tests/workflows/<stem>.api.json     API format (POST /prompt), for the tests
    README.md                           its table of the model files, from the workflows' `models` lists

The UI form is laid out from the nodes' /object_info: this starts the embedded ComfyUI with the pack
(scripts/run.sh, on a free loopback port, CPU) and asks it.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "_colorizediffusion"


def load_workflows():
    """devtools.workflows without importing the pack's nodes (nor ComfyUI): the repository as a bare package."""
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(REPO)]
        sys.modules[PACKAGE] = pkg
    return importlib.import_module(f"{PACKAGE}.devtools.workflows")


def object_info(wf) -> dict:
    """/object_info of every node the workflows use, from the embedded ComfyUI of this checkout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, COLORIZEDIFFUSION_PORT=str(port), COLORIZEDIFFUSION_LISTEN="127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="build-workflows-") as base:
        proc = subprocess.Popen(["bash", str(REPO / "scripts" / "run.sh"), "--cpu", "--disable-auto-launch",
                                 "--base-directory", base, "--database-url", "sqlite:///:memory:",
                                 "--disable-api-nodes"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            os.makedirs(os.path.join(base, "custom_nodes"), exist_ok=True)
            link = os.path.join(base, "custom_nodes", "ComfyUI-ColorizeDiffusion")
            if not os.path.exists(link):
                os.symlink(REPO, link)
            deadline = time.monotonic() + 300
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=60) as resp:
                        info = json.loads(resp.read())
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the embedded ComfyUI did not start (run scripts/setup.sh first)")
                    time.sleep(0.5)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    used = {n.type for stem in wf.WORKFLOWS for n in wf.build(stem).nodes}
    missing = sorted(used - set(info))
    if missing:
        raise RuntimeError(f"the embedded ComfyUI lacks the nodes {missing}")
    return {name: info[name] for name in sorted(used)}


def expected_files(thumbnails: bool = True, info: dict | None = None) -> dict[str, bytes]:
    wf = load_workflows()
    info = info if info is not None else object_info(wf)
    out = {path: text.encode() for path, text in wf.shipped_files(info).items()}
    if thumbnails:
        thumbs = importlib.import_module(f"{PACKAGE}.devtools.thumbnails")
        for stem in wf.WORKFLOWS:
            out[f"example_workflows/{stem}.jpg"] = thumbs.render(wf.build(stem), info)
    return out


def readme_with_table(files: dict[str, bytes]) -> str:
    """README.md with its model table made from the generated workflows' `models` lists."""
    wf = load_workflows()
    mf = importlib.import_module(f"{PACKAGE}.devtools.model_files")
    models = {stem: json.loads(files[f"example_workflows/{stem}.json"])["models"] for stem in wf.WORKFLOWS}
    table = mf.readme_table(models, wf.workflow_groups())
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(mf.README_BEGIN), readme.index(mf.README_END) + len(mf.README_END)
    return readme[:start] + table + readme[end:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing (thumbnails: presence only)")
    args = p.parse_args(argv)
    files = expected_files(thumbnails=not args.check)
    stale = []
    wf = load_workflows()
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
    readme = readme_with_table(files)
    if (REPO / "README.md").read_text() != readme:
        if args.check:
            stale.append("README.md (model table)")
        else:
            (REPO / "README.md").write_text(readme)
            print("wrote README.md (model table)")
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
