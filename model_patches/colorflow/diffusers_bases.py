"""Base models from a diffusers-layout folder (what ColorFlow's app downloads: PixArt-alpha/PixArt-XL-2-1024-MS,
stable-diffusion-v1-5) as ComfyUI's own models, of any size the folder's config.json describes:

    transformer/  PixArtTransformer2DModel  -> ComfyUI's PixArt-alpha model (MODEL)
    unet/         UNet2DConditionModel      -> ComfyUI's SD1.5 model (MODEL)
    text_encoder/ T5EncoderModel            -> ComfyUI's PixArt T5 text encoder (CLIP)
    vae/          AutoencoderKL             -> ComfyUI's VAE

The weights move to ComfyUI's key names through ComfyUI's own maps (`unet_to_diffusers`, `pixart_to_diffusers`,
`convert_vae_state_dict`); every key must be used. ComfyUI's loaders recognise the released sizes only; this reads
the sizes from config.json, so a folder of another size (the golden set's tiny bases) loads too.
"""
from __future__ import annotations

import json
import os

import torch

from ...comfy_compat import reloadable_unet_patcher
from ...errors import ColorizerLoadError
from ...weight_files import read_state_dict
from ..common.vae import build_vae

WEIGHTS = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
           "pytorch_model.bin")
T5_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}     # transformers' tanh GELU, in ComfyUI's T5 naming


def _read(folder: str) -> tuple[dict, dict]:
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise ColorizerLoadError(f"{folder} has no config.json (a diffusers model folder)")
    weights = next((os.path.join(folder, f) for f in WEIGHTS if os.path.isfile(os.path.join(folder, f))), None)
    if weights is None:
        raise ColorizerLoadError(f"{folder} has no weights ({', '.join(WEIGHTS)})")
    return json.loads(open(config_path, encoding="utf-8").read()), read_state_dict(weights, "diffusers weights")


def _move(sd: dict, mapping: dict, own: dict, what: str, optional=()) -> dict:
    """`sd` (diffusers keys) to ComfyUI keys; a target (key, (dim, offset, size)) is a slice of a fused weight,
    which is assembled from its slices (the model's own tensor may not exist yet: current ComfyUI creates Linear
    weights when they are loaded)."""
    moved, fused = {}, {}
    for key, target in mapping.items():
        if key not in sd:
            continue
        if isinstance(target, tuple):
            name, (dim, offset, size) = target
            fused.setdefault(name, []).append((offset, dim, size, sd[key]))
        else:
            moved[target] = sd[key]
    for name, parts in fused.items():
        parts.sort(key=lambda p: p[0])
        if [p[0] for p in parts] != [sum(q[2] for q in parts[:i]) for i in range(len(parts))]:
            raise ColorizerLoadError(f"{what}: the slices of {name} do not cover it")
        moved[name] = torch.cat([p[3] for p in parts], dim=parts[0][1])
    unread = sorted(k for k in sd if k not in mapping)
    missing = sorted(k for k in own if k not in moved and not k.endswith(optional))
    if unread or missing:
        raise ColorizerLoadError(f"{what}: keys read by nothing {unread[:3]}, missing {missing[:3]}")
    return moved


def load_model_folder(folder: str, dtype=torch.float32):
    """transformer/ or unet/ of a diffusers folder -> a ComfyUI ModelPatcher (that can load it again)."""
    return reloadable_unet_patcher(build_model_folder, folder, dtype)


def build_model_folder(folder: str, dtype):
    """The ComfyUI model of transformer/ or unet/ of a diffusers folder."""
    config, sd = _read(folder)
    kind = config.get("_class_name")
    if kind == "UNet2DConditionModel":
        return _sd15(config, sd, dtype, folder)
    if kind == "PixArtTransformer2DModel":
        return _pixart(config, sd, dtype, folder)
    raise ColorizerLoadError(f"{folder}: a {kind}; this loader reads PixArt-alpha transformers and SD1.5 UNets")


