"""Loading an official ColorizeDiffusion checkpoint file into a host MODEL, a VAE and a COLORIZER.

The file is read once; every tensor is handed over to the module that uses it (`assign=True`), so the
peak memory stays close to one copy of the weights. Every key must be consumed.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ...comfy_compat import new_model_patcher, set_reload_recipe
from ...errors import ColorizerLoadError
from ...weight_files import load_strict, read_state_dict
from ..common.vae import build_vae
from .colorizer import Colorizer, Encoders, UNetExtras
from .detection import DDPM_BUFFERS, UNET, detect_family, prediction_from_name
from .families import FamilySpec, spec_of
from .networks import (cluster_concat, reference_net, sketch_encoder, split_lora, v15_context, v2_encoders,
                       warp_style, xl_sketch_encoder)
from .networks.common import take_prefix

log = logging.getLogger("ColorizeDiffusion")

IGNORED_PREFIXES = ("cond_stage_model.", "model_ema.")   # CLIP comes from clip_vision; EMA copies are unused
# xlv2's foreground latent input conv: built by the official UNet, never run at inference (no foreground encoder
# is released); accepted and left out.
XL_UNUSED = (f"{UNET}conv_fg.",)


@dataclass(frozen=True)
class HeadSizes:
    """Attention head sizes of the networks, which no tensor shape shows: the released files' values by default
    (the official configs); other values only for re-trained or reduced models."""
    unet: int = 64                 # UNet (and the xlv2 ReferenceNet) num_head_channels
    xl_sketch: int = 128           # XL sketch encoder dim_head (constructor default)
    xl_projection: int = 128       # XL ClusterConcat dim_head

    @staticmethod
    def from_config(config: dict) -> "HeadSizes":
        """From an official inference config (its `model` section, or the whole file) as a dict."""
        params = config.get("model", config).get("params", {})
        get = lambda part, key, default: (params.get(part) or {}).get("params", {}).get(key, default)  # noqa: E731
        return HeadSizes(unet=int(get("unet_config", "num_head_channels", 64)),
                         xl_sketch=int(get("control_encoder_config", "dim_head", 128)),
                         xl_projection=int(get("proj_config", "dim_head", 128)))


def checkpoint_heads(path: str) -> HeadSizes:
    """Head sizes of a checkpoint: from `<file name without extension>.json` next to it (the official inference
    config as JSON, for re-trained or reduced models), else the released values."""
    import json

    side = os.path.splitext(path)[0] + ".json"
    if not os.path.isfile(side):
        return HeadSizes()
    try:
        with open(side, encoding="utf-8") as f:
            return HeadSizes.from_config(json.load(f))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ColorizerLoadError(f"{os.path.basename(side)} next to the checkpoint is not a readable inference "
                                 f"config ({exc}); fix or remove it") from None


@dataclass
class LoadedCheckpoint:
    model: object          # comfy.model_patcher.ModelPatcher
    vae: object            # comfy.sd.VAE, or MissingVAE
    colorizer: Colorizer
    family: str
    prediction: str


class MissingVAEError(ColorizerLoadError, AttributeError):
    """Use of a MissingVAE: a load error for the user, and an AttributeError for attribute probes
    (`getattr(vae, "patcher", None)`, `hasattr`), as any object without that attribute answers."""


class MissingVAE:
    """Stands in for the VAE of a checkpoint that has none; any use says what to do instead."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr):
        raise MissingVAEError(
            f"{self.name} contains no VAE (no first_stage_model.* keys): load one with a 'Load VAE' node "
            "(e.g. the SD2.1 VAE) and connect that instead of this loader's VAE output")


def squeeze_conv_projections(unet_sd: dict) -> None:
    """1×1-conv proj_in/proj_out [C,C,1,1] → ComfyUI's linear layout [C,C] (mathematically identical)."""
    for k in list(unet_sd):
        if (".proj_in.weight" in k or ".proj_out.weight" in k) and unet_sd[k].ndim == 4:
            w = unet_sd[k]
            if tuple(w.shape[2:]) != (1, 1):
                raise ColorizerLoadError(f"{UNET}{k} has shape {list(w.shape)}; expected a 1×1 projection")
            unet_sd[k] = w[:, :, 0, 0]


def resolve_prediction(path: str, prediction: str) -> str:
    if prediction in (None, "", "auto"):
        return prediction_from_name(path)
    if prediction not in ("eps", "v"):
        raise ColorizerLoadError(f"prediction type must be auto, eps or v (got {prediction!r})")
    return prediction


