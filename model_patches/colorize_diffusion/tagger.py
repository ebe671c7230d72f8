"""XL reference tokens: the CLIP bigG "full" tokens and the WD tagger's tokens of a picture, kept side by side until
Apply Sketch joins them with the checkpoint's ClusterConcat (golden_xl README §4–5).

The tagger file is read once while it is unchanged (the weights are small: 0.4 GB in fp32) into a ModelPatcher,
through the pack's one extra-network path (common/extra_networks.py): ComfyUI loads it to the compute device to
encode, accounts for its memory, and offloads it as it does its own models.
"""
from __future__ import annotations

import os

import torch

from ...errors import ColorizerLoadError
from ...weight_files import read_state_dict
from ..common import extra_networks
from .networks import wd_tagger


def load_tagger(path: str, dtype=torch.float32):
    """The WD tagger of `path` (a `wd_tagger.WDTagger`) in a ModelPatcher: the COLORIZER_WD_TAGGER value."""
    return extra_networks.patcher_for("WD tagger", path, lambda: _build(path, dtype), dtype)


def _build(path: str, dtype) -> wd_tagger.WDTagger:
    name = os.path.basename(path)
    sd = read_state_dict(path, "WD tagger file")
    try:
        tagger = wd_tagger.build(sd, name, dtype)
    except ColorizerLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a timm/layout failure: one message naming the file
        raise ColorizerLoadError(f"{name}: could not build the WD SwinV2 tagger from it ({exc})") from None
    return tagger


def tagger_tokens(tagger, image_pm1: torch.Tensor) -> torch.Tensor:
    """[B, 196, C] tokens of `image_pm1` [B,3,H,W] in [-1,1] by the tagger patcher `tagger`, on ComfyUI's
    intermediate device. Full load: timm's plain torch layers are not cast by ComfyUI's partial loading."""
    import comfy.model_management as mm

    net = extra_networks.loaded(tagger, full=True)
    tokens, _ = net.tokens(image_pm1.to(tagger.load_device))
    return tokens.to(mm.intermediate_device())
