"""Full-size shape check of the extra-network builders (sketch encoder, v1.5 context, v2 encoders).

Each builder is run on a meta-device state dict made from the manifests of the real families
(../shared/golden/manifests/*.tsv): every key under its prefix must be consumed with matching shapes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colorize_diffusion.errors import ColorizerLoadError
from colorize_diffusion.model_patches.colorize_diffusion.networks import sketch_encoder, v15_context, v2_encoders
from host_emulation import host_layers
from shared_data import GOLDEN

MANIFESTS = GOLDEN / "manifests"

BUILDERS = {
    "control_encoder.": sketch_encoder.build_from_state_dict,
    "thresh_embedder.": v15_context.build_threshold_embedder,
    "transformer.": v15_context.build_cluster_transformer,
    "bg_encoder.": v2_encoders.build_from_state_dict,
    "style_encoder.": v2_encoders.build_from_state_dict,
}
EXPECTED_PREFIXES = {
    "mult": {"control_encoder."},
    "switch": {"control_encoder.", "thresh_embedder.", "transformer."},
    "v2": {"control_encoder.", "bg_encoder.", "style_encoder."},
}


def meta_state_dict(family: str) -> dict[str, torch.Tensor]:
    path = MANIFESTS / f"{family}.tsv"
    assert path.is_file(), f"no manifest {path}"
    sd = {}
    for line in path.read_text().splitlines()[1:]:
        if not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        dims = [int(v) for v in shape.strip("[]").split(",") if v.strip()]
        sd[key] = torch.empty(dims, device="meta", dtype=getattr(torch, dtype))
    return sd


def _build_all(sd: dict) -> dict:
    built = {}
    for prefix, builder in BUILDERS.items():
        if any(k.startswith(prefix) for k in sd):
            built[prefix] = builder(sd, prefix, device="meta")
    return built


@pytest.mark.parametrize("layers", ["eager", "lazy", "lazy-meta"])
@pytest.mark.parametrize("family", ["mult", "switch", "v2"])
def test_full_size_builders_consume_every_key(family, layers):
    sd = meta_state_dict(family)
    before = dict(sd)
    with host_layers(layers):      # also with Linear layers built lazily, as current ComfyUI does
        built = _build_all(sd)
    assert set(built) == EXPECTED_PREFIXES[family]
    for prefix, module in built.items():
        left = [k for k in sd if k.startswith(prefix)]
        assert not left, f"{prefix}: keys left unread: {left[:5]}"
        own = {k[len(prefix):]: v for k, v in before.items() if k.startswith(prefix)}
        got = module.state_dict()
        assert set(got) == set(own)
        for k, t in got.items():
            assert tuple(t.shape) == tuple(own[k].shape), k
            assert t.device.type == "meta"
    # keys of other owners (UNet, VAE, DDPM buffers, LoRA, warp/style modules) are left alone
    assert all(not k.startswith(tuple(built)) for k in sd)
    assert any(k.startswith("model.diffusion_model.") for k in sd)


def test_full_size_hyper_parameters():
    sd = meta_state_dict("v2")
    bg = v2_encoders.build_from_state_dict(sd, "bg_encoder.", device="meta")
    style = v2_encoders.build_from_state_dict(sd, "style_encoder.", device="meta")
    heads = [blk[1].transformer_blocks[0].attn2.heads for blk in bg.input_blocks if len(blk) > 1]
    assert heads == [5, 5, 10, 10, 20, 20]
    assert bg.input_blocks[1][1].transformer_blocks[0].attn2.to_k.in_features == 1024
    assert bg.zero_kind == "conv" and style.zero_kind == "linear"
    assert [z.out_features for z in style.zero_layers] == [640] * 3 + [1280] * 3 + [2560] * 6
    assert style.label_emb[0][0].in_features == 512
    sk = sketch_encoder.build_from_state_dict(sd, "control_encoder.", device="meta")
    assert [b[1].stride[0] for b in sk.output_blocks] == [2, 2, 2, 1]

    sd = meta_state_dict("switch")
    ct = v15_context.build_cluster_transformer(sd, "transformer.", device="meta")
    assert len(ct.layers) == 6 and ct.layers[0][2].heads == 16 and ct.embedding.shape == (256, 1024)
    te = v15_context.build_threshold_embedder(sd, "thresh_embedder.", device="meta")
    assert te.embed_dim == 256


@pytest.mark.parametrize("family,key", [
    ("mult", "control_encoder.zero_blocks.2.0.weight"),
    ("switch", "transformer.layers.3.3.2.bias"),
    ("switch", "thresh_embedder.embed_layer.2.weight"),
    ("v2", "bg_encoder.input_blocks.5.1.transformer_blocks.0.attn2.to_v.weight"),
    ("v2", "style_encoder.zero_layers.7.bias"),
])
@pytest.mark.parametrize("layers", ["eager", "lazy"])
def test_wrong_shape_names_the_key(family, key, layers):
    """The lazy layers of current ComfyUI accept any shape: the builders' own check must name the key."""
    sd = meta_state_dict(family)
    shape = list(sd[key].shape)
    shape[-1] += 1
    sd[key] = torch.empty(shape, device="meta")
    prefix = next(p for p in BUILDERS if key.startswith(p))
    with host_layers(layers), pytest.raises(ColorizerLoadError, match=key.replace(".", r"\.")):
        BUILDERS[prefix](sd, prefix, device="meta")
    assert key in sd, "nothing may be popped when loading fails"


@pytest.mark.parametrize("family,key", [
    ("v2", "style_encoder.input_blocks.8.0.out_layers.3.bias"),
    ("switch", "control_encoder.output_blocks.1.3.weight"),
])
def test_missing_key_names_the_key(family, key):
    sd = meta_state_dict(family)
    del sd[key]
    prefix = next(p for p in BUILDERS if key.startswith(p))
    with pytest.raises(ColorizerLoadError, match=key.replace(".", r"\.")):
        BUILDERS[prefix](sd, prefix, device="meta")
