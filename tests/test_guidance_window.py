"""The guidance window: outside it every pass sees a zero reference context (official: one zero token, v1 only)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from chain_support import node
from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.model_patches.common.clip_vision import load_openclip_vision
from colorize_diffusion.model_patches.colorize_diffusion.conditioning import sketch_unconditional
from colorize_diffusion.model_patches.colorize_diffusion.settings import GuidanceWindow
from colorize_diffusion.preprocess.sketch import PreparedSketch
from conftest import GOLDEN
from golden_support.model_eval import guided_step

H, W = 32, 48
SIGMA = 1.0     # one evaluation at the UNet timestep of this sigma


@pytest.fixture(scope="module")
def setup():
    ckpt = {f: load_checkpoint(str(GOLDEN / "models" / name), dtype=torch.float32)
            for f, name in (("v1", "mult-eps-tiny.safetensors"), ("v2", "v2-tiny.safetensors"))}
    clip = load_openclip_vision(str(GOLDEN / "clip" / "tiny-vit-openclip.safetensors"), heads=4)
    g = torch.Generator().manual_seed(3)
    reference = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=torch.rand(1, 40, 30, 3, generator=g))[0]
    sketch = -torch.ones(1, 3, H, W)
    sketch[:, :, 10:12, :] = 1
    x = torch.randn(1, 4, H // 8, W // 8, generator=g)
    return ckpt, PreparedSketch(sketch, (0, 0, W, H), ("keep",)), reference, x


def _progress_of_sigma(model, sigma: float) -> float:
    t = float(model.get_model_object("model_sampling").timestep(torch.tensor([sigma]))[0])
    return 1 - t / 999


def _evaluate(model, pos, neg, x, ref_scale=4.0):
    _, guided, _ = guided_step(model, pos, neg, sketch_unconditional(pos), x, [SIGMA], ref_scale, 1.0, "eps")
    return guided[0]


def _window(pos, neg, **kw):
    return node("ColorizeDiffusionGuidanceWindow", positive=pos, negative=neg, **kw)


def test_v1_window_zeroes_the_reference_exactly_where_it_is_off(setup):
    ckpt, sketch, reference, x = setup
    v1 = ckpt["v1"]
    model, pos, neg, _ = node("ColorizeDiffusionApplySketch", model=v1.model, colorizer=v1.colorizer, sketch=sketch,
                              reference=reference)
    plain = _evaluate(model, pos, neg, x)
    tr = _progress_of_sigma(model, SIGMA)
    inside = _evaluate(model, *_window(pos, neg, start=max(0.0, tr - 0.1), end=min(1.0, tr + 0.1)), x)
    assert torch.equal(inside, plain)
    before_start = _evaluate(model, *_window(pos, neg, start=min(1.0, tr + 0.05)), x)
    in_no_guidance = _evaluate(model, *_window(pos, neg, no_guidance_start=max(0.0, tr - 0.05),
                                               no_guidance_end=min(1.0, tr + 0.05)), x)
    assert torch.equal(before_start, in_no_guidance)
    assert (before_start - plain).abs().max() > 1e-3
    # off = the reference-unconditional prediction for every pass: guidance then changes nothing
    off_scale_1 = _evaluate(model, *_window(pos, neg, start=min(1.0, tr + 0.05)), x, ref_scale=1.0)
    assert torch.allclose(before_start, off_scale_1, atol=1e-5)
    zero = [[torch.zeros_like(pos[0][0]), dict(pos[0][1])]]
    assert torch.allclose(before_start, _evaluate(model, zero, neg, x, ref_scale=1.0), atol=1e-5)


def test_the_official_families_rule_and_bad_windows_are_refused(setup):
    ckpt, sketch, reference, x = setup
    v2 = ckpt["v2"]
    _, pos, neg, _ = node("ColorizeDiffusionApplySketch", model=v2.model, colorizer=v2.colorizer, sketch=sketch,
                          reference=reference)
    with pytest.raises(ColorizerInputError, match="official v2 app ignores the guidance window"):
        _window(pos, neg, start=0.5)
    with pytest.raises(ColorizerInputError, match="end 0.2 is before the start 0.5"):
        _window(pos, neg, start=0.5, end=0.2, all_families=True)
    assert _window(pos, neg, start=0.5, all_families=True)[0][0][1]["colorize_diffusion_prompt"].window.start == 0.5


def test_with_split_attention_each_half_gets_the_zero_context(setup):
    """The official code crashes here (one zero token cannot be halved); the pack gives each half a zero token,
    which equals zeroing the whole two-half context."""
    ckpt, sketch, reference, x = setup
    v2 = ckpt["v2"]
    mask = torch.zeros(1, H, W)
    mask[..., : W // 2] = 1
    model, pos, neg, _ = node("ColorizeDiffusionApplySketch", model=v2.model, colorizer=v2.colorizer, sketch=sketch,
                              reference=reference)
    pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=mask)
    tr = _progress_of_sigma(model, SIGMA)
    off = _evaluate(model, *_window(pos, neg, start=min(1.0, tr + 0.05), all_families=True), x, ref_scale=1.0)
    zero = [[torch.zeros_like(pos[0][0]), dict(pos[0][1])]]
    assert torch.allclose(off, _evaluate(model, zero, neg, x, ref_scale=1.0), atol=1e-5)
    assert (off - _evaluate(model, pos, neg, x, ref_scale=1.0)).abs().max() > 1e-4


def test_window_progress_follows_the_official_formula():
    w = GuidanceWindow(start=0.2, end=0.8, no_start=0.4, no_end=0.5)
    assert w.off_at(999) and not w.off_at(999 * 0.7) and w.off_at(999 * 0.55) and w.off_at(0)
    assert not dataclasses.replace(w, no_start=-0.05, no_end=-0.05).off_at(999 * 0.55)
