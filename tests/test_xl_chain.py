"""ColorizeDiffusion XL through the graph's nodes with the tiny golden_xl models: the reference (CLIP bigG + WD
tagger), Apply Sketch, Split Attention, Background Encoder (sdxl tokens; xlv2 ReferenceNet banks and LoRA), the
per-level sketch strengths, the guider and a sampler; and the messages of wrong wiring."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError
from colorize_diffusion.model_patches.colorize_diffusion.prompt import prompt_of
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.model_patches.colorize_diffusion.tagger import load_tagger
from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

from chain_support import node
from golden_support.xl_runner import head_sizes
from shared_data import GOLDEN, GOLDEN_XL

ROOT = GOLDEN_XL
H, W = 128, 96


def _ckpt(family):
    name = f"models/{family}-tiny.safetensors"
    return load_checkpoint(str(ROOT / name), dtype=torch.float32, heads=head_sizes(ROOT, name))


@pytest.fixture(scope="module")
def encoders():
    return (load_vision_file(str(ROOT / "clip/tiny-clip-vision-g.safetensors")),
            load_tagger(str(ROOT / "tagger/tiny-wd-swinv2-tagger.safetensors")))


def _pictures():
    g = torch.Generator().manual_seed(3)
    sketch = -torch.ones(1, 3, H, W)
    sketch[..., 20:100, 30:70] = 1.0                          # white lines on black (model space)
    reference = torch.rand(1, 90, 110, 3, generator=g)         # IMAGE layout
    mask = torch.zeros(1, H, W)
    mask[:, 16:112, 24:72] = 1.0
    rmask = torch.zeros(1, 90, 110)
    rmask[:, 20:70, 30:80] = 1.0
    return sketch, reference, mask, rmask


class _Sketch:
    def __init__(self, sketch):
        self.sketch = sketch


def _sample(model, pos, neg, latent, steps=2, ref_scale=3.0, sketch_scale=1.0):
    import comfy.samplers

    (guider,) = node("ColorizeDiffusionGuider", model=model, positive=pos, negative=neg, reference_scale=ref_scale,
                     sketch_scale=sketch_scale)
    sigmas = model.get_model_object("model_sampling").sigmas
    sig = torch.tensor([float(sigmas[-1]), float(sigmas[len(sigmas) // 2]), 0.0])
    noise = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(0))
    return guider.sample(noise, latent["samples"], comfy.samplers.ksampler("euler"), sig, seed=0, disable_pbar=True)


@pytest.mark.parametrize("family", ["sdxl", "xlv2"])
def test_xl_background_chain_runs_and_every_part_acts(family, encoders):
    clip, tagger = encoders
    ckpt = _ckpt(family)
    sketch, picture, mask, rmask = _pictures()
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture, tagger=tagger)
    model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                   sketch=_Sketch(sketch), reference=reference)
    plain = _sample(model, pos, neg, latent)
    pos2, neg2 = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=mask,
                      foreground_enhance=False)
    pos2, neg2 = node("ColorizeDiffusionBackgroundEncoder", positive=pos2, negative=neg2, vae=ckpt.vae,
                      clip_vision=clip, tagger=tagger, reference_mask=rmask)
    prompt = prompt_of(pos2, neg2, "test")
    assert prompt.xl_context.shape == (1, 196, ckpt.colorizer.context_dim)
    assert pos2[0][0].shape[1] == 392                               # reference half + background half
    assert pos2[0][1]["model_conds"]["y"].cond.shape == (1, 512)
    assert (prompt.banks is not None) == (family == "xlv2")
    if family == "xlv2":
        assert len(prompt.banks) == 36
    background = _sample(model, pos2, neg2, latent)
    assert torch.isfinite(background).all()
    assert (background - plain).abs().max() > 1e-3                 # the background mode changes the picture
    pos3, neg3 = node("ColorizeDiffusionSketchLevelStrength", positive=pos2, negative=neg2, level_1=0.0, level_2=0.5)
    c2 = pos2[0][1]["model_conds"]["colorize_diffusion_controls"].cond
    c3 = pos3[0][1]["model_conds"]["colorize_diffusion_controls"].cond
    assert torch.equal(c3[0], torch.zeros_like(c2[0])) and torch.allclose(c3[1], c2[1] * 0.5)
    assert torch.equal(c3[2], c2[2]) and torch.equal(c3[3], c2[3])


def test_xl_reference_without_tagger_is_refused(encoders):
    clip, _ = encoders
    ckpt = _ckpt("sdxl")
    sketch, picture, _, _ = _pictures()
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture)
    with pytest.raises(ColorizerInputError, match="WD tagger tokens"):
        node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer, sketch=_Sketch(sketch),
             reference=reference)


def test_xl_checkpoint_with_the_sd21_clip_is_refused(encoders):
    _, tagger = encoders
    path = GOLDEN / "clip" / "tiny-vit-openclip.safetensors"
    from golden_support.clip_runner import tower_heads

    sd21_clip = load_vision_file(str(path), heads=tower_heads(path) or 0)
    ckpt = _ckpt("sdxl")
    sketch, picture, _, _ = _pictures()
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=sd21_clip, image=picture, tagger=tagger)
    with pytest.raises(ColorizerInputError, match="CLIP vision tokens of width .* do not match the XL checkpoint"):
        node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer, sketch=_Sketch(sketch),
             reference=reference)


def test_a_tagger_of_another_architecture_is_named(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "convnext-tagger.safetensors"
    save_file({"stem.0.weight": torch.zeros(8, 3, 4, 4), "stages.0.blocks.0.conv_dw.weight": torch.zeros(8, 1, 7, 7)},
              str(path))
    with pytest.raises(ColorizerLoadError, match="convnext-tagger.safetensors is a ConvNeXt-style tagger"):
        load_tagger(str(path))
    with pytest.raises(ColorizerLoadError, match="WD tagger file not found"):
        load_tagger(str(tmp_path / "missing.safetensors"))


def test_xlv2_split_without_background_is_refused(encoders):
    clip, tagger = encoders
    ckpt = _ckpt("xlv2")
    sketch, picture, mask, _ = _pictures()
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture, tagger=tagger)
    model, pos, neg, _ = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                              sketch=_Sketch(sketch), reference=reference)
    pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=mask)
    with pytest.raises(ColorizerInputError, match="needs a foreground encoder"):
        node("ColorizeDiffusionGuider", model=model, positive=pos, negative=neg)


def test_xlv2_background_at_a_size_the_official_code_cannot_run(encoders):
    """(H/32)·(W/32) not a multiple of 4 (here 160x96: 5·3 = 15) crashes the official xlv2 background mode."""
    clip, tagger = encoders
    ckpt = _ckpt("xlv2")
    sketch = -torch.ones(1, 3, 160, 96)
    sketch[..., 30:130, 20:70] = 1.0
    mask = torch.zeros(1, 160, 96)
    mask[:, 20:140, 16:80] = 1.0
    _, picture, _, rmask = _pictures()
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture, tagger=tagger)
    model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                   sketch=_Sketch(sketch), reference=reference)
    pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=mask,
                    foreground_enhance=False)
    pos, neg = node("ColorizeDiffusionBackgroundEncoder", positive=pos, negative=neg, vae=ckpt.vae, clip_vision=clip,
                    tagger=tagger, reference_mask=rmask)
    out = _sample(model, pos, neg, latent, steps=1)
    assert out.shape == (1, 4, 20, 12) and torch.isfinite(out).all()
    assert math.isfinite(float(out.abs().mean()))


def test_sd21_checkpoint_with_the_bigg_tower_is_refused(encoders):
    """The SD2.1 families take ViT-H tokens: a reference encoded with the (tiny) bigG tower names both sides."""
    clip, tagger = encoders
    ckpt = load_checkpoint(str(ROOT.parent / "golden" / "models" / "v2-tiny.safetensors"), dtype=torch.float32)
    sketch, picture, _, _ = _pictures()
    (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture, tagger=tagger)
    with pytest.raises(ColorizerInputError, match=r"CLIP vision width/projection 96 does not match the checkpoint's "
                                                  r"context dim 128.*clip_vision_h"):
        node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer, sketch=_Sketch(sketch),
             reference=reference)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_xlv2_background_runs_in_half_precision(dtype, encoders):
    """The UNet, sketch encoder, projection and ReferenceNet in half precision (as the official app runs them):
    no dtype clash anywhere on the way (RoPE in float64, RMSNorm in float32, banks cast to the attention's dtype),
    a finite result close to the fp32 one."""
    clip, tagger = encoders
    name = "models/xlv2-tiny.safetensors"
    results = {}
    for dt in (torch.float32, dtype):
        ckpt = load_checkpoint(str(ROOT / name), dtype=dt, heads=head_sizes(ROOT, name))
        sketch, picture, mask, rmask = _pictures()
        (reference,) = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture, tagger=tagger)
        model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                       sketch=_Sketch(sketch), reference=reference)
        pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=mask,
                        foreground_enhance=False)
        pos, neg = node("ColorizeDiffusionBackgroundEncoder", positive=pos, negative=neg, vae=ckpt.vae,
                        clip_vision=clip, tagger=tagger, reference_mask=rmask)
        results[dt] = _sample(model, pos, neg, latent, steps=1)
    half, full = results[dtype].float(), results[torch.float32]
    assert torch.isfinite(half).all()
    rel = ((half - full).pow(2).mean() / full.pow(2).mean()).sqrt().item()
    assert rel < (0.05 if dtype == torch.float16 else 0.2), f"{dtype}: relative RMS {rel:.3g} against fp32"
