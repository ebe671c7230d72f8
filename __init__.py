"""ComfyUI-ColorizeDiffusion: reference-based sketch and manga colorization as ComfyUI nodes.

This file is the one place the pack's nodes are registered with the host.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
