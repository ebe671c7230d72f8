"""XL reference tokens: the CLIP bigG "full" tokens and the WD tagger's tokens of a picture, kept side by side until
Apply Sketch joins them with the checkpoint's ClusterConcat (golden_xl README §4–5).

The tagger file is read once per path (the weights are small: 0.4 GB in fp32) and kept on ComfyUI's offload device
between prompts, moved to the compute device only to encode.
"""
from __future__ import annotations

import os

import torch

from ...errors import ColorizerLoadError
from ...weight_files import read_state_dict
from .networks import wd_tagger

def load_tagger(path: str, dtype=torch.float32) -> wd_tagger.WDTagger:
    name = os.path.basename(path)
    sd = read_state_dict(path, "WD tagger file")
    try:
        return wd_tagger.build(sd, name, dtype)
    except ColorizerLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a timm/layout failure: one message naming the file
        raise ColorizerLoadError(f"{name}: could not build the WD SwinV2 tagger from it ({exc})") from None


def tagger_tokens(tagger: wd_tagger.WDTagger, image_pm1: torch.Tensor) -> torch.Tensor:
    """[B, 196, C] tokens of `image_pm1` [B,3,H,W] in [-1,1], on ComfyUI's intermediate device."""
    import comfy.model_management as mm

    device = mm.get_torch_device()
    tagger.to(device)
    try:
        tokens, _ = tagger.tokens(image_pm1.to(device))
    finally:
        tagger.to(mm.unet_offload_device())
    return tokens.to(mm.intermediate_device())
