"""Node classes, one module per role; this file merges their mappings for the pack's __init__."""
from __future__ import annotations

from .. import model_folders
from . import (conditioning_nodes, guidance_nodes, injection_nodes, loader_nodes, manipulation_nodes,
               preprocess_nodes, reference_nodes)

model_folders.register()

_NODE_MODULES = (loader_nodes, reference_nodes, preprocess_nodes, conditioning_nodes, guidance_nodes,
                 manipulation_nodes, injection_nodes)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _mod in _NODE_MODULES:
    NODE_CLASS_MAPPINGS.update(_mod.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_mod.NODE_DISPLAY_NAME_MAPPINGS)
