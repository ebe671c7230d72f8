"""ColorFlow's "Preprocess (Decolorize)" in the graph: a page -> the grey picture ColorFlow's colorizers expect
(Sketch: erika lines; Sketch_Shading: lines plus grey-level thresholds; GrayImage(ScreenStyle): ScreenVAE screen
blended 50/50 with the grey page), at 1.5x the working resolution. The algorithm: preprocess/decolorize.py; the
files (the released snapshot's LE/ and ScreenStyle/ folders under models/colorflow): preprocess/decolorize_files.py.
"""
from __future__ import annotations

import os

import numpy as np
import torch

import comfy.model_management as mm
from comfy_api.v0_0_2 import io

from ..errors import ColorizerInputError, ColorizerLoadError
from ..model_folders import COLORFLOW, subfolder_path, subfolders
from ..model_patches.common import extra_networks
from ..model_patches.common.preprocessors import decolorize_networks
from ..preprocess import convert
from ..preprocess.decolorize import STYLES, decolorize, target_size
from ..preprocess.decolorize_files import is_snapshot
from ..preprocess.screen_vae import ScreenRandom
from .colorflow_nodes import COLORFLOW_CATEGORY
from .retrieval_nodes import RESOLUTIONS

ROOT_FOLDER = "."          # the snapshot's LE/ and ScreenStyle/ placed directly in models/colorflow


def _snapshot_folders() -> list[str]:
    import folder_paths

    found = subfolders(COLORFLOW, is_snapshot)
    if any(is_snapshot(root) for root in folder_paths.get_folder_paths(COLORFLOW)):
        found.insert(0, ROOT_FOLDER)
    return found


def _snapshot_path(name: str) -> str:
    import folder_paths

    if name == ROOT_FOLDER:
        path = next((r for r in folder_paths.get_folder_paths(COLORFLOW) if is_snapshot(r)), None)
    else:
        path = subfolder_path(COLORFLOW, name)
    if path is None or not os.path.isdir(path):
        raise ColorizerLoadError(f"{name} not found in models/colorflow (copy the TencentARC/ColorFlow snapshot "
                                 "there: its LE/ and ScreenStyle/ folders hold the decolorize networks)")
    return path


def _u8_pages(page) -> list[np.ndarray]:
    return [np.ascontiguousarray(convert.to_uint8(p)) for p in convert.rgb(convert.check_image(page, "page"))]


def _image(pictures: list[np.ndarray]) -> torch.Tensor:
    """[h, w] uint8 pictures -> IMAGE [B, h, w, 3] (the app's L -> RGB)."""
    x = torch.from_numpy(np.stack(pictures)).float().div(255)
    return x.unsqueeze(-1).repeat(1, 1, 1, 3).contiguous()


def check_inputs(page, style: str, resolution: str):
    """Every input checked before any work; returns the pages (uint8 RGB) and the target size."""
    if style not in STYLES:
        raise ColorizerInputError(f"style {style!r} is not one of {', '.join(STYLES)}")
    if resolution not in RESOLUTIONS:
        raise ColorizerInputError(f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
    return _u8_pages(page), target_size(*RESOLUTIONS[resolution])


class ColorFlowDecolorize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionColorFlowDecolorize", display_name="ColorFlow Decolorize",
            category=COLORFLOW_CATEGORY,
            description=("ColorFlow's Preprocess (Decolorize): the page fitted to 1.5x the working resolution (resized, "
                         "or centre-cropped when its aspect differs by 15 % or more) and turned into what the "
                         "colorizers expect — Sketch (the erika line model, for sketch/), Sketch_Shading (lines plus "
                         "grey levels, for shading/) or GrayImage(ScreenStyle) (ScreenVAE's screentone blended 50/50 "
                         "with the grey page, for GraySD/). The official quirks are kept; ScreenStyle's dropout and "
                         "noise (random in the app) come from the seed."),
            inputs=[
                io.Image.Input("page", tooltip="the page(s); colour or grey"),
                io.Combo.Input("style", options=list(STYLES), default="Sketch",
                               tooltip="the app's Input Style: Sketch for sketch/, Sketch_Shading for shading/, "
                                       "GrayImage(ScreenStyle) for GraySD/"),
                io.Combo.Input("folder", options=_snapshot_folders(),
                               tooltip="the ColorFlow snapshot folder of models/colorflow holding LE/erika.pth and "
                                       "ScreenStyle/ ('.' = models/colorflow itself)"),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="512x800",
                               tooltip="the working resolution (width x height); the output is 1.5x that"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="ScreenStyle only: the ScreenVAE's dropout and noise (unseeded in the app)"),
            ],
            outputs=[io.Image.Output(display_name="context"), io.Image.Output(display_name="vae_input")],
        )

    @classmethod
    def execute(cls, page, style, folder, resolution="512x800", seed=0):
        pages, (width, height) = check_inputs(page, style, resolution)
        nets = extra_networks.loaded(decolorize_networks(_snapshot_path(folder), style), full=True)
        random = ScreenRandom(seed=seed)
        contexts, vae_inputs = [], []
        for u8 in pages:
            mm.throw_exception_if_processing_interrupted()
            out = decolorize(u8, style, width, height, nets, random)
            contexts.append(out["context_u8"])
            vae_inputs.append(out["vae_input_u8"])
        return io.NodeOutput(_image(contexts), _image(vae_inputs))


NODES = [ColorFlowDecolorize]
