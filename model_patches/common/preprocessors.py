"""The preprocessing networks, through the one extra-network path (extra_networks.py): the line extractors and ISNets
of the model folder `colorizediffusion_preprocessors` (`models/colorizediffusion/preprocessors`, relocatable with an
`extra_model_paths.yaml` entry of that name) and of comfyui_controlnet_aux's download folder
(`ckpts/lllyasviel/Annotators/`); ColorFlow's decolorize networks of a snapshot folder."""
from __future__ import annotations

import os

from torch import nn

from ...errors import ColorizerLoadError
from ...model_folders import PREPROCESSORS
from ...preprocess.decolorize_files import LINE_FILE, SCREEN_FILES, load_decolorize_models
from ...preprocess.weights import NETWORKS, find_weight_file, load_network
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


def weight_path(name: str, weights: str | None = None) -> str:
    """The file of network `name` of preprocess.weights.NETWORKS: `weights` (a file of the preprocessors folder) when
    one other than the official name is chosen, else the official file wherever the pack finds it."""
    import folder_paths

    if weights and weights not in NETWORKS[name].files:
        path = folder_paths.get_full_path(PREPROCESSORS, weights)
        if path is None:
            raise ColorizerLoadError(f"{NETWORKS[name].official_name} weights {weights} not found in "
                                     f"models/colorizediffusion/preprocessors (searched: "
                                     f"{', '.join(folder_paths.get_folder_paths(PREPROCESSORS))})")
        return path
    return find_weight_file(name, folder_paths.get_folder_paths(PREPROCESSORS), aux_annotator_dirs())


def network(name: str, weights: str | None = None):
    """Network `name` (from the file `weights`, or the official one) in its ModelPatcher, cached while its file is
    unchanged."""
    path = weight_path(name, weights)
    return extra_networks.patcher_for("preprocessor " + name, path, lambda: load_network(name, path))


def loaded_network(name: str, weights: str | None = None):
    """Network `name` on ComfyUI's compute device, ready to run."""
    return extra_networks.loaded(network(name, weights))


def decolorize_networks(root: str, style: str):
    """The networks ColorFlow's decolorize `style` needs from the snapshot folder `root`, in one ModelPatcher (an
    `nn.ModuleDict`: "line", or "generator" and "decoder"), cached while their files are unchanged."""
    screen = style == "GrayImage(ScreenStyle)"
    rels = tuple(SCREEN_FILES.values()) if screen else (LINE_FILE,)
    return extra_networks.patcher_for("ColorFlow decolorize " + ("ScreenVAE" if screen else "line model"),
                                      [os.path.join(root, rel) for rel in rels],
                                      lambda: nn.ModuleDict(load_decolorize_models(root, style)))
