"""ComfyUI-ColorizeDiffusion: reference-based sketch and manga colorization as ComfyUI nodes.

This file is the one place the pack's nodes are registered with the host. The nodes are imported when a
ComfyUI host is already running in this process (ComfyUI's custom-node loader, the tests, the headless
command after it has set the host up); `python -m colorize_diffusion` first imports this file with no host
on the path, so then the mappings start empty and `load_nodes()` fills them.
"""
import sys

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}


def load_nodes():
    from .nodes import NODE_CLASS_MAPPINGS as classes, NODE_DISPLAY_NAME_MAPPINGS as names

    NODE_CLASS_MAPPINGS.update(classes)
    NODE_DISPLAY_NAME_MAPPINGS.update(names)
    return NODE_CLASS_MAPPINGS


if "comfy" in sys.modules:
    load_nodes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "load_nodes"]
