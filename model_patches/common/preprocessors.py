"""The preprocessing networks (line extractors, ISNets) of the model folder `colorizediffusion_preprocessors`
(`models/colorizediffusion/preprocessors`, relocatable with an `extra_model_paths.yaml` entry of that name) and of
comfyui_controlnet_aux's download folder (`ckpts/lllyasviel/Annotators/`), through the one extra-network path."""
from __future__ import annotations

import os

from ...model_folders import PREPROCESSORS
from ...preprocess.weights import find_weight_file, load_network
from . import extra_networks


def aux_annotator_dirs() -> list[str]:
    """The line-extractor folders comfyui_controlnet_aux already downloaded."""
    import folder_paths

    out = []
    for root in folder_paths.get_folder_paths("custom_nodes"):
        d = os.path.join(root, "comfyui_controlnet_aux", "ckpts", "lllyasviel", "Annotators")
        if os.path.isdir(d):
            out.append(d)
    return out


def network(name: str):
    """Network `name` of preprocess.weights.NETWORKS in its ModelPatcher (cached while its file is unchanged)."""
    import folder_paths

    path = find_weight_file(name, folder_paths.get_folder_paths(PREPROCESSORS), aux_annotator_dirs())
    return extra_networks.patcher_for("preprocessor " + name, path, lambda: load_network(name, path))


def loaded_network(name: str):
    """Network `name` on ComfyUI's compute device, ready to run."""
    return extra_networks.loaded(network(name))
