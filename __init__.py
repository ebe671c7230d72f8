"""ComfyUI-ColorizeDiffusion: reference-based sketch and manga colorization as ComfyUI nodes.

ComfyUI finds the pack's nodes through `comfy_entrypoint` (nodes/__init__.py, the one registration). The nodes
are imported only when a ComfyUI host is already running in this process (ComfyUI's custom-node loader, the
tests, the headless command after it has set the host up); `python -m colorize_diffusion` imports this file
with no host on the path.
"""
import sys

if "comfy" in sys.modules:
    from .nodes import comfy_entrypoint  # noqa: F401

    __all__ = ["comfy_entrypoint"]