def _sd15(config: dict, sd: dict, dtype, folder: str):
    import comfy.model_base
    import comfy.supported_models
    import comfy.utils

    ch = list(config["block_out_channels"])
    attn = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    layers = int(config["layers_per_block"])
    heads = config.get("num_attention_heads") or config["attention_head_dim"]
    unet_config = {
        "use_checkpoint": False, "image_size": 32, "out_channels": config["out_channels"],
        "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
        "in_channels": config["in_channels"], "model_channels": ch[0], "num_res_blocks": [layers] * len(ch),
        "transformer_depth": [int(a) for a in attn for _ in range(layers)], "channel_mult": [c // ch[0] for c in ch],
        "transformer_depth_middle": 1, "use_linear_in_transformer": bool(config.get("use_linear_projection")),
        "context_dim": config["cross_attention_dim"], "num_heads": heads if isinstance(heads, int) else heads[0],
        "num_head_channels": -1, "transformer_depth_output": [int(a) for a in attn for _ in range(layers + 1)],
        "use_temporal_attention": False, "use_temporal_resblock": False}
    model_config = comfy.supported_models.SD15(unet_config)
    model_config.set_inference_dtype(dtype, None)
    model = comfy.model_base.BaseModel(model_config, model_type=comfy.model_base.ModelType.EPS)
    own = model.diffusion_model.state_dict()
    moved = _move(sd, comfy.utils.unet_to_diffusers(unet_config), own, f"{folder} (SD UNet)")
    model.diffusion_model.load_state_dict(moved, strict=True)
    return model


def _pixart(config: dict, sd: dict, dtype, folder: str):
    import comfy.model_base
    import comfy.supported_models
    import comfy.utils

    hidden = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    unet_config = {"image_model": "pixart_alpha", "num_heads": config["num_attention_heads"],
                   "patch_size": config["patch_size"], "hidden_size": hidden, "in_channels": config["in_channels"],
                   "depth": config["num_layers"], "model_max_length": 120,
                   "caption_channels": config["caption_channels"], "micro_condition": True,
                   "pred_sigma": int(config.get("out_channels") or 0) == 2 * int(config["in_channels"])}
    model_config = comfy.supported_models.PixArtAlpha(unet_config)
    model_config.set_inference_dtype(dtype, None)
    model = comfy.model_base.PixArt(model_config)
    own = model.diffusion_model.state_dict()
    mapping = comfy.utils.pixart_to_diffusers({"depth": config["num_layers"], "hidden_size": hidden})
    # the caption embedder's unconditional embedding is used only when training drops captions
    moved = _move(sd, mapping, own, f"{folder} (PixArt transformer)", optional=("y_embedder.y_embedding",))
    moved.update({k: v for k, v in own.items() if k not in moved})
    model.diffusion_model.load_state_dict(moved, strict=True)
    return model


def load_vae_folder(folder: str):
    import comfy.diffusers_convert

    _, sd = _read(folder)
    return build_vae(comfy.diffusers_convert.convert_vae_state_dict(sd), folder)


def load_t5_folder(folder: str):
    """text_encoder/ (T5EncoderModel) -> ComfyUI's PixArt text encoder (T5 tokenizer, ComfyUI's T5) of the folder's
    size."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.text_encoders.pixart_t5
    import comfy.text_encoders.t5

    config, sd = _read(folder)
    if config.get("model_type") != "t5":
        raise ColorizerLoadError(f"{folder}: a {config.get('model_type')} text encoder; PixArt uses T5")
    config = {**config, "dense_act_fn": T5_ACTIVATIONS.get(config["dense_act_fn"], config["dense_act_fn"])}

    class FolderT5(comfy.text_encoders.pixart_t5.T5XXLModel):     # PixArt's T5 (its empty tokens), this size
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            comfy.sd1_clip.SDClipModel.__init__(
                self, device=device, textmodel_json_config=config, dtype=dtype, special_tokens={"end": 1, "pad": 0},
                model_class=comfy.text_encoders.t5.T5, model_options={**model_options, "model_name": "t5xxl"})

    class FolderPixArtText(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, name="t5xxl", clip_model=FolderT5,
                             model_options=model_options)

    class Target:
        clip = FolderPixArtText
        tokenizer = comfy.text_encoders.pixart_t5.PixArtTokenizer
        params: dict = {}

    clip = comfy.sd.CLIP(Target, parameters=sum(v.numel() for v in sd.values()),
                         model_options={"dtype": torch.float32})
    missing, unexpected = clip.load_sd(sd)
    missing = [k for k in missing if not k.endswith("embed_tokens.weight")]     # tied to shared.weight
    if missing or unexpected:
        raise ColorizerLoadError(f"{folder}: T5 keys missing {missing[:3]}, read by nothing {unexpected[:3]}")
    return clip