def build_networks(sd: dict, family: FamilySpec | str, *, dtype=None, device=None, operations=None,
                   heads: HeadSizes = HeadSizes(), unet_config: dict | None = None):
    """Pop the family's extra networks out of `sd` (shapes decide every size). Works on meta tensors too."""
    spec = spec_of(family)
    kw = dict(dtype=dtype, device=device, operations=operations)
    lora = split_lora.extract_lora(sd, UNET, **kw)
    if spec.xl:
        sketch = xl_sketch_encoder.build_from_state_dict(sd, head_dim=heads.xl_sketch, **kw)
        projection = cluster_concat.build_from_state_dict(sd, head_dim=heads.xl_projection, **kw)
        ref_net = None
        if spec.reference_net:
            config = dict(unet_config, num_head_channels=heads.unet, num_heads=-1)
            ref_net = reference_net.build_from_state_dict(sd, config, **kw)
        return UNetExtras(lora), Encoders(sketch, reference_projection=projection, reference_net=ref_net)
    warp = style = None
    bg_enc = style_enc = thresh = cluster = None
    if spec.background_encoder:
        warp = warp_style.build_warp_modules(sd, f"{UNET}warp_modules.", **kw)
        bg_enc = v2_encoders.build_from_state_dict(sd, "bg_encoder.", **kw)
    if spec.style_encoder:
        style = warp_style.build_style_modules(sd, f"{UNET}style_modules.", **kw)
        style_enc = v2_encoders.build_from_state_dict(sd, "style_encoder.", **kw)
    if spec.threshold_context:
        thresh = v15_context.build_threshold_embedder(sd, "thresh_embedder.", **kw)
        cluster = v15_context.build_cluster_transformer(sd, "transformer.", **kw)
    sketch = sketch_encoder.build_from_state_dict(sd, "control_encoder.", **kw)
    return UNetExtras(lora, warp, style), Encoders(sketch, bg_enc, style_enc, thresh, cluster)


def unet_config_from_state_dict(unet_sd: dict) -> dict:
    import comfy.model_detection

    config = comfy.model_detection.detect_unet_config(unet_sd, "")
    if config is None or "model_channels" not in config:
        raise ColorizerLoadError("could not read the UNet layout from model.diffusion_model.*")
    return config


def build_unet_model(unet_sd: dict, prediction: str, *, dtype=None, device=None, xl: bool = False,
                     head_channels: int = 64, unet_config: dict | None = None):
    """A ComfyUI BaseModel holding exactly the tensors of `unet_sd`: SD2.x config, or SDXL-shaped (`xl`: its own
    512-d `y`, which the colorizer's conditioning supplies per generation size). Shapes come from the file."""
    import comfy.model_base
    import comfy.supported_models

    squeeze_conv_projections(unet_sd)
    unet_config = dict(unet_config or unet_config_from_state_dict(unet_sd))
    unet_config["dtype"] = dtype
    model_config = (comfy.supported_models.SDXL if xl else comfy.supported_models.SD20)(unet_config)
    model_config.unet_config["num_head_channels"] = head_channels
    model_config.set_inference_dtype(dtype, _manual_cast_dtype(dtype))
    model_type = comfy.model_base.ModelType.EPS if prediction == "eps" else comfy.model_base.ModelType.V_PREDICTION
    model = comfy.model_base.BaseModel(model_config, model_type=model_type, device="meta")
    load_strict(model.diffusion_model, unet_sd, key_prefix=UNET, what="SDXL-shaped UNet" if xl else "SD2.x UNet",
                dtype=dtype, device=device)
    unet_sd.clear()
    return model


def _manual_cast_dtype(dtype):
    import comfy.model_management

    if dtype is None:
        return None
    return comfy.model_management.unet_manual_cast(dtype, comfy.model_management.get_torch_device(),
                                                   [torch.float16, torch.bfloat16, torch.float32])


def _unet_dtype(sd: dict):
    import comfy.model_management
    import comfy.utils

    params = sum(v.numel() for k, v in sd.items() if k.startswith(UNET))
    weight_dtype = comfy.utils.weight_dtype({k: v for k, v in sd.items() if k.startswith(UNET)})
    return comfy.model_management.unet_dtype(model_params=params, weight_dtype=weight_dtype,
                                             supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])


