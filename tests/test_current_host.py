"""The pack on current ComfyUI (0.38.x), imitated on the pinned host by tests/host_emulation/.

Loading with lazily built layers, patches that keep the host's key paths under the static and the dynamic
patcher, the attention module's new attributes, the patcher class and reload recipe of core models, multi-GPU
deep clones, and the small API moves (clip_preprocess, encode_image fields, executor cache arguments).
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from safetensors.torch import load_file

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.utils
import host_emulation
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.errors import ColorizerLoadError
from colorize_diffusion.model_patches.colorize_diffusion.split_attention import SplitCrossAttention
from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import StyledOutput, apply_colorizer
from conftest import GOLDEN
from golden_support.colorflow_runner import weights_in_use

MODELS = GOLDEN / "models"
CHECKPOINTS = ["mult-eps-tiny.safetensors", "switch-tiny.safetensors", "v2-tiny.safetensors"]
UNET = "model.diffusion_model."


def _file_tensor_at(loaded, key: str, sd: dict) -> torch.Tensor:
    """The tensor the loaded checkpoint holds for file key `key` (None for keys the loader drops)."""
    if key.startswith(UNET) and ".lora_" in key:
        path, proj, lora, param = key[len(UNET):].rsplit(".", 3)
        kind, branch = lora[len("lora_"):].split("_")
        pair = loaded.colorizer.unet_extras.lora[path.replace(".", "/")].pairs[f"{proj[3:]}_{branch}"]
        return getattr(pair, kind).weight
    if key.startswith(UNET + "warp_modules.") or key.startswith(UNET + "style_modules."):
        return comfy.utils.get_attr(loaded.colorizer.unet_extras, key[len(UNET):])
    if key.startswith(UNET):
        return comfy.utils.get_attr(loaded.model.model.diffusion_model, key[len(UNET):])
    for prefix, name in (("control_encoder.", "sketch_encoder"), ("bg_encoder.", "bg_encoder"),
                         ("style_encoder.", "style_encoder"), ("thresh_embedder.", "threshold_embedder"),
                         ("transformer.", "cluster_transformer")):
        if key.startswith(prefix):
            return comfy.utils.get_attr(getattr(loaded.colorizer.encoders, name), key[len(prefix):])
    return None


@pytest.mark.parametrize("form", ["none", "meta"])
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_every_golden_checkpoint_loads_under_lazy_linear_weights(name, form):
    with host_emulation.lazy_linear(form):
        probe = comfy.ops.manual_cast.Linear(3, 5)
        assert probe.weight is None if form == "none" else probe.weight.is_meta   # the emulation is active
        loaded = load_checkpoint(str(MODELS / name), dtype=torch.float32)
    sd = load_file(str(MODELS / name))
    checked = 0
    for key, tensor in sd.items():
        held = _file_tensor_at(loaded, key, sd)
        if held is None:
            continue
        if held.ndim == 2 and tensor.ndim == 4:     # 1×1-conv projections become Linear weights
            tensor = tensor[:, :, 0, 0]
        assert torch.equal(held, tensor), key
        checked += 1
    assert checked == sum(1 for k in sd if not k.startswith("first_stage_model."))
    for module in (loaded.model.model, loaded.colorizer.unet_extras, loaded.colorizer.encoders):
        assert not any(t.is_meta for t in module.state_dict().values())
        assert all(m.weight is not None for m in module.modules() if isinstance(m, torch.nn.Linear))


def _edited(tmp_path, edit):
    from safetensors.torch import save_file

    sd = load_file(str(MODELS / "v2-tiny.safetensors"))
    edit(sd)
    path = tmp_path / "v2-edited.safetensors"
    save_file(sd, str(path))
    return str(path)


LINEAR_KEY = UNET + "output_blocks.3.1.transformer_blocks.0.attn2.to_q.weight"     # a lazy host Linear
EXTRA_LINEAR_KEY = "bg_encoder.time_embed.2.weight"                                  # a lazy Linear of the pack


@pytest.mark.parametrize("form", ["none", "meta"])
@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.__setitem__(LINEAR_KEY, torch.zeros(3, 7)), "to_q.weight: the SD2.x UNet expects shape"),
    (lambda sd: sd.__setitem__(EXTRA_LINEAR_KEY, torch.zeros(3, 7)), "time_embed.2.weight: the bg_encoder network"),
    (lambda sd: sd.pop(LINEAR_KEY), "lacks 1 key.*to_q.weight"),
    (lambda sd: sd.__setitem__(UNET + "out.2.bias_extra", torch.zeros(4)), "out.2.bias_extra"),
    (lambda sd: sd.__setitem__(LINEAR_KEY.replace(".weight", ".bias"), torch.zeros(64)), "to_q.bias"),
])
def test_lazy_layers_still_get_key_and_shape_errors(tmp_path, form, edit, message):
    """The lazy host loader assigns any tensor with no shape check: the pack's own check names the key."""
    path = _edited(tmp_path, edit)
    with host_emulation.lazy_linear(form), pytest.raises(ColorizerLoadError, match=message):
        load_checkpoint(path, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ key paths

@pytest.fixture
def v2_static():
    return load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)


