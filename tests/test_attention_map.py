"""ColorizeDiffusion Attention Map: the attention of one query cell, per block, through the patched model (an SD2.1
family and XL v2 with its split attention, LoRA and banks)."""
from __future__ import annotations

import math

import pytest
import torch

from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_patches.colorize_diffusion import attention_maps as maps
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import transformer_blocks
from colorize_diffusion.model_patches.colorize_diffusion.tagger import load_tagger
from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

from chain_support import node
from conftest import GOLDEN
from golden_support.clip_runner import tower_heads
from test_xl_chain import ROOT as XL_ROOT, _ckpt as xl_ckpt, _pictures, _Sketch


def _sd21():
    ckpt = load_checkpoint(str(GOLDEN / "models" / "v2-tiny.safetensors"), dtype=torch.float32)
    path = GOLDEN / "clip" / "tiny-vit-openclip.safetensors"
    return ckpt, load_vision_file(str(path), heads=tower_heads(path) or 0), None


def _xl():
    clip = load_vision_file(str(XL_ROOT / "clip" / "tiny-clip-vision-g.safetensors"))
    return xl_ckpt("xlv2"), clip, load_tagger(str(XL_ROOT / "tagger" / "tiny-wd-swinv2-tagger.safetensors"))


def _graph(ckpt, clip, tagger, background: bool):
    sketch, picture, mask, rmask = _pictures()
    extra = {"tagger": tagger} if tagger is not None else {}
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture, **extra)
    model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                   sketch=_Sketch(sketch), reference=reference)
    if background:
        pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=mask,
                        foreground_enhance=False)
        pos, neg = node("ColorizeDiffusionBackgroundEncoder", positive=pos, negative=neg, vae=ckpt.vae,
                        clip_vision=clip, reference_mask=rmask, **extra)
    samples = {"samples": torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(5))}
    result = torch.rand(1, sketch.shape[-2], sketch.shape[-1], 3)
    return model, pos, neg, samples, result, picture


@pytest.mark.parametrize("setup,background", [(_sd21, False), (_xl, True)], ids=["v2", "xlv2-background"])
def test_maps_are_the_modules_own_attention(setup, background):
    ckpt, clip, tagger = setup()
    model, pos, neg, latent, result, reference = _graph(ckpt, clip, tagger, background)
    dm = model.get_model_object("diffusion_model")
    blocks = transformer_blocks(dm)
    index, path, _ = blocks[len(blocks) // 2]
    seen = {}

    def capture(mod, args, kwargs):     # what the module receives, to recompute its attention independently
        seen["x"], seen["ctx"], seen["opts"] = args[0][:1], kwargs.get("context"), kwargs["transformer_options"]

    from colorize_diffusion.model_patches.colorize_diffusion.attention_maps import evaluate_once
    attn2 = model.get_model_object(f"diffusion_model.{path}.attn2")
    handle = attn2.register_forward_pre_hook(capture, with_kwargs=True)
    size = (result.shape[1], result.shape[2])
    rec = maps.MapRecorder("cross", maps.Query(3, 2), size, "mean")
    rec.attach({index: attn2})
    try:
        evaluate_once(model, pos, neg, latent["samples"], 0.5, 7)
    finally:
        rec.detach()
        handle.remove()
    values, grid, hw = rec.maps[index]
    assert math.isclose(float(values.sum()), 1.0, rel_tol=1e-4)       # a distribution over the keys (mean of heads)
    token = maps.Query(3, 2).token(size, hw)
    ctx = seen["ctx"][:1]
    if background:     # the split sends the query to one half: the map is over that half
        ctx = ctx[:, : ctx.shape[1] // 2] if values.numel() == ctx.shape[1] // 2 else ctx
    q = attn2.to_q(seen["x"][:, token:token + 1])[0, 0]
    k = attn2.to_k(ctx)[0]
    heads, d = attn2.heads, q.shape[0] // attn2.heads
    manual = torch.stack([torch.exp((k[:, h * d:(h + 1) * d] @ q[h * d:(h + 1) * d]) / math.sqrt(d))
                          for h in range(heads)])
    manual = (manual / manual.sum(-1, keepdim=True)).mean(0)
    assert values.shape == manual.shape and torch.allclose(values, manual.detach(), atol=1e-5)


@pytest.mark.parametrize("setup", [_sd21, _xl], ids=["v2", "xlv2"])
def test_node_gives_one_overlay_per_block_on_the_right_picture(setup):
    ckpt, clip, tagger = setup()
    model, pos, neg, latent, result, reference = _graph(ckpt, clip, tagger, background=tagger is not None)
    count = len(transformer_blocks(model.get_model_object("diffusion_model")))
    common = dict(model=model, positive=pos, negative=neg, latent=latent, picture=result, reference=reference)
    (cross,) = node("ColorizeDiffusionAttentionMap", attention="cross", query_row=2, query_col=1, blocks="0,2-3",
                    **common)
    assert cross.shape == (3, reference.shape[1], reference.shape[2], 3)
    (selfmaps,) = node("ColorizeDiffusionAttentionMap", attention="self", query_row=2, query_col=1,
                       blocks=f"{count - 1}", heads="max", **common)
    assert selfmaps.shape == (1, result.shape[1], result.shape[2], 3)
    (other,) = node("ColorizeDiffusionAttentionMap", attention="self", query_row=6, query_col=4,
                    blocks=f"{count - 1}", heads="max", **common)
    assert not torch.equal(other, selfmaps), "another query cell gave the same map"
    with pytest.raises(ColorizerInputError, match=f"transformer blocks 0-{count - 1}"):
        node("ColorizeDiffusionAttentionMap", blocks=str(count), query_row=1, query_col=1, **common)
    with pytest.raises(ColorizerInputError, match="outside the"):
        node("ColorizeDiffusionAttentionMap", query_row=200, **common)
