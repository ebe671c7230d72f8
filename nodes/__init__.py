"""The pack's one registration: every node class, the ComfyExtension that lists them, and `comfy_entrypoint`.

Nodes are ComfyUI V3 nodes (`comfy_api.v0_0_2`, present in the pinned host and in current ComfyUI); each
module holds the classes of one role and lists them in its `NODES`.
"""
from __future__ import annotations

from comfy_api.v0_0_2 import ComfyExtension, io

from .. import model_folders
from . import (chain_nodes, colorflow_decolorize_nodes, colorflow_nodes, example_nodes, guidance_nodes, image_nodes,
               injection_nodes, loader_nodes, manipulation_nodes, preprocess_nodes, reference_nodes, retrieval_nodes,
               visualize_nodes, xl_nodes)

model_folders.register()

NODE_LIST: list[type[io.ComfyNode]] = [
    *loader_nodes.NODES, *reference_nodes.NODES, *preprocess_nodes.NODES, *chain_nodes.NODES,
    *guidance_nodes.NODES, *injection_nodes.NODES, *manipulation_nodes.NODES, *xl_nodes.NODES,
    *visualize_nodes.NODES, *retrieval_nodes.NODES, *colorflow_nodes.NODES,
    *colorflow_decolorize_nodes.NODES, *example_nodes.NODES, *image_nodes.NODES,
]


def node_classes() -> dict[str, type[io.ComfyNode]]:
    """node id -> class, as ComfyUI registers them."""
    return {cls.GET_SCHEMA().node_id: cls for cls in NODE_LIST}


def display_names() -> dict[str, str]:
    return {cls.GET_SCHEMA().node_id: cls.GET_SCHEMA().display_name for cls in NODE_LIST}


class ColorizeDiffusionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)


async def comfy_entrypoint() -> ColorizeDiffusionExtension:
    return ColorizeDiffusionExtension()
