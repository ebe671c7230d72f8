"""Node classes, one module per role; this file merges their mappings for the pack's __init__."""
from __future__ import annotations

import importlib

_NODE_MODULES = ("loader_nodes", "reference_nodes", "conditioning_nodes", "guidance_nodes", "preprocess_nodes")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _name in _NODE_MODULES:
    try:
        _mod = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as exc:  # a role not written yet
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    NODE_CLASS_MAPPINGS.update(_mod.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_mod, "NODE_DISPLAY_NAME_MAPPINGS", {}))