def split_networks(sd: dict, family: str, prediction: str, *, dtype=None, device=None, heads: HeadSizes = HeadSizes(),
                   name: str = "checkpoint", operations=None):
    """Every tensor of an official state dict `sd` handed to the module that uses it (`sd` ends empty):
    (ComfyUI model, UNet extras, encoders, VAE tensors, context dim). Works on meta tensors too."""
    for k in [k for k in sd if k in DDPM_BUFFERS]:
        del sd[k]
    for prefix in IGNORED_PREFIXES:
        dropped = take_prefix(sd, prefix)
        if dropped:
            log.info("%s: ignoring %d %s* tensors", name, len(dropped), prefix)
    vae_sd = take_prefix(sd, "first_stage_model.")
    xl = spec_of(family).xl
    if xl:
        for prefix in XL_UNUSED:
            take_prefix(sd, prefix)
    ops = operations or _operations()
    context_dim = _context_dim(sd)
    unet_config = None
    if xl:
        unet_config = unet_config_from_state_dict({k[len(UNET):]: v for k, v in sd.items()
                                                   if k.startswith(UNET) and ".lora_" not in k})
    extras, encoders = build_networks(sd, family, dtype=dtype, device=device, operations=ops, heads=heads,
                                      unet_config=unet_config)
    unet_sd = take_prefix(sd, UNET)
    if sd:
        left = sorted(sd)
        raise ColorizerLoadError(f"{name}: {len(left)} tensors are not used by any ColorizeDiffusion {family} module "
                                 f"(e.g. {', '.join(left[:5])}); the file does not match the official layout")
    model = build_unet_model(unet_sd, prediction, dtype=dtype, device=device, xl=xl, head_channels=heads.unet,
                             unet_config=unet_config)
    return model, extras, encoders, vae_sd, context_dim


def load_checkpoint(path: str, prediction: str = "auto", dtype=None, *, disable_dynamic: bool = False,
                    heads: HeadSizes | None = None) -> LoadedCheckpoint:
    """Load an official checkpoint. The MODEL and the colorizer's two networks get the patcher class core models
    get on this host (`disable_dynamic`: the plain `ModelPatcher`), and a recipe to load them again, which
    ComfyUI uses for multi-GPU clones and non-dynamic delegates."""
    import comfy.model_management
    import comfy.sd

    name = os.path.basename(path)
    heads = heads or checkpoint_heads(path)
    sd = read_state_dict(path)
    try:
        family = detect_family(sd)
    except ColorizerLoadError as exc:
        raise ColorizerLoadError(f"{name}: {exc}") from None
    prediction = resolve_prediction(path, prediction)
    unet_dtype = dtype or _unet_dtype(sd)
    model, extras, encoders, vae_sd, context_dim = split_networks(sd, family, prediction, dtype=unet_dtype,
                                                                  heads=heads, name=name)

    load_device = comfy.model_management.get_torch_device()
    offload_device = comfy.model_management.unet_offload_device()
    patchers = [new_model_patcher(m, load_device, offload_device, disable_dynamic=disable_dynamic)
                for m in (model, extras, encoders)]
    for index, patcher in enumerate(patchers):
        set_reload_recipe(patcher, reload_patchers, (path, prediction, unet_dtype, heads), index)
    colorizer = Colorizer(family=family, prediction=prediction, context_dim=context_dim, unet_extras=extras,
                          encoders=encoders, source=name)
    colorizer.unet_extras_patcher, colorizer.encoders_patcher = patchers[1], patchers[2]
    vae = build_vae(vae_sd, name) if vae_sd else MissingVAE(name)
    return LoadedCheckpoint(patchers[0], vae, colorizer, family, prediction)


def reload_patchers(path: str, prediction: str, dtype, heads: HeadSizes = HeadSizes(),
                    disable_dynamic: bool = False) -> tuple:
    """(MODEL, UNet extras, encoders) patchers of a fresh load of `path`: ComfyUI's `cached_patcher_init`."""
    loaded = load_checkpoint(path, prediction, dtype, disable_dynamic=disable_dynamic, heads=heads)
    return loaded.model, loaded.colorizer.unet_extras_patcher, loaded.colorizer.encoders_patcher


def _context_dim(sd: dict) -> int:
    key = f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    if key in sd:
        return int(sd[key].shape[1])
    return int(next(v for k, v in sorted(sd.items()) if k.startswith(UNET) and k.endswith("attn2.to_k.weight")).shape[1])


def _operations():
    import comfy.ops

    return comfy.ops.manual_cast
