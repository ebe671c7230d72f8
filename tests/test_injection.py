"""Attention injection beyond the golden F cases: determinism across runs, where it may be applied, its knobs."""
from __future__ import annotations

import pytest
import torch

import golden_support.unet_runner as unet_runner
from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_patches.colorize_diffusion import injection as inj
from golden_support.discovery import discover_cases
from golden_support.model_eval import guided_step, loaded
from conftest import GOLDEN


def _setup(seed=7, start=0.0):
    golden = next(c for c in discover_cases() if c.name == "B_v2_full_b2_16x24")
    case, inputs, _ = golden.load()
    ckpt = loaded(str(GOLDEN / case["checkpoint"]), case["prediction_type"])
    model = unet_runner._apply(ckpt)
    r = torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(1))
    settings = inj.InjectionSettings(reference_fidelity=0.6, sketch_fidelity=0.0, start=start)
    injection = inj.AttentionInjection(r, None, settings, inj.alphas_cumprod(ckpt.model), inj.SeededNoise(seed))
    return case, inputs, ckpt, model, injection


def _sample(model, case, inputs, ckpt):
    conds = unet_runner._conds(case, inputs, ckpt.colorizer)
    _, guided, _ = guided_step(model, *conds, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]], 4.0, 1.0, "v")
    return guided[0]


def test_same_seed_same_picture_on_every_run_and_injection_changes_it():
    case, inputs, ckpt, model, injection = _setup()
    injected = inj.apply_injection(model, injection)
    first = _sample(injected, case, inputs, ckpt)
    second = _sample(injected, case, inputs, ckpt)       # the noise generator starts again at each run
    plain = _sample(model, case, inputs, ckpt)
    assert torch.equal(first, second)
    assert (first - plain).abs().max() > 1e-3
    other = _sample(inj.apply_injection(model, _setup(seed=8)[4]), case, inputs, ckpt)
    assert (other - first).abs().max() > 1e-5


def test_injection_starts_at_its_start_step():
    case, inputs, ckpt, model, injection = _setup(start=0.9)       # t = 701: 1 - 701/999 < 0.9: not yet
    assert not injection.active(torch.tensor([701.0]))
    late = _sample(inj.apply_injection(model, injection), case, inputs, ckpt)
    assert torch.equal(late, _sample(model, case, inputs, ckpt))


def test_injection_needs_a_colorizer_model_and_sane_knobs():
    case, inputs, ckpt, model, injection = _setup()
    with pytest.raises(ColorizerInputError, match="patched by ColorizeDiffusion"):
        inj.apply_injection(ckpt.model, injection)
    with pytest.raises(ColorizerInputError, match="reference fidelity"):
        inj.InjectionSettings(reference_fidelity=1.5).check()
    inj.InjectionSettings(sketch_fidelity=2.0).check()              # the apps' slider: 0..2
    with pytest.raises(ColorizerInputError, match="sketch fidelity must lie in 0..2"):
        inj.InjectionSettings(sketch_fidelity=2.5).check()


def test_injection_node_builds_the_patch_from_the_reference_picture():
    import torch.nn.functional as F

    from colorize_diffusion.nodes.injection_nodes import AttentionInjection

    class PoolingVAE:
        def encode(self, pixels):
            z = F.avg_pool2d(pixels.movedim(-1, 1), 8)
            return torch.cat([z, z.mean(1, keepdim=True)], dim=1)

    case, inputs, ckpt, model, _ = _setup()
    picture = torch.rand(1, 90, 70, 3, generator=torch.Generator().manual_seed(2))
    latent = {"samples": torch.zeros(1, 4, 16, 24)}
    injected = AttentionInjection.execute(model, ckpt.colorizer, PoolingVAE(), picture, latent, 0.5, 0.5, 0.0, 3)[0]
    out = _sample(injected, case, inputs, ckpt)
    assert torch.equal(out, _sample(injected, case, inputs, ckpt))
    assert (out - _sample(model, case, inputs, ckpt)).abs().max() > 1e-3
    with pytest.raises(ColorizerInputError, match="patched by ColorizeDiffusion"):
        AttentionInjection.execute(ckpt.model, ckpt.colorizer, PoolingVAE(), picture, latent, 0.5, 0.0, 0.0, 3)
