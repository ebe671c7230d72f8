"""Which model a state dict holds, decided from its keys and shapes (never from the file name)."""
from __future__ import annotations

import os

from ...errors import ColorizerLoadError

UNET = "model.diffusion_model."
FAMILIES = ("v1", "v1.5", "v2", "sdxl", "xlv2")
XL_FAMILIES = ("sdxl", "xlv2")
WHAT_WE_LOAD = ("this node loads ColorizeDiffusion v1 (mult), v1.5 (switch), v2 (SD2.1 based) and XL (sdxl, xlv2) "
                "checkpoints")
XL_ADM = 512          # the XL colorizer's y: size and aesthetic-score embeddings (SDXL base: 2816)

# Persistent buffers of the official DDPM wrapper: recomputable, accepted and ignored.
DDPM_BUFFERS = frozenset((
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "logvar",
))


def _has_prefix(keys, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _context_dim(sd) -> int | None:
    for prefix in (UNET, "model.diffusion_model.", "", "unet."):
        k = f"{prefix}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
        if k in sd:
            return int(sd[k].shape[1])
    for k, v in sd.items():
        if k.endswith("attn2.to_k.weight"):
            return int(v.shape[1])
    return None


def describe_foreign(sd) -> str:
    """A short description of a state dict that is not a ColorizeDiffusion SD2.1 checkpoint."""
    keys = sd.keys()
    ctx = _context_dim(sd)
    xl = (_has_prefix(keys, "conditioner.embedders.") or f"{UNET}label_emb.0.0.weight" in sd
          or ctx == 2048)
    if xl and _has_prefix(keys, "control_encoder."):
        return "this is an incomplete ColorizeDiffusion XL checkpoint (no proj.* reference projection)"
    if xl:
        return "this is an SDXL base checkpoint (no ColorizeDiffusion sketch encoder)"
    if ctx == 768:
        return "this is a Stable Diffusion 1.x checkpoint (context dim 768)"
    if ctx == 1024 and _has_prefix(keys, UNET):
        return "this is a plain Stable Diffusion 2.x checkpoint (no ColorizeDiffusion sketch encoder)"
    if _has_prefix(keys, "visual.") or _has_prefix(keys, "vision_model."):
        return "this is a CLIP vision model, which belongs in models/clip_vision"
    if _has_prefix(keys, "encoder.down.") or _has_prefix(keys, "decoder.up."):
        return "this is a VAE"
    return "this file is not a ColorizeDiffusion checkpoint (no diffusion model or sketch encoder keys found)"


def _adm_channels(sd) -> int | None:
    key = f"{UNET}label_emb.0.0.weight"
    return int(sd[key].shape[1]) if key in sd else None


def detect_family(sd) -> str:
    """'v1', 'v1.5', 'v2', 'sdxl' or 'xlv2'; a clear ColorizerLoadError for anything else."""
    keys = sd.keys()
    is_colorizer = _has_prefix(keys, UNET) and _has_prefix(keys, "control_encoder.")
    ctx = _context_dim(sd)
    if is_colorizer and _adm_channels(sd) == XL_ADM and "proj.attn.to_q.weight" in sd:
        if _has_prefix(keys, "bg_encoder."):
            if not any(k.endswith("lora_down_background.weight") for k in keys):
                raise ColorizerLoadError("incomplete ColorizeDiffusion XL v2 checkpoint: a background ReferenceNet "
                                         "(bg_encoder.*) but no background LoRA (…lora_down_background)")
            return "xlv2"
        return "sdxl"
    if not is_colorizer or ctx is None or f"{UNET}label_emb.0.0.weight" in sd:
        raise ColorizerLoadError(f"{describe_foreign(sd)}; {WHAT_WE_LOAD}")
    if _has_prefix(keys, f"{UNET}warp_modules."):
        missing = [p for p in ("bg_encoder.", "style_encoder.", f"{UNET}style_modules.") if not _has_prefix(keys, p)]
        if missing:
            raise ColorizerLoadError(f"incomplete ColorizeDiffusion v2 checkpoint: no keys under {', '.join(missing)}")
        return "v2"
    if _has_prefix(keys, "thresh_embedder.") or "transformer.embedding" in sd:
        missing = [p for p in ("thresh_embedder.", "transformer.") if not _has_prefix(keys, p)]
        if missing:
            raise ColorizerLoadError(f"incomplete ColorizeDiffusion v1.5 checkpoint: no keys under {', '.join(missing)}")
        return "v1.5"
    return "v1"


def prediction_from_name(path: str) -> str:
    """The official rule (appfunc.load_model): 'eps' anywhere in the file name -> eps, otherwise v."""
    return "eps" if "eps" in os.path.basename(path) else "v"