def _unet_out(patcher, x, t, context):
    comfy.model_management.load_models_gpu([patcher])
    with torch.no_grad():
        return patcher.model.diffusion_model(x, t, context=context).clone()


def test_object_patches_keep_the_hosts_key_paths(v2_static):
    patched = apply_colorizer(v2_static.model, v2_static.colorizer)
    patched.patch_model(load_weights=False)
    try:
        keys = {k for k, _ in patched.model.diffusion_model.named_parameters()}
        assert isinstance(patched.model.diffusion_model.out, StyledOutput)
        assert isinstance(patched.model.diffusion_model.output_blocks[3][1].transformer_blocks[0].attn2,
                          SplitCrossAttention)
    finally:
        patched.unpatch_model()
    original = {k for k, _ in v2_static.model.model.diffusion_model.named_parameters()}
    assert keys == original


@pytest.mark.parametrize("key", ["diffusion_model.out.2.weight", "diffusion_model.out.0.bias",
                                 "diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"])
@pytest.mark.parametrize("patcher", ["static", "dynamic"])
def test_weight_patches_reach_patched_modules(key, patcher):
    """A LoRA-style weight patch on a module the colorizer wraps takes effect (it was silently dropped when the
    wrapper renamed `out.0/out.2`)."""
    with host_emulation.emulate() if patcher == "dynamic" else contextlib.nullcontext():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32,
                             disable_dynamic=patcher == "static")
        assert getattr(v2.model, "is_dynamic", lambda: False)() == (patcher == "dynamic")
        original = comfy.utils.get_attr(v2.model.model, key).detach().clone()
        patched = apply_colorizer(v2.model, v2.colorizer)
        delta = torch.full_like(original, 0.25)
        patched.add_patches({key: (delta,)}, 1.0)
        comfy.model_management.load_models_gpu([patched])
        assert torch.allclose(weights_in_use(patched.model)[key], original + delta)
        comfy.model_management.load_models_gpu([v2.model])
        assert torch.equal(weights_in_use(v2.model.model)[key], original)
        comfy.model_management.unload_all_models()


def test_switching_between_patched_and_plain_clones_under_the_dynamic_patcher():
    """The dynamic patcher restores the previous load's backups by key path when the next clone loads: a plain
    clone loading after a patched one (and back) finds every path and the original weights."""
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        g = torch.Generator().manual_seed(0)
        x, t, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([500.0]), torch.randn(1, 3, 128, generator=g)
        plain_before = _unet_out(v2.model, x, t, ctx)
        patched = apply_colorizer(v2.model, v2.colorizer)
        for _ in range(2):
            comfy.model_management.load_models_gpu([patched])
            assert isinstance(patched.model.diffusion_model.out, StyledOutput)
            assert patched.backup, "the emulated dynamic patcher kept no backups"
            plain_again = _unet_out(v2.model, x, t, ctx)
            assert not isinstance(v2.model.model.diffusion_model.out, StyledOutput)
            assert torch.equal(plain_again, plain_before)
        comfy.model_management.unload_all_models()


# ------------------------------------------------------------------------------------------ attention

def test_split_attention_carries_the_host_modules_children_and_attributes():
    with host_emulation.comfy_attention():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        patched = apply_colorizer(v2.model, v2.colorizer)
    for name, obj in patched.object_patches.items():
        if not isinstance(obj, SplitCrossAttention):
            continue
        host = comfy.utils.get_attr(v2.model.model, name)
        assert dict(obj.named_children()) == dict(host.named_children())
        assert obj.comfy_attention is host.comfy_attention
        for attr in ("heads", "dim_head", "attn_precision"):
            assert getattr(obj, attr) == getattr(host, attr)


