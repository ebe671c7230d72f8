"""Import set-up shared by the benchmark modules: the real ComfyUI host on CPU, this pack as `colorize_diffusion`.

Same order as tests/conftest.py: host tree and the package link on sys.path, `args.cpu = True` before anything
imports comfy.model_management, `utils.extra_config` before ComfyUI's own modules.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR") or REPO / ".host" / "ComfyUI").resolve()
PKG_LINK_DIR = REPO / ".host" / "pkgs"
GOLDEN = Path(os.environ.get("COLORIZEDIFFUSION_GOLDEN") or REPO.parent / "shared" / "golden")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))


ATTENTION = {
    "sdpa": "torch scaled_dot_product_attention (ComfyUI --use-pytorch-cross-attention; its default on NVIDIA GPUs)",
    "comfy-cpu": "ComfyUI's CPU default (sub-quadratic attention)",
}


def setup(attention: str = "sdpa") -> None:
    """Idempotent: paths, CPU host, attention backend (before comfy.model_management is imported), threads."""
    if not (COMFYUI_DIR / "comfy").is_dir():
        raise SystemExit(f"No ComfyUI tree at {COMFYUI_DIR}: run scripts/setup.sh or set COMFYUI_DIR")
    for p in (str(COMFYUI_DIR), str(PKG_LINK_DIR)):
        if p not in sys.path:
            sys.path.insert(0, p)
    from comfy.cli_args import args

    args.cpu = True
    if attention not in ATTENTION:
        raise SystemExit(f"unknown attention {attention!r}: one of {', '.join(ATTENTION)}")
    if "comfy.model_management" in sys.modules and args.use_pytorch_cross_attention != (attention == "sdpa"):
        raise SystemExit("the attention backend must be chosen before ComfyUI's model management is imported")
    args.use_pytorch_cross_attention = attention == "sdpa"
    import utils.extra_config  # noqa: F401  (before comfy/ lands on sys.path, see comfyui-host.md §6.2)
    import torch

    torch.set_num_threads(THREADS)
    import logging

    logging.getLogger().setLevel(logging.WARNING)


def proc_status() -> dict:
    """RssAnon, RssFile, VmRSS, VmHWM of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem", "VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def attention_backend() -> str:
    from comfy.ldm.modules import attention

    f = attention.optimized_attention
    return getattr(f, "__name__", repr(f))
