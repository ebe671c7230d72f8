"""XL reference tokens: the CLIP bigG "full" tokens and the WD tagger's tokens of a picture, kept side by side until
Apply Sketch joins them with the checkpoint's ClusterConcat (golden_xl README §4–5).

The tagger file is read once per path (the weights are small: 0.4 GB in fp32) into a ModelPatcher, so ComfyUI loads
it to the compute device to encode, accounts for its memory, and offloads it as it does its own models.
"""
from __future__ import annotations

import os

import torch

from ...comfy_compat import new_model_patcher
from ...errors import ColorizerLoadError
from ...weight_files import read_state_dict
from .networks import wd_tagger


def load_tagger(path: str, dtype=torch.float32):
    """The WD tagger of `path` (a `wd_tagger.WDTagger`) in a ModelPatcher: the COLORIZER_WD_TAGGER value."""
    import comfy.model_management as mm

    name = os.path.basename(path)
    sd = read_state_dict(path, "WD tagger file")
    try:
        tagger = wd_tagger.build(sd, name, dtype)
    except ColorizerLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a timm/layout failure: one message naming the file
        raise ColorizerLoadError(f"{name}: could not build the WD SwinV2 tagger from it ({exc})") from None
    return new_model_patcher(tagger, mm.get_torch_device(), mm.unet_offload_device())


def tagger_tokens(tagger, image_pm1: torch.Tensor) -> torch.Tensor:
    """[B, 196, C] tokens of `image_pm1` [B,3,H,W] in [-1,1] by the tagger patcher `tagger`, on ComfyUI's
    intermediate device. Full load: timm's plain torch layers are not cast by ComfyUI's partial loading."""
    import comfy.model_management as mm

    mm.load_models_gpu([tagger], force_full_load=True)
    tokens, _ = tagger.model.tokens(image_pm1.to(tagger.load_device))
    return tokens.to(mm.intermediate_device())