def test_split_attention_honours_the_hosts_preferred_attention():
    """Current ComfyUI lets a checkpoint choose the attention function of a layer (`comfy_attention.function`);
    the colorizer's attention goes through it like the host's own."""
    import golden_support.unet_runner as unet_runner
    from golden_support.discovery import discover_cases
    from golden_support.model_eval import guided_step

    case_dir = next(c for c in discover_cases() if c.name == "B_v2_full_b2_16x24")
    case, inputs, _ = case_dir.load()
    with host_emulation.emulate():
        from comfy.ldm.modules import attention

        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        model = apply_colorizer(v2.model, v2.colorizer)
        conds = unet_runner._conds(case, inputs, v2.colorizer)
        sigma = [case["timesteps"][0]["comfy_sigma"]]
        base, _, _ = guided_step(model, *conds, inputs["x_t"], sigma, 1.0, 1.0, "v")
        calls = []

        def chosen(q, k, v, heads, **kwargs):
            calls.append(q.shape)
            return attention.attention_basic(q, k, v, heads, **kwargs)

        for _, obj in model.object_patches.items():
            if isinstance(obj, SplitCrossAttention):
                obj.comfy_attention.function = chosen
        try:
            rec, _, _ = guided_step(model, *conds, inputs["x_t"], sigma, 1.0, 1.0, "v")
        finally:
            for _, obj in model.object_patches.items():
                if isinstance(obj, SplitCrossAttention):
                    obj.comfy_attention.function = None
    assert len(calls) >= 16
    assert torch.allclose(rec.calls[0][0], base.calls[0][0], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ patchers

def test_core_patcher_class_and_reload_recipe():
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        patchers = (v2.model, v2.colorizer.unet_extras_patcher, v2.colorizer.encoders_patcher)
        assert all(p.is_dynamic() for p in patchers)
        for index, p in enumerate(patchers):
            function, args, which = p.cached_patcher_init
            assert which == index
            fresh = function(*args, disable_dynamic=True)[which]
            assert type(fresh) is comfy.model_patcher.ModelPatcher
            assert fresh.model is not p.model
            mine, theirs = p.model.state_dict(), fresh.model.state_dict()
            assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    if not host_emulation.session_emulated():    # the pinned host has neither
        plain = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        assert type(plain.model) is comfy.model_patcher.ModelPatcher
        assert not hasattr(plain.model, "cached_patcher_init")


def _golden_v2_case():
    from golden_support.discovery import discover_cases

    return next(c for c in discover_cases() if c.name == "B_v2_full_b2_16x24").load()


def _computes_with_its_own_weights(original, clone, colorizer, case, inputs, expected, own_networks=True):
    """`clone`'s patches sit on its own UNet (and networks, where `own_networks`), and it matches the golden case
    with the original's weights overwritten with NaN."""
    import golden_support.unet_runner as unet_runner
    from golden_support.model_eval import guided_step

    assert clone.model is not original.model
    extras = clone.get_additional_models_with_key("colorize_diffusion")[0].model
    for name, obj in clone.object_patches.items():
        if isinstance(obj, SplitCrossAttention):
            assert obj.to_q is comfy.utils.get_attr(clone.model, name).to_q
            assert all(lora is None or any(lora is m for m in extras.modules()) for lora in obj._lora)
        if isinstance(obj, StyledOutput):
            assert obj[2] is clone.model.diffusion_model.out[2]
            assert any(obj._style[0] is m for m in extras.modules())
    conds = unet_runner._conds(case, inputs, colorizer)
    sigma = [case["timesteps"][0]["comfy_sigma"]]
    for module in (original.model, colorizer.unet_extras) if own_networks else (original.model,):
        for key, p in list(module.named_parameters()):    # the clone must not read the original's weights: poison
            comfy.utils.set_attr_param(module, key, torch.full_like(p, float("nan")))   # (not in place: read-only)
    rec, _, _ = guided_step(clone, *conds, inputs["x_t"], sigma, 1.0, 1.0, "v")
    got, want = rec.calls[0][0], expected["out"]
    assert torch.isfinite(got).all()
    assert (got - want).abs().max() / want.pow(2).mean().sqrt() < case["tolerance"]["rtol_rms"]


def test_multigpu_deep_clone_computes_with_its_own_weights():
    """A deep clone gets a fresh UNet and fresh colorizer networks; its patches must use those, not the
    original's, and give the same result."""
    case, inputs, expected = _golden_v2_case()
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        model = apply_colorizer(v2.model, v2.colorizer)
        clone = model.deepclone_multigpu()
        assert clone.get_additional_models_with_key("colorize_diffusion")[0].model is not v2.colorizer.unet_extras
        _computes_with_its_own_weights(model, clone, v2.colorizer, case, inputs, expected)


def test_multigpu_clones_keep_their_own_weights_after_clone_matching():
    """`match_multigpu_clones` (every sampling, and the MultiGPU node) rebuilds each per-GPU clone from the main
    patcher's object patches: the pack re-targets them again onto the clone's own modules."""
    case, inputs, expected = _golden_v2_case()
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        model = apply_colorizer(v2.model, v2.colorizer).clone()     # what the MultiGPU node does
        device_clone = model.deepclone_multigpu(new_load_device=model.load_device)
        device_clone.is_multigpu_base_clone = True
        model.set_additional_models("multigpu", [device_clone])
        model.match_multigpu_clones()
        model.match_multigpu_clones()
        matched = model.get_additional_models_with_key("multigpu")[0]
        assert matched is not device_clone and matched.model is device_clone.model
        _computes_with_its_own_weights(model, matched, v2.colorizer, case, inputs, expected)


def test_hooked_conditioning_samples_on_a_delegate_with_its_own_weights():
    """With dynamic VRAM, a cond carrying hooks makes `CFGGuider.inner_set_conds` switch to
    `get_non_dynamic_delegate()`: a plain patcher on a model rebuilt from the reload recipe. The pack's patches
    follow it onto that model."""
    import comfy.hooks
    from colorize_diffusion.model_patches.colorize_diffusion.guidance import guider

    case, inputs, expected = _golden_v2_case()
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        model = apply_colorizer(v2.model, v2.colorizer)
        assert model.is_dynamic()
        hooked = [[torch.zeros(1, 3, 128), {"hooks": comfy.hooks.HookGroup()}]]
        g = guider(model, hooked, hooked, None, 1.0, 1.0)
        delegate = g.model_patcher
        assert delegate is not model and not delegate.is_dynamic()
        assert delegate.get_additional_models_with_key("colorize_diffusion")[0].model is v2.colorizer.unet_extras
        _computes_with_its_own_weights(model, delegate, v2.colorizer, case, inputs, expected, own_networks=False)


def test_a_delegate_needs_a_reload_recipe():
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        v2.model.cached_patcher_init = None
        with pytest.raises(RuntimeError, match="Cannot create non-dynamic delegate"):
            v2.model.get_non_dynamic_delegate()


# ------------------------------------------------------------------------------------------ small moves

def test_openclip_encode_image_on_a_host_without_the_old_clip_preprocess(monkeypatch):
    import comfy.clip_vision
    from colorize_diffusion.model_patches.common import clip_vision

    clip = clip_vision.load_openclip_vision(str(GOLDEN / "clip" / "tiny-vit-openclip.safetensors"), heads=4)
    image = torch.rand(2, 40, 56, 3, generator=torch.Generator().manual_seed(3))
    before = clip.encode_image(image)
    with host_emulation.emulate():
        monkeypatch.delattr(comfy.clip_vision, "clip_preprocess")
        after = clip.encode_image(image)
    assert torch.equal(before["last_hidden_state"], after["last_hidden_state"])
    assert [tuple(s) for s in after["image_sizes"]] == [(3, clip.image_size, clip.image_size)] * 2


def test_in_process_executor_gets_every_cache_argument():
    from colorize_diffusion.devtools.executor import Runner

    with host_emulation.executor_reads_ram_inactive():
        runner = Runner()
    assert runner.executor is not None


def test_a_missing_vae_answers_attribute_probes_like_an_object_without_them(tmp_path, caplog):
    """The RAM-pressure cache (0.38's default) probes `getattr(output, "patcher", None)` on cached outputs: the
    stand-in VAE of a checkpoint without one must answer "no such attribute", not log a traceback and get the
    loader's MODEL and COLORIZER evicted; any real use still says what to do."""
    from safetensors.torch import save_file

    from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import MissingVAE

    sd = {k: v for k, v in load_file(str(MODELS / "v2-tiny.safetensors")).items()
          if not k.startswith("first_stage_model.")}
    save_file(sd, str(tmp_path / "novae.safetensors"))
    loaded = load_checkpoint(str(tmp_path / "novae.safetensors"), dtype=torch.float32)
    assert isinstance(loaded.vae, MissingVAE)
    assert getattr(loaded.vae, "patcher", None) is None and not hasattr(loaded.vae, "get_models")
    usage, failed = host_emulation.ram_release_sizing([[loaded.model], [loaded.colorizer], [loaded.vae]],
                                                      old_generation=False)
    assert not failed and "Could not size" not in caplog.text
    with host_emulation.emulate():      # the prompt's model tracker probes the same attributes, with no try
        host_emulation.PromptModelTracker().add([[loaded.model], [loaded.colorizer], [loaded.vae]])
    with pytest.raises(ColorizerLoadError, match="contains no VAE.*Load VAE"):
        loaded.vae.decode(torch.zeros(1, 4, 8, 8))


def test_the_colorizers_networks_are_visible_to_the_hosts_memory_accounting():
    """0.38's prompt model tracker follows ModelPatcher outputs, `.patcher` and `get_models()`: the COLORIZER's
    UNet extras and encoders are tracked with the MODEL."""
    with host_emulation.emulate():
        v2 = load_checkpoint(str(MODELS / "v2-tiny.safetensors"), dtype=torch.float32)
        tracker = host_emulation.PromptModelTracker()
        tracker.add({0: [v2.model], 1: [v2.colorizer]})
    tracked = set(map(id, tracker.models.values()))
    assert tracked == {id(v2.model), id(v2.colorizer.unet_extras_patcher), id(v2.colorizer.encoders_patcher)}


def test_an_fp32_clip_vision_tower_is_staged_in_fp32_under_dynamic_vram():
    """The fp32 option of the CLIP-vision loaders: with dynamic VRAM, a lazy layer built in the host's text-encoder
    dtype (fp16) would still be staged in fp16 (`weight_comfy_model_dtype`) after `.to(float32)`."""
    from colorize_diffusion.model_patches.common import clip_vision

    sd = load_file(str(GOLDEN / "clip" / "tiny-vit-openclip.safetensors"))
    pixels = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))
    want = clip_vision.build_comfy_clip_vision(dict(sd), heads=4, dtype=torch.float32).encode_image(pixels)
    with host_emulation.emulate():
        cv = clip_vision.build_comfy_clip_vision(dict(sd), heads=4, dtype=torch.float32)
        assert cv.patcher.is_dynamic()
        comfy.model_management.load_models_gpu([cv.patcher])
        assert any(getattr(m, "weight_function", None) for m in cv.model.modules()), "nothing staged"
        for m in cv.model.modules():
            for name in ("weight", "bias"):
                if getattr(m, name, None) is not None and hasattr(m, f"{name}_comfy_model_dtype"):
                    assert getattr(m, f"{name}_comfy_model_dtype") == torch.float32, m
        got = cv.encode_image(pixels)
        comfy.model_management.unload_all_models()
    assert torch.equal(got["last_hidden_state"], want["last_hidden_state"])


def test_an_extra_network_runs_the_same_through_the_dynamic_patcher():
    """The one extra-network path on 0.38: the text tower's patcher is the host's dynamic one, and the network
    ComfyUI's model management hands back encodes as the plain module does."""
    from colorize_diffusion.model_patches.colorize_diffusion import manipulation
    from colorize_diffusion.model_patches.common import extra_networks
    from colorize_diffusion.weight_files import read_state_dict

    path = str(GOLDEN / "clip" / "tiny-openclip-full.safetensors")
    want = manipulation.load_text_tower(read_state_dict(path), heads=4).encode(["a red dress", "blue sky"])
    extra_networks.clear()
    try:
        with host_emulation.emulate():
            tower = manipulation.load_text_tower_file(path, heads=4)
            assert tower.is_dynamic()
            got = extra_networks.loaded(tower, full=True).encode(["a red dress", "blue sky"])
            comfy.model_management.unload_all_models()
    finally:
        extra_networks.clear()
    assert (got.cpu() - want).abs().max() < 1e-6, (got.cpu() - want).abs().max()      # fp32 both ways
