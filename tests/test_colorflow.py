"""ColorFlow's colorizers through the pack's nodes with the golden set's tiny models (../shared/golden_colorflow):
the whole SD1.5 and PixArt chains sample, the guider and the LoRA change the result, pages come in batches, the
super-resolution keeps the page's size, and bad input gets one clear message."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError

from chain_support import node
from shared_data import GOLDEN_COLORFLOW

ROOT = GOLDEN_COLORFLOW


@pytest.fixture(scope="module", autouse=True)
def folders():
    import folder_paths

    folder_paths.add_model_folder_path("colorflow", str(ROOT / "models" / "colorflow"))
    folder_paths.add_model_folder_path("diffusers", str(ROOT / "models"))


def _canvas(b=1, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    canvas = torch.rand((b, size, size, 3), generator=g)
    mask = torch.zeros((1, size, size))
    q = size // 4
    mask[:, q:3 * q, q:3 * q] = 1.0
    return canvas, mask


def _sample(model, pos, neg, latent, colorflow, cfg, steps=3, seed=0):
    """ColorFlow Sampling's sampler and sigmas with ComfyUI's CFG guider, as SamplerCustomAdvanced runs them."""
    import comfy.samplers
    import comfy.sample

    sampler, sigmas = node("ColorizeDiffusionColorFlowSampling", colorflow=colorflow, steps=steps)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(cfg)
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, seed)
    return guider.sample(noise, samples, sampler, sigmas, seed=seed, disable_pbar=True)


def _text(clip, prompt):
    return clip.encode_from_tokens_scheduled(clip.tokenize(prompt))


@pytest.fixture(scope="module")
def pixart_base():
    return node("ColorizeDiffusionLoadDiffusersBase", folder="pixart_base")


def test_pixart_chain_samples_and_the_guider_and_lora_matter(pixart_base):
    model, clip, vae = pixart_base
    (colorflow,) = node("ColorizeDiffusionLoadColorFlow", colorizer="sketch")
    assert colorflow.family == "pixart"
    canvas, mask = _canvas(b=2)
    pos0, neg0 = _text(clip, "manga"), _text(clip, "")
    patched, pos, neg, latent = node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=colorflow,
                                     vae=vae, positive=pos0, negative=neg0, canvas=canvas, mask=mask, seed=1)
    assert latent["samples"].shape == (2, 4, 8, 8)
    assert pos[0][1]["width"] == 64 and pos[0][1]["height"] == 64            # the official micro-conditions
    out = _sample(patched, pos, neg, latent, colorflow, 4.5)
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()
    # a chapter conditions the same base once per page: the LoRA file is read for the first page only
    import colorize_diffusion.model_patches.colorflow.files as files
    reads = []
    original = files.lora_pairs
    files.lora_pairs = lambda path: reads.append(path) or original(path)
    try:
        again = node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=colorflow, vae=vae,
                     positive=pos0, negative=neg0, canvas=canvas[:1], mask=mask, seed=1)
    finally:
        files.lora_pairs = original
    assert reads == [] and again[0].patches.keys() == patched.patches.keys()
    assert not torch.allclose(out[0], out[1]), "two canvases of a batch gave the same latent"
    assert torch.equal(out, _sample(patched, pos, neg, latent, colorflow, 4.5)), "not deterministic"
    weak = node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=colorflow, vae=vae, positive=pos0,
                negative=neg0, canvas=canvas, mask=mask, seed=1, strength=0.0)
    assert (out - _sample(weak[0], weak[1], weak[2], weak[3], colorflow, 4.5)).abs().max() > 1e-3
    # (the base alone cannot run at 64 px: ComfyUI's own PixArt position embedding divides by zero under 256 px)
    assert not model.object_patches and not model.patches, "the given MODEL was changed"
    assert "diffusion_model.forward" in patched.object_patches and patched.patches


def test_sd_chain_samples_with_the_pixart_t5_standing_in_for_clip(pixart_base):
    """The tiny SD1.5 base has no text encoder; the tiny T5 (32-d, like the tiny UNet's context) encodes the
    prompt here."""
    _, clip, vae = pixart_base
    model, _, _ = node("ColorizeDiffusionLoadDiffusersBase", folder="sd15_base")
    (colorflow,) = node("ColorizeDiffusionLoadColorFlow", colorizer="GraySD")
    canvas, mask = _canvas()
    patched, pos, neg, latent = node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=colorflow,
                                     vae=vae, positive=_text(clip, "manga"), negative=_text(clip, ""),
                                     canvas=canvas, mask=mask, seed=3)
    assert pos[0][1]["model_conds"]["colorflow_guide"].cond.shape == (1, 5, 8, 8)
    out = _sample(patched, pos, neg, latent, colorflow, 7.5)
    plain = _sample(model, _text(clip, "manga"), _text(clip, ""), latent, colorflow, 7.5)
    assert torch.isfinite(out).all() and (out - plain).abs().max() > 1e-3
    # an odd latent (72 px: 9 -> 5 -> 3 -> 2 on the way down): the upsamplers still get the skips' sizes
    odd, odd_mask = _canvas(size=72)
    patched, pos, neg, latent = node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=colorflow,
                                     vae=vae, positive=_text(clip, "manga"), negative=_text(clip, ""),
                                     canvas=odd, mask=odd_mask, seed=3)
    assert _sample(patched, pos, neg, latent, colorflow, 7.5).shape == (1, 4, 9, 9)


def test_page_from_canvas_and_super_resolution_keep_the_page_size(pixart_base):
    _, _, vae = pixart_base
    canvas = torch.rand((1, 96, 64, 3))
    (page,) = node("ColorizeDiffusionColorFlowPage", canvas=canvas)
    assert torch.equal(page, canvas[:, 24:72, 16:48])
    (sr,) = node("ColorizeDiffusionLoadColorFlowSuperResolution", folder="sketch")
    original = torch.rand((2, 45, 37, 3))                   # not multiples of 8, a batch of two pages
    (out,) = node("ColorizeDiffusionColorFlowSuperResolution", super_resolution=sr, vae=vae, colours=page,
                  page=original, seed=0)
    assert out.shape == (2, 45, 37, 3) and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], out[1]), "each page must guide its own result"
    (running,) = node("ColorizeDiffusionColorFlowSuperResolution", super_resolution=sr, vae=vae, colours=page,
                      page=original, seed=0, batchnorm="running statistics")
    assert (out - running).abs().max() > 1e-3


def test_bad_input_gets_one_clear_message(pixart_base, tmp_path):
    import folder_paths

    model, clip, vae = pixart_base
    (gray,) = node("ColorizeDiffusionLoadColorFlow", colorizer="GraySD")
    canvas, mask = _canvas()
    args = dict(vae=vae, positive=_text(clip, "manga"), negative=_text(clip, ""), seed=0)
    with pytest.raises(ColorizerInputError, match="GraySD/ colorizer needs Stable Diffusion 1.5 as its base, but "
                                                  "this MODEL is PixArt"):
        node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=gray, canvas=canvas, mask=mask, **args)
    (sketch,) = node("ColorizeDiffusionLoadColorFlow", colorizer="sketch")
    with pytest.raises(ColorizerInputError, match="needs the canvas's mask"):
        node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=sketch, canvas=canvas, mask=None, **args)
    small, small_mask = _canvas(size=20)
    with pytest.raises(ColorizerInputError, match="20x20 pixels: smaller than the latent grid"):
        node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=sketch, canvas=small, mask=small_mask,
             **args)
    with pytest.raises(ColorizerInputError, match="the mask is 32x32 but the canvas 64x64"):
        node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=sketch, canvas=canvas,
             mask=torch.ones(1, 32, 32), **args)

    # a guider without its LoRA; a LoRA for another base
    broken = tmp_path / "flows"
    shutil.copytree(ROOT / "models" / "colorflow" / "sketch", broken / "no_lora")
    (broken / "no_lora" / "transformer_lora.bin").unlink()
    folder_paths.add_model_folder_path("colorflow", str(broken))
    with pytest.raises(ColorizerLoadError, match="has the ColorGuider but not its LoRA transformer_lora.bin"):
        node("ColorizeDiffusionLoadColorFlow", colorizer="no_lora")
    shutil.copytree(ROOT / "models" / "colorflow" / "sketch", broken / "other_lora")
    lora = torch.load(broken / "other_lora" / "transformer_lora.bin", weights_only=True)
    lora["transformer_blocks.9.attn1.to_q.lora_A.default.weight"] = torch.zeros(4, 48)
    lora["transformer_blocks.9.attn1.to_q.lora_B.default.weight"] = torch.zeros(48, 4)
    torch.save(lora, broken / "other_lora" / "transformer_lora.bin")
    (other,) = node("ColorizeDiffusionLoadColorFlow", colorizer="other_lora")
    with pytest.raises(ColorizerLoadError, match="transformer_lora.bin adapts modules this base model does not have: "
                                                 "transformer_blocks.9.attn1.to_q"):
        node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=other, canvas=canvas, mask=mask, **args)
    # a guider weight file with a key nothing reads
    shutil.copytree(ROOT / "models" / "colorflow" / "GraySD", broken / "extra_key")
    from safetensors.torch import load_file, save_file

    path = broken / "extra_key" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(path))
    sd["brushnet_extra.weight"] = torch.zeros(1)
    save_file(sd, str(path))
    with pytest.raises(ColorizerLoadError, match=r"extra_key/diffusion_pytorch_model.safetensors: the file has 1 "
                                                 r"key\(s\) the ColorGuider .*does not take, e.g. \['brushnet_extra"):
        node("ColorizeDiffusionLoadColorFlow", colorizer="extra_key")


@pytest.mark.parametrize("base,colorizer", [("sd15_base", "GraySD"), ("pixart_base", "sketch")])
def test_colorflow_models_can_be_built_again_by_the_host(pixart_base, base, colorizer):
    """Current ComfyUI rebuilds a MODEL and its additional models from their reload recipes for multi-GPU clones
    and for the non-dynamic delegate of hooked conditioning: the diffusers-folder bases and the ColorGuider carry
    one (without it: "cached_patcher_init is not initialized")."""
    import host_emulation

    _, clip, vae = pixart_base       # the tiny T5 stands in for the SD1.5 base's text encoder too
    with host_emulation.emulate():
        model = node("ColorizeDiffusionLoadDiffusersBase", folder=base)[0]
        (colorflow,) = node("ColorizeDiffusionLoadColorFlow", colorizer=colorizer)
        canvas, mask = _canvas()
        patched, *_ = node("ColorizeDiffusionColorFlowConditioning", model=model, colorflow=colorflow, vae=vae,
                           positive=_text(clip, "manga"), negative=_text(clip, ""), canvas=canvas, mask=mask, seed=3)
        clone = patched.deepclone_multigpu()
        assert clone.model is not patched.model
        guider, = [m for ms in patched.additional_models.values() for m in ms if m.model is colorflow.guider_patcher.model]
        cloned = {id(m.model) for ms in clone.additional_models.values() for m in ms}
        assert id(guider.model) not in cloned
        delegate = patched.get_non_dynamic_delegate()
        assert not delegate.is_dynamic() and delegate.model is not patched.model
