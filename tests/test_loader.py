"""Loading official-layout checkpoints: family, prediction type, every key consumed, clear errors."""
from __future__ import annotations

import ast
import csv
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from colorize_diffusion.model_patches.colorize_diffusion import checkpoint
from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
from colorize_diffusion.errors import ColorizerLoadError
from conftest import GOLDEN
from host_emulation import host_layers

MODELS = GOLDEN / "models"
TINY = {"mult-eps-tiny.safetensors": ("v1", "eps"), "switch-tiny.safetensors": ("v1.5", "v"),
        "v2-tiny.safetensors": ("v2", "v")}


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_checkpoint_loads_with_family_and_prediction(name):
    family, prediction = TINY[name]
    loaded = load_checkpoint(str(MODELS / name))
    assert (loaded.family, loaded.prediction) == (family, prediction)
    assert loaded.colorizer.family == family
    model_type = loaded.model.model.model_type.name
    assert model_type == ("EPS" if prediction == "eps" else "V_PREDICTION")
    # every tensor of the file now lives in exactly one module (nothing read by nobody, nothing left on meta)
    file_sd = load_file(str(MODELS / name))
    held = sum(p.numel() for p in loaded.model.model.diffusion_model.state_dict().values())
    held += sum(p.numel() for p in loaded.colorizer.unet_extras.state_dict().values())
    held += sum(p.numel() for p in loaded.colorizer.encoders.state_dict().values())
    assert held == sum(t.numel() for t in file_sd.values())
    for module in (loaded.model.model, loaded.colorizer.unet_extras, loaded.colorizer.encoders):
        assert not any(p.is_meta for p in module.state_dict().values())
    assert (loaded.colorizer.encoders.bg_encoder is not None) == (family == "v2")
    assert (loaded.colorizer.encoders.cluster_transformer is not None) == (family == "v1.5")


def test_weights_are_the_files_values():
    loaded = load_checkpoint(str(MODELS / "v2-tiny.safetensors"))
    sd = load_file(str(MODELS / "v2-tiny.safetensors"))
    unet = loaded.model.model.diffusion_model.state_dict()
    k = "input_blocks.1.1.proj_in.weight"
    assert torch.equal(unet[k], sd[f"model.diffusion_model.{k}"][:, :, 0, 0])
    lora = loaded.colorizer.unet_extras.lora["output_blocks/3/1/transformer_blocks/0/attn2"]
    assert torch.equal(lora.pairs["k_bg"].up.weight,
                       sd["model.diffusion_model.output_blocks.3.1.transformer_blocks.0.attn2.to_k.lora_up_bg.weight"])


def test_prediction_override_and_name_rule(tmp_path):
    src = MODELS / "switch-tiny.safetensors"
    eps_named = tmp_path / "switch-eps-copy.safetensors"
    eps_named.symlink_to(src)
    assert load_checkpoint(str(eps_named)).prediction == "eps"
    assert load_checkpoint(str(eps_named), prediction="v").prediction == "v"
    with pytest.raises(ColorizerLoadError, match="auto, eps or v"):
        load_checkpoint(str(src), prediction="x0")


def test_unused_key_is_an_error(tmp_path):
    sd = load_file(str(MODELS / "mult-eps-tiny.safetensors"))
    sd["model.diffusion_model.mystery_module.weight"] = torch.zeros(3)
    path = tmp_path / "mult-extra.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ColorizerLoadError, match="mystery_module"):
        load_checkpoint(str(path))


def test_ddpm_buffers_and_clip_keys_are_accepted(tmp_path):
    sd = load_file(str(MODELS / "mult-eps-tiny.safetensors"))
    sd["alphas_cumprod"] = torch.ones(1000)
    sd["cond_stage_model.visual.proj"] = torch.zeros(4, 4)
    path = tmp_path / "mult-eps-buffers.safetensors"
    save_file(sd, str(path))
    assert load_checkpoint(str(path)).family == "v1"


# ------------------------------------------------------------------------------------------ manifests
def _manifest(name):
    with open(GOLDEN / "manifests" / f"{name}.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["key"]: torch.empty(ast.literal_eval(r["shape"]), dtype=getattr(torch, r["dtype"]), device="meta")
            for r in rows}


