"""ComfyUI-ColorizeDiffusion: reference-based sketch and manga colorization as ComfyUI nodes.

ComfyUI finds the nodes through `comfy_entrypoint` (nodes/__init__.py, the one registration).
"""
from .nodes import comfy_entrypoint  # noqa: F401

__all__ = ["comfy_entrypoint"]
