"""Test set-up: the real ComfyUI host on CPU, and this pack importable as `colorize_diffusion`.

The host is COMFYUI_DIR when set, else the tree scripts/setup.sh extracted to .host/ComfyUI.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR") or REPO / ".host" / "ComfyUI").resolve()
PKG_LINK_DIR = REPO / ".host" / "pkgs"   # holds the link colorize_diffusion -> repo root

if not (COMFYUI_DIR / "comfy").is_dir():
    raise RuntimeError(f"No ComfyUI tree at {COMFYUI_DIR}: run scripts/setup.sh or set COMFYUI_DIR")

for p in (str(COMFYUI_DIR), str(PKG_LINK_DIR), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from comfy.cli_args import args  # noqa: E402

args.cpu = True  # before anything imports comfy.model_management
import utils.extra_config  # noqa: E402,F401  (must precede comfy/ on sys.path, see comfyui-host.md §6.2)

from shared_data import GOLDEN  # noqa: E402,F401

# A real ComfyUI server (through scripts/run.sh), one per test session: see tests/server_fixture.py.
from server_fixture import comfy_server  # noqa: E402,F401

# COLORIZEDIFFUSION_HOST=current (or current-static, dynamic VRAM off): the whole session on the pinned host made to
# behave like current ComfyUI
# (tests/host_emulation/), switched on before any model is built.
import host_emulation  # noqa: E402

if host_emulation.session_emulated():
    _CURRENT_HOST = host_emulation.emulate(dynamic_vram=host_emulation.session_dynamic_vram())
    _CURRENT_HOST.__enter__()


def pytest_sessionstart(session):
    """No test is skipped in silence for want of its data: a missing golden folder stops the run in one line."""
    import pytest
    import shared_data

    absent = shared_data.missing()
    if absent:
        pytest.exit(shared_data.missing_message(absent), returncode=3)