@pytest.mark.parametrize("layers", ["eager", "lazy", "lazy-meta"])
@pytest.mark.parametrize("name,family", [("mult", "v1"), ("switch", "v1.5"), ("v2", "v2")])
def test_full_size_manifest_every_key_consumed_on_meta(name, family, layers):
    """Also with the host's Linear layers built lazily, as current ComfyUI does (tests/host_emulation/)."""
    with host_layers(layers):
        _full_size_manifest_every_key_consumed_on_meta(name, family)


def _full_size_manifest_every_key_consumed_on_meta(name, family):
    from colorize_diffusion.model_patches.colorize_diffusion.detection import DDPM_BUFFERS, detect_family
    from colorize_diffusion.model_patches.colorize_diffusion.networks.common import take_prefix

    sd = _manifest(name)
    assert detect_family(sd) == family
    for k in [k for k in sd if k in DDPM_BUFFERS]:
        del sd[k]
    vae = take_prefix(sd, "first_stage_model.")
    extras, encoders = checkpoint.build_networks(sd, family, dtype=torch.float32, device="meta")
    unet_sd = take_prefix(sd, "model.diffusion_model.")
    assert not sd, f"keys read by nothing: {sorted(sd)[:5]}"
    checkpoint.squeeze_conv_projections(unet_sd)
    model = checkpoint.build_unet_model(unet_sd, "v", dtype=torch.float32, device="meta")
    dm = model.diffusion_model
    assert dm.model_channels == 320 and dm.input_blocks[1][1].transformer_blocks[0].attn2.to_k.weight.shape[1] == 1024
    assert len(dm.input_blocks[1][1].transformer_blocks[0].attn2.to_q.weight) == 320
    _check_vae_keys(vae)


def _check_vae_keys(vae_sd):
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    own = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert own == {k: tuple(v.shape) for k, v in vae_sd.items()}


# ------------------------------------------------------------------------------------------ bad files
def _sd_unet(ctx, channels=64, linear=True, xl=False):
    k = "model.diffusion_model.input_blocks.1.1."
    sd = {f"{k}transformer_blocks.0.attn2.to_k.weight": torch.zeros(channels, ctx),
          f"{k}proj_in.weight": torch.zeros(channels, channels) if linear else torch.zeros(channels, channels, 1, 1),
          "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(channels, 4, 3, 3),
          "first_stage_model.encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}
    if xl:
        sd["model.diffusion_model.label_emb.0.0.weight"] = torch.zeros(channels, 2816)
        sd["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.zeros(1, 77)
    return sd


@pytest.mark.parametrize("sd_factory,message", [
    (lambda: _sd_unet(768), "Stable Diffusion 1.x"),
    (lambda: _sd_unet(1024), "plain Stable Diffusion 2.x"),
    (lambda: _sd_unet(2048, xl=True), "this is an SDXL base checkpoint"),
    (lambda: {**_sd_unet(2048, xl=True), "control_encoder.model.0.weight": torch.zeros(16, 3, 3, 3)},
     "incomplete ColorizeDiffusion XL checkpoint"),
    (lambda: {"weights": torch.randn(10, 10)}, "not a ColorizeDiffusion checkpoint"),
])
def test_foreign_checkpoints_are_named(tmp_path, sd_factory, message):
    path = tmp_path / "some-model.safetensors"
    save_file(sd_factory(), str(path))
    with pytest.raises(ColorizerLoadError, match=message) as err:
        load_checkpoint(str(path))
    assert "this node loads ColorizeDiffusion v1 (mult), v1.5 (switch), v2 (SD2.1 based) and XL (sdxl, xlv2)" \
        in str(err.value)


def test_truncated_and_missing_files(tmp_path):
    data = (MODELS / "mult-eps-tiny.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ColorizerLoadError, match="not a readable safetensors file"):
        load_checkpoint(str(cut))
    with pytest.raises(ColorizerLoadError, match="not found"):
        load_checkpoint(str(tmp_path / "absent.safetensors"))


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pickle_code_ran"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": _Exploit(marker)}}, f)
    with pytest.raises(ColorizerLoadError, match="refused"):
        load_checkpoint(str(path))
    assert not marker.exists(), "the pickle's code ran"


def test_weights_only_pickle_loads(tmp_path):
    sd = load_file(str(MODELS / "mult-eps-tiny.safetensors"))
    path = tmp_path / "mult-eps-tiny.ckpt"
    torch.save({"state_dict": sd}, str(path))
    assert load_checkpoint(str(path)).family == "v1"


# ------------------------------------------------------------------------------------------ XL
XL_MANIFESTS = GOLDEN.parent / "golden_xl" / "manifests"


