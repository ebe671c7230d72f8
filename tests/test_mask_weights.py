"""The mask nodes name their weight file in a widget (so the frontend reports it missing and offers its download):
the official file by default, another file of the preprocessors folder when chosen, a clear error for a missing one."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from chain_support import node
from colorize_diffusion.errors import ColorizerLoadError


def _random_isnet(path):
    from colorize_diffusion.preprocess.isnet import ISNetDIS

    g = torch.Generator().manual_seed(0)
    sd = {k: (v if k.endswith("num_batches_tracked") else
              torch.ones_like(v) if k.endswith("running_var") else 0.05 * torch.randn(v.shape, generator=g))
          for k, v in ISNetDIS().state_dict().items()}
    save_file({k: t.contiguous() for k, t in sd.items()}, str(path))


def test_mask_nodes_load_the_file_their_widget_names(tmp_path, monkeypatch):
    import folder_paths

    from colorize_diffusion import model_folders
    from colorize_diffusion.model_patches.common import extra_networks
    from colorize_diffusion.nodes.preprocess_nodes import ReferenceMask, SketchMask

    monkeypatch.setitem(folder_paths.folder_names_and_paths, model_folders.PREPROCESSORS,
                        ([str(tmp_path)], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    extra_networks.clear()
    _random_isnet(tmp_path / "my-isnet.safetensors")

    for cls, official in ((SketchMask, "sketch-segment.safetensors"), (ReferenceMask, "isnetis.safetensors")):
        (weights,) = [i for i in cls.define_schema().inputs if i.id == "weights"]
        assert weights.default == official and weights.optional
        assert weights.options == ["my-isnet.safetensors"], "the folder's files; the official one is not there"

    picture = torch.rand(1, 64, 64, 3)
    (mask,) = node("ColorizeDiffusionSketchMask", sketch=picture, polarity="auto", net_size=256,
                   weights="my-isnet.safetensors")
    assert mask.shape == (1, 64, 64) and torch.isfinite(mask).all()
    mask, _ = node("ColorizeDiffusionReferenceMask", reference=picture, dilate=True, net_size=256,
                   weights="my-isnet.safetensors")
    assert mask.shape == (1, 64, 64)
    with pytest.raises(ColorizerLoadError, match="weights other.safetensors not found in models/colorizediffusion/"
                                                 "preprocessors"):
        node("ColorizeDiffusionSketchMask", sketch=picture, polarity="auto", net_size=256,
             weights="other.safetensors")
    with pytest.raises(ColorizerLoadError, match="isnetis.safetensors"):     # the official file, absent
        node("ColorizeDiffusionReferenceMask", reference=picture, dilate=True, net_size=256)
