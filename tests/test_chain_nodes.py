"""The chainable nodes: wiring order, family rules, early errors, several samples per sketch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import comfy.sample
from chain_support import chain, node
from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError
from colorize_diffusion.model_patches.colorize_diffusion import modes
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.model_patches.common.clip_vision import load_openclip_vision
from colorize_diffusion.model_patches.colorize_diffusion.step_data import COND_PREFIX
from colorize_diffusion.nodes.loader_nodes import output_used
from colorize_diffusion.preprocess.sketch import PreparedSketch
from conftest import GOLDEN

H, W = 64, 96
TINY = {"v1": "mult-eps-tiny.safetensors", "v1.5": "switch-tiny.safetensors", "v2": "v2-tiny.safetensors"}


class PoolingVAE:
    def encode(self, pixels):
        z = F.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.cat([z, z.mean(1, keepdim=True)], dim=1)


@pytest.fixture(scope="module")
def clip():
    return load_openclip_vision(str(GOLDEN / "clip" / "tiny-vit-openclip.safetensors"), heads=4)


@pytest.fixture(scope="module")
def ckpts():
    return {f: load_checkpoint(str(GOLDEN / "models" / name), dtype=torch.float32)
            for f, name in TINY.items()}


def _sketch(batch=1):
    g = torch.Generator().manual_seed(1)
    s = -torch.ones(batch, 3, H, W)
    s[:, :, H // 4:H // 4 + 2, :] = 1.0
    s[:, :, :, W // 3:W // 3 + 2] = 1.0
    s += 0.05 * torch.randn(s.shape, generator=g)
    return PreparedSketch(s, (0, 0, W, H), ("keep",) * batch)


def _reference(clip, seed=0, size=(80, 60)):
    g = torch.Generator().manual_seed(seed)
    return node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=torch.rand(1, *size, 3, generator=g))[0]


def _mask():
    m = torch.zeros(1, H, W)
    m[:, :, : W // 2] = 1.0
    return m


def _ref_mask(reference):
    m = torch.zeros(1, *reference.image.shape[-2:])
    m[:, 10:40, 10:40] = 1.0
    return m


def _tensors(cond) -> dict:
    """Every tensor a conditioning hands the UNet, by name."""
    context, options = cond[0]
    out = {"context": context}
    for key, value in options["model_conds"].items():
        c = value.cond
        if isinstance(c, list):
            out.update({f"{key}.{i}": t for i, t in enumerate(c)})
        elif isinstance(c, torch.Tensor):
            out[key] = c
        else:
            out[key] = c
    return out


def _assert_same(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        if isinstance(ta[k], torch.Tensor):
            assert torch.equal(ta[k], tb[k]), k
        else:
            assert ta[k] == tb[k], k


def _split(pos, neg, **kw):
    return node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=_mask(), **kw)


def _background(pos, neg, clip, reference, **kw):
    return node("ColorizeDiffusionBackgroundEncoder", positive=pos, negative=neg, vae=PoolingVAE(),
                clip_vision=clip, reference_mask=_ref_mask(reference), **kw)


def _style(pos, neg, **kw):
    return node("ColorizeDiffusionStyleEncoder", positive=pos, negative=neg, vae=PoolingVAE(), **kw)


def _start(ckpt, reference, **kw):
    return node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer, sketch=_sketch(),
                reference=reference, **kw)


@pytest.mark.parametrize("family", ["v1.5", "v2"])
def test_wiring_order_does_not_change_the_conditioning(ckpts, clip, family):
    ckpt, ref = ckpts[family], _reference(clip)
    _, pos, neg, _ = _start(ckpt, ref)
    a = _split(*_background(pos, neg, clip, ref), threshold=0.3, merge_scale=0.2)
    b = _background(*_split(pos, neg, threshold=0.3, merge_scale=0.2), clip, ref)
    if family == "v2":
        a = _style(*a)
        b = _split(*_background(*_style(pos, neg), clip, ref), threshold=0.3, merge_scale=0.2)
    for x, y in zip(a, b):
        _assert_same(x, y)
    settings = _tensors(a[0])[COND_PREFIX + "settings"]
    assert settings.split and settings.threshold == 0.3 and settings.bg_lora and not settings.unfinished


def test_each_node_changes_what_it_owns(ckpts, clip):
    ckpt, ref = ckpts["v2"], _reference(clip)
    _, pos, neg, _ = _start(ckpt, ref)
    plain = _tensors(pos)
    assert plain["context"].shape[1] == ref.tokens.shape[1] and COND_PREFIX + "mask" not in plain
    spos, sneg = _split(pos, neg)
    split = _tensors(spos)
    assert split["context"].shape[1] == 2 * ref.tokens.shape[1]            # (foreground, background) halves
    assert split[COND_PREFIX + "mask"].shape == (1, 1, H // 8, W // 8)
    assert torch.equal(_tensors(sneg)["context"], torch.zeros_like(split["context"]))   # reference-unconditional
    bpos, _ = _background(spos, sneg, clip, ref)
    assert len([k for k in _tensors(bpos) if k.startswith(COND_PREFIX + "hs_bg.")]) == 12
    stpos, _ = _style(pos, neg)
    assert len([k for k in _tensors(stpos) if k.startswith(COND_PREFIX + "style.")]) == 12
    strong = node("ColorizeDiffusionReferenceStrength", positive=pos, negative=neg, reference_strength=0.5)[0]
    assert _tensors(strong)[COND_PREFIX + "settings"].reference_scales[0] == 0.5
    blocks = node("ColorizeDiffusionBlockReferenceStrength", positive=pos, negative=neg, block_1=0.25,
                  official_slider_shift=True)[0]
    assert _tensors(blocks)[COND_PREFIX + "settings"].reference_scales[:2] == (0.25, 1.0)


@pytest.mark.parametrize("family", ["v1", "v1.5"])
def test_style_encoder_on_a_family_without_one_names_family_and_node(ckpts, clip, family):
    _, pos, neg, _ = _start(ckpts[family], _reference(clip))
    with pytest.raises(ColorizerInputError, match=rf"Style Encoder needs a ColorizeDiffusion v2 checkpoint; this "
                                                   rf"one is {family}"):
        _style(pos, neg)


@pytest.mark.parametrize("family, wiring, message", [
    ("v2", "background", "Background Encoder needs ColorizeDiffusion Split Attention"),
    ("v1", "split", r"has no effect with a v1 \(mult\) checkpoint"),
    ("v1.5", "split without foreground", "foreground_enhance off needs ColorizeDiffusion Background Encoder"),
])
def test_unrunnable_wirings_stop_at_the_guider_and_before_the_first_step(ckpts, clip, family, wiring, message):
    ckpt, ref = ckpts[family], _reference(clip)
    model, pos, neg, latent = _start(ckpt, ref)
    if wiring == "background":
        pos, neg = _background(pos, neg, clip, ref)
    else:
        pos, neg = _split(pos, neg, foreground_enhance=wiring == "split")
    with pytest.raises(ColorizerInputError, match=message):
        node("ColorizeDiffusionGuider", model=model, positive=pos, negative=neg)
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    with pytest.raises(ColorizerInputError, match=message):          # KSampler: the first UNet call says it
        comfy.sample.sample(model, noise, 1, 4.0, "euler", "normal", pos, neg, latent["samples"], disable_pbar=True)


def test_chain_inputs_must_be_a_pair_from_the_chain(ckpts, clip):
    _, pos, neg, _ = _start(ckpts["v2"], _reference(clip))
    with pytest.raises(ColorizerInputError, match="swapped"):
        _split(neg, pos)
    text = [[torch.zeros(1, 77, 1024), {}]]
    with pytest.raises(ColorizerInputError, match="must come from ColorizeDiffusion Apply Sketch"):
        _style(text, neg)
    _, pos2, neg2, _ = _start(ckpts["v2"], _reference(clip, 3))
    with pytest.raises(ColorizerInputError, match="different chains"):
        _split(pos, neg2)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_a_blank_sketch_mask_is_refused_where_it_enters(ckpts, clip, fill):
    _, pos, neg, _ = _start(ckpts["v2"], _reference(clip))
    with pytest.raises(ColorizerInputError, match="sketch mask is blank.*Load Image's MASK is empty"):
        node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=torch.full((1, H, W), fill))
    with pytest.raises(ColorizerInputError, match="make the mask from the prepared sketch"):
        node("ColorizeDiffusionSplitAttention", positive=pos, negative=neg, sketch_mask=torch.ones(1, 64, 64))


def test_samples_per_sketch_repeats_each_sketch_and_keeps_rows_identical(ckpts, clip):
    ckpt, ref = ckpts["v2"], _reference(clip)
    one = chain(ckpt, _sketch(), ref, "full", vae=PoolingVAE(), clip_vision=clip, sketch_mask=_mask(),
                reference_mask=_ref_mask(ref))
    three = chain(ckpt, _sketch(), ref, "full", vae=PoolingVAE(), clip_vision=clip, sketch_mask=_mask(),
                  reference_mask=_ref_mask(ref), samples_per_sketch=3)
    assert three[3]["samples"].shape[0] == 3
    t1, t3 = _tensors(one[1]), _tensors(three[1])
    for k, v in t1.items():
        if isinstance(v, torch.Tensor):
            assert t3[k].shape[0] == 3, k
            for row in range(3):
                assert torch.allclose(t3[k][row], v[0], atol=1e-5 * (1 + float(v.abs().max()))), k
    # several sketches: each sketch's rows stay together
    _, pos, _, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                             sketch=_sketch(2), reference=ref, samples_per_sketch=2)
    assert latent["samples"].shape[0] == 4
    controls = _tensors(pos)[COND_PREFIX + "controls.0"]
    assert torch.equal(controls[0], controls[1]) and torch.equal(controls[2], controls[3])


def test_loader_refuses_a_missing_vae_only_when_its_output_is_used():
    prompt = {"1": {"class_type": "ColorizeDiffusionCheckpointLoader", "inputs": {}},
              "2": {"class_type": "VAEDecode", "inputs": {"vae": ["1", 2], "samples": ["5", 0]}}}
    assert output_used(prompt, "1", 2)
    assert not output_used(prompt, "1", 1) and not output_used(prompt, "2", 2) and not output_used(None, "1", 2)


def test_checkpoint_without_vae_fails_at_the_loader(tmp_path, monkeypatch):
    import folder_paths
    from safetensors.torch import load_file, save_file

    from colorize_diffusion.model_folders import CHECKPOINTS
    from colorize_diffusion.nodes.loader_nodes import CheckpointLoader

    sd = {k: v for k, v in load_file(str(GOLDEN / "models" / TINY["v1"])).items()
          if not k.startswith("first_stage_model.")}
    save_file(sd, str(tmp_path / "novae-eps.safetensors"))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, CHECKPOINTS,
                        ([str(tmp_path)], folder_paths.supported_pt_extensions))
    prompt = {"7": {"class_type": "ColorizeDiffusionCheckpointLoader", "inputs": {"ckpt_name": "novae-eps.safetensors"}},
              "8": {"class_type": "VAEDecode", "inputs": {"vae": ["7", 2], "samples": ["9", 0]}}}
    used = CheckpointLoader.PREPARE_CLASS_CLONE({"PROMPT": prompt, "UNIQUE_ID": "7"})
    with pytest.raises(ColorizerLoadError, match="contains no VAE.*Load VAE"):
        used.execute("novae-eps.safetensors")
    unused = CheckpointLoader.PREPARE_CLASS_CLONE({"PROMPT": {"7": prompt["7"]}, "UNIQUE_ID": "7"})
    assert unused.execute("novae-eps.safetensors")[1].family == "v1"


def test_a_tiny_sketch_is_refused_before_anything_runs():
    with pytest.raises(ColorizerInputError, match="sketch is 10x10 pixels and would be enlarged to 512x512"):
        node("ColorizeDiffusionPrepareSketch", image=torch.rand(1, 10, 10, 3))
    with pytest.raises(ColorizerInputError, match="every pixel as transparent"):
        node("ColorizeDiffusionPrepareSketch", image=torch.rand(1, 64, 64, 3), transparency_mask=torch.ones(1, 64, 64))


def test_every_official_mode_is_a_runnable_wiring_of_the_nodes():
    for family in ("v1", "v1.5", "v2"):
        for mode in modes.OFFICIAL_MODES:
            parts = modes.official_mode(mode, family)
            problem = modes.unfinished(family, parts)
            if family == "v1" and mode == "foreground enhance" or family != "v2" and mode == "style enhance":
                assert problem, (family, mode)
            else:
                assert problem == "", (family, mode)
                assert parts.name == mode or mode == "full" and family == "v1", (family, mode)   # v1 full = BG


def test_a_latent_smaller_than_the_prepared_batch_is_refused_before_the_first_step(ckpts, clip):
    ckpt = ckpts["v2"]
    model, pos, neg, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model, colorizer=ckpt.colorizer,
                                   sketch=_sketch(), reference=_reference(clip), samples_per_sketch=3)
    one = latent["samples"][:1]
    with pytest.raises(ColorizerInputError, match="holds 1 pictures, but Apply Sketch prepared 3"):
        comfy.sample.sample(model, comfy.sample.prepare_noise(one, 0), 1, 4.0, "euler", "normal", pos, neg, one,
                            disable_pbar=True)
    out = comfy.sample.sample(model, comfy.sample.prepare_noise(latent["samples"], 0), 1, 4.0, "euler", "normal",
                              pos, neg, latent["samples"], disable_pbar=True)
    assert out.shape[0] == 3