def _xl_manifest(name):
    path = XL_MANIFESTS / f"{name}.tsv"
    assert path.is_file(), f"no manifest {path}"
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["key"]: torch.empty(ast.literal_eval(r["shape"]), dtype=getattr(torch, r["dtype"]), device="meta")
            for r in rows}


@pytest.mark.parametrize("layers", ["eager", "lazy"])
@pytest.mark.parametrize("family", ["sdxl", "xlv2"])
def test_full_size_xl_manifest_every_key_consumed_on_meta(family, layers):
    """The released XL layout (built from the official configs): every key read, the released sizes."""
    from colorize_diffusion.model_patches.colorize_diffusion.detection import detect_family

    sd = _xl_manifest(family)
    assert detect_family(sd) == family
    with host_layers(layers):
        model, extras, encoders, vae_sd, context = checkpoint.split_networks(sd, family, "v", dtype=torch.float32,
                                                                             device="meta")
    assert not sd and context == 2048
    dm = model.diffusion_model
    assert dm.model_channels == 320 and dm.label_emb[0][0].in_features == 512
    blocks = [m for m in dm.modules() if type(m).__name__ == "BasicTransformerBlock"]
    assert len(blocks) == 70 and blocks[0].attn2.heads == 10          # 640 channels / 64
    assert encoders.sketch_encoder.attn_layer.heads == 10               # 1280 / 128
    assert encoders.reference_projection.heads == 10 and encoders.reference_projection.tagger_dim == 1024
    assert (encoders.reference_net is not None) == (family == "xlv2")
    assert len(extras.lora) == (70 if family == "xlv2" else 0)
    if family == "xlv2":
        decoder = [m for m in encoders.reference_net.output_blocks.modules()
                   if type(m).__name__ == "BasicTransformerBlock"]
        assert len(decoder) == 36 and encoders.reference_net.label_emb[0][0].in_features == 1024
    _check_vae_keys(vae_sd)


def test_full_size_xl_encoders_from_their_manifests():
    """clip_vision_g: the config read from the shapes is ComfyUI's ViT-bigG one; the WD tagger: the released
    SwinV2, built by timm on meta, takes exactly the manifest's keys and shapes."""
    from colorize_diffusion.model_patches.common import clip_vision
    from colorize_diffusion.model_patches.colorize_diffusion.networks import wd_tagger

    cfg = clip_vision.hf_vision_config(_xl_manifest("clip_vision_g"))
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"],
            cfg["projection_dim"], cfg["image_size"], cfg["patch_size"]) == (1664, 48, 16, 8192, 1280, 224, 14)
    sd = _xl_manifest("wd_swinv2_tagger")
    arch = wd_tagger.architecture(sd)
    assert arch == {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "num_classes": 9083,
                    "patch_size": 4}
    with torch.device("meta"):
        tagger = wd_tagger.WDTagger(arch)
    own = {k: tuple(v.shape) for k, v in tagger.model.state_dict().items()}
    assert own == {k: tuple(v.shape) for k, v in sd.items()}


def test_checkpoint_list_leaves_out_the_extra_network_folders(tmp_path, monkeypatch):
    """The tagger's and the preprocessors' folders inside models/colorizediffusion/ hold no checkpoints: their files
    are not in the checkpoint loader's list (the loader's own list is what the frontend shows)."""
    import folder_paths

    from colorize_diffusion import model_folders
    from colorize_diffusion.nodes.loader_nodes import CheckpointLoader

    root = tmp_path / "colorizediffusion"
    for rel in ("v2-full.safetensors", "more/sdxl.safetensors", "tagger/wd.safetensors",
                "preprocessors/isnetis.safetensors"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    st = {".safetensors"}
    monkeypatch.setitem(folder_paths.folder_names_and_paths, model_folders.CHECKPOINTS, ([str(root)], st))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, model_folders.TAGGERS, ([str(root / "tagger")], st))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, model_folders.PREPROCESSORS,
                        ([str(root / "preprocessors")], st))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    assert sorted(folder_paths.get_filename_list(model_folders.CHECKPOINTS)) == [
        "more/sdxl.safetensors", "preprocessors/isnetis.safetensors", "tagger/wd.safetensors", "v2-full.safetensors"]
    assert sorted(model_folders.checkpoint_names()) == ["more/sdxl.safetensors", "v2-full.safetensors"]
    options = CheckpointLoader.define_schema().inputs[0].options
    assert sorted(options) == ["more/sdxl.safetensors", "v2-full.safetensors"]
