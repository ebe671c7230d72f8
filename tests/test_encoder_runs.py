"""The once-per-prompt encoders (sketch encoder, CLIP of the background-only reference, the VAE, v2's background and
style encoders, v1.5's threshold embedder and cluster transformer) run once per prompt, on the distinct pictures
only, whatever the batch (several sketches, several samples per sketch), and never while sampling."""
from __future__ import annotations

import collections

import pytest
import torch

import comfy.sample
from chain_support import node
from test_chain_nodes import H, W, PoolingVAE, _mask, _ref_mask, _reference, _sketch, ckpts, clip  # noqa: F401

ENCODERS = ("sketch_encoder", "bg_encoder", "style_encoder", "threshold_embedder", "cluster_transformer")


class Counter:
    """Wraps a module's forward (or a callable attribute): calls and the rows of their first tensor input."""

    def __init__(self):
        self.calls = collections.Counter()
        self.rows = collections.Counter()
        self._undo = []

    def wrap(self, owner, attr: str, name: str):
        original = getattr(owner, attr)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            self.rows[name] += 0 if first is None else int(first.shape[0])
            return original(*args, **kwargs)

        setattr(owner, attr, counted)      # on the instance: deleting it brings the class's method back
        self._undo.append((owner, attr))

    def restore(self):
        for owner, attr in reversed(self._undo):
            delattr(owner, attr)


@pytest.fixture
def counted(ckpts, clip):
    counter = Counter()
    for ckpt in ckpts.values():
        for name in ENCODERS:
            module = getattr(ckpt.colorizer.encoders, name, None)
            if module is not None:
                counter.wrap(module, "forward", name)
    counter.wrap(clip, "encode_tokens", "clip_vision")
    yield counter
    counter.restore()


def _full_chain(ckpt, clip, counted, sketches: int, samples: int):
    ref = _reference(clip)
    counted.calls.clear(), counted.rows.clear()
    vae = PoolingVAE()
    counted.wrap(vae, "encode", "vae")
    model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                   sketch=_sketch(sketches), reference=ref, samples_per_sketch=samples)
    pos, neg = node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=_mask(),
                    foreground_enhance=True)
    pos, neg = node("ColorizeDiffusionBackgroundEncoder", positive=pos, negative=neg, vae=vae, clip_vision=clip,
                    reference_mask=_ref_mask(ref))
    if ckpt.colorizer.spec.style_encoder:
        pos, neg = node("ColorizeDiffusionStyleEncoder", positive=pos, negative=neg, vae=vae)
    pos, neg = node("ColorizeDiffusionReferenceStrength", positive=pos, negative=neg, reference_strength=0.8)
    return model, pos, neg, latent


@pytest.mark.parametrize("family,sketches,samples", [("v1.5", 1, 1), ("v1.5", 2, 2), ("v2", 1, 3), ("v2", 2, 2)])
def test_encoders_run_once_per_prompt_on_the_distinct_pictures(ckpts, clip, counted, family, sketches, samples):
    ckpt = ckpts[family]
    model, pos, neg, latent = _full_chain(ckpt, clip, counted, sketches, samples)
    assert latent["samples"].shape[0] == sketches * samples
    ran = {k: v for k, v in counted.calls.items() if v}
    expected = {"sketch_encoder", "clip_vision"}       # the background-only reference's CLIP tokens
    expected |= {"threshold_embedder", "cluster_transformer"} if ckpt.colorizer.spec.threshold_context else set()
    expected |= {"bg_encoder", "style_encoder", "vae"} if ckpt.colorizer.spec.style_encoder else set()
    assert set(ran) == expected, ran
    once = {k: 2 if k == "vae" else 1 for k in expected}       # v2: the background and the reference latents
    assert ran == once, f"an encoder ran more than once in one prompt: {ran}"
    # the rows each encoder saw: the distinct pictures (sketch and blank sketch per sketch, one reference)
    assert counted.rows["sketch_encoder"] == 2 * sketches
    for name in ("clip_vision", "bg_encoder", "style_encoder", "cluster_transformer", "vae"):
        if name in ran:
            assert counted.rows[name] == once[name], f"{name} ran over {counted.rows[name]} rows for one reference"

    counted.calls.clear()
    guider = node("ColorizeDiffusionGuider", model=model, positive=pos, negative=neg, reference_scale=2.0,
                  sketch_scale=2.0)[0]
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    sigmas = torch.tensor([14.6, 3.0, 0.0])
    sampler = comfy.samplers.sampler_object("euler")
    out = guider.sample(noise, latent["samples"], sampler, sigmas, seed=0, disable_pbar=True)
    assert out.shape == latent["samples"].shape
    assert not any(counted.calls.values()), f"encoders ran while sampling: {dict(counted.calls)}"
