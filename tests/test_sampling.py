"""A loaded tiny model samples through the real ComfyUI samplers, with the extra networks managed by ComfyUI."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import comfy.model_management
import comfy.sample
import comfy.samplers
from colorize_diffusion.model_patches.common import clip_vision
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.model_patches.colorize_diffusion.split_attention import SplitCrossAttention
from colorize_diffusion.preprocess.sketch import PreparedSketch
from chain_support import chain, node
from conftest import GOLDEN


class PoolingVAE:
    """A deterministic stand-in for a VAE encoder: 8×8 average pooling of the pixels, 4 channels."""

    def encode(self, pixels):
        x = pixels.movedim(-1, 1)
        z = F.avg_pool2d(x, 8)
        return torch.cat([z, z.mean(1, keepdim=True)], dim=1)


@pytest.fixture(scope="module")
def v2():
    return load_checkpoint(str(GOLDEN / "models" / "v2-tiny.safetensors"), dtype=torch.float32)


@pytest.fixture(scope="module")
def clip():
    return clip_vision.load_openclip_vision(str(GOLDEN / "clip" / "tiny-vit-openclip.safetensors"), heads=4)


def _sketch(h=64, w=96):
    g = torch.Generator().manual_seed(1)
    s = -torch.ones(1, 3, h, w)
    s[:, :, h // 4:h // 4 + 2, :] = 1.0
    s[:, :, :, w // 3:w // 3 + 2] = 1.0
    s += 0.01 * torch.randn(s.shape, generator=g)
    return PreparedSketch(s, (0, 0, w, h), ("keep",))


def _reference(clip, seed):
    g = torch.Generator().manual_seed(seed)
    return node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=torch.rand(1, 80, 60, 3, generator=g))[0]


def _condition(v2, clip, reference, mode="full"):
    h, w = 64, 96
    mask = torch.zeros(1, h, w)
    mask[:, :, : w // 2] = 1.0
    return chain(v2, _sketch(h, w), reference, mode, vae=PoolingVAE(), clip_vision=clip, sketch_mask=mask,
                 reference_mask=torch.zeros(1, *reference.image.shape[-2:]))


def _ksampler(model, pos, neg, latent, seed=3):
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    return comfy.sample.sample(model, noise, 2, 4.0, "euler", "normal", pos, neg, latent["samples"], seed=seed,
                               disable_pbar=True)


def test_two_ksampler_steps_and_extras_loaded_with_unet(v2, clip):
    model, pos, neg, latent = _condition(v2, clip, _reference(clip, 0))
    out = _ksampler(model, pos, neg, latent)
    assert out.shape == latent["samples"].shape and torch.isfinite(out).all()
    loaded = [lm.model.model for lm in comfy.model_management.current_loaded_models]
    assert any(m is v2.colorizer.unet_extras for m in loaded), "the UNet extras were not loaded with the UNet"
    assert any(m is v2.model.model for m in loaded)
    # deterministic, and the reference matters
    assert torch.equal(out, _ksampler(model, pos, neg, latent))
    model2, pos2, neg2, _ = _condition(v2, clip, _reference(clip, 5))
    assert (out - _ksampler(model2, pos2, neg2, latent)).abs().max() > 1e-4


def test_given_model_is_untouched_and_patches_are_gone_after_sampling(v2, clip):
    before = dict(v2.model.object_patches)
    model, pos, neg, latent = _condition(v2, clip, _reference(clip, 0))
    assert v2.model.object_patches == before and model is not v2.model
    _ksampler(model, pos, neg, latent)
    dm = v2.model.model.diffusion_model
    assert isinstance(dm.output_blocks[3][1].transformer_blocks[0].attn2, SplitCrossAttention)  # while loaded
    comfy.model_management.unload_all_models()
    attn2 = dm.output_blocks[3][1].transformer_blocks[0].attn2
    assert not isinstance(attn2, SplitCrossAttention)
    assert type(v2.model.model.diffusion_model.out).__name__ == "Sequential"
    clone = model.clone()   # patch objects are shared, not deep-copied with their modules
    key = "diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2"
    assert clone.object_patches[key] is model.object_patches[key]


def test_dual_guider_through_sampler_custom_advanced(v2, clip):
    model, pos, neg, latent = _condition(v2, clip, _reference(clip, 0))
    guider = node("ColorizeDiffusionGuider", model=model, positive=pos, negative=neg, reference_scale=4.0,
                  sketch_scale=2.0)[0]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 2)
    noise = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(0))
    out = guider.sample(noise, latent["samples"], comfy.samplers.sampler_object("euler"), sigmas, seed=0,
                        disable_pbar=True)
    assert torch.isfinite(out).all()
    only_ref = node("ColorizeDiffusionGuider", model=model, positive=pos, negative=neg, reference_scale=4.0,
                    sketch_scale=1.0)[0]
    out_ref = only_ref.sample(noise, latent["samples"], comfy.samplers.sampler_object("euler"), sigmas, seed=0,
                              disable_pbar=True)
    assert (out - out_ref).abs().max() > 1e-4   # the sketch scale acts


def test_model_without_colorizer_conditioning_says_what_to_connect(v2, clip):
    model, pos, neg, latent = _condition(v2, clip, _reference(clip, 0))
    plain = [[torch.zeros(1, 256, 128), {}]]
    with pytest.raises(Exception, match="ColorizeDiffusion Apply Sketch"):
        _ksampler(model, plain, plain, latent)
