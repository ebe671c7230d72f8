"""The golden set's tiny ColorFlow bases (diffusers layout, sizes no released model has) as ComfyUI models: the
SD1.5 UNet as ComfyUI's SD15 model and the PixArt transformer as ComfyUI's PixArt-alpha model, the weights moved to
ComfyUI's key names with ComfyUI's own maps. Users load the released bases with ComfyUI's loaders instead."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def _patcher(model):
    import comfy.model_management
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                           offload_device=comfy.model_management.unet_offload_device())


def _load(model, sd: dict, mapping: dict, what: str) -> None:
    """`sd` (diffusers keys) into `model.diffusion_model` through `mapping` (diffusers -> ComfyUI key): every key
    of both sides used."""
    own = model.diffusion_model.state_dict()
    moved = {mapping[k]: v for k, v in sd.items() if k in mapping}
    unread = sorted(set(sd) - set(mapping))
    missing = sorted(set(own) - set(moved))
    assert not unread and not missing, f"{what}: unread {unread[:5]}, missing {missing[:5]}"
    model.diffusion_model.load_state_dict(moved, strict=True)


def sd15(root: Path):
    import comfy.model_base
    import comfy.supported_models
    import comfy.utils

    folder = Path(root) / "models" / "sd15_base" / "unet"
    cfg = json.loads((folder / "config.json").read_text())
    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    ch = list(cfg["block_out_channels"])
    attn = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
    layers = int(cfg["layers_per_block"])
    unet_config = {
        "use_checkpoint": False, "image_size": 32, "out_channels": cfg["out_channels"], "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "in_channels": cfg["in_channels"], "model_channels": ch[0],
        "num_res_blocks": [layers] * len(ch), "transformer_depth": [int(a) for a in attn for _ in range(layers)],
        "channel_mult": [c // ch[0] for c in ch], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
        "context_dim": cfg["cross_attention_dim"], "num_heads": cfg["attention_head_dim"], "num_head_channels": -1,
        "transformer_depth_output": [int(a) for a in attn for _ in range(layers + 1)],
        "use_temporal_attention": False, "use_temporal_resblock": False}
    model_config = comfy.supported_models.SD15(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.BaseModel(model_config, model_type=comfy.model_base.ModelType.EPS)
    mapping = {k: v for k, v in comfy.utils.unet_to_diffusers(unet_config).items()}
    _load(model, sd, mapping, "tiny SD1.5 UNet")
    return _patcher(model)


def pixart(root: Path):
    import comfy.model_base
    import comfy.supported_models
    import comfy.utils

    folder = Path(root) / "models" / "pixart_base" / "transformer"
    cfg = json.loads((folder / "config.json").read_text())
    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    unet_config = {"image_model": "pixart_alpha", "num_heads": cfg["num_attention_heads"],
                   "patch_size": cfg["patch_size"], "hidden_size": cfg["num_attention_heads"] * cfg["attention_head_dim"],
                   "in_channels": cfg["in_channels"], "depth": cfg["num_layers"], "model_max_length": 120,
                   "caption_channels": cfg["caption_channels"], "micro_condition": True}
    model_config = comfy.supported_models.PixArtAlpha(unet_config)
    model_config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.PixArt(model_config)
    mapping = comfy.utils.pixart_to_diffusers({"depth": cfg["num_layers"], "hidden_size": unet_config["hidden_size"]})
    own = model.diffusion_model.state_dict()
    moved = {}
    for key, target in mapping.items():
        if key not in sd:
            continue
        if isinstance(target, tuple):            # a slice of a fused weight (qkv, kv)
            name, (dim, offset, size) = target
            moved.setdefault(name, torch.zeros_like(own[name])).narrow(dim, offset, size).copy_(sd[key])
        else:
            moved[target] = sd[key]
    unread = sorted(k for k in sd if k not in mapping)
    # the caption embedder's unconditional embedding is only used when training drops captions
    missing = sorted(k for k in own if k not in moved and not k.endswith("y_embedder.y_embedding"))
    assert not unread and not missing, f"tiny PixArt transformer: unread {unread[:5]}, missing {missing[:5]}"
    moved.update({k: v for k, v in own.items() if k not in moved})
    model.diffusion_model.load_state_dict(moved, strict=True)
    return _patcher(model)
