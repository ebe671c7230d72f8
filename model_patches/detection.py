"""Which model a state dict holds, decided from its keys and shapes (never from the file name)."""
from __future__ import annotations

import os

from ..errors import ColorizerLoadError

UNET = "model.diffusion_model."
FAMILIES = ("v1", "v1.5", "v2")
WHAT_WE_LOAD = "this node loads ColorizeDiffusion v1 (mult), v1.5 (switch) and v2 checkpoints (SD2.1 based)"

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
    if xl and (_has_prefix(keys, "control_encoder.") or any("lora_down_fg" in k for k in keys)):
        return "this is a ColorizeDiffusion XL checkpoint (SDXL based)"
    if xl:
        return "this is an SDXL checkpoint"
    if ctx == 768:
        return "this is a Stable Diffusion 1.x checkpoint (context dim 768)"
    if ctx == 1024 and _has_prefix(keys, UNET):
        return "this is a plain Stable Diffusion 2.x checkpoint (no ColorizeDiffusion sketch encoder)"
    if _has_prefix(keys, "visual.") or _has_prefix(keys, "vision_model."):
        return "this is a CLIP vision model, which belongs in models/clip_vision"
    if _has_prefix(keys, "encoder.down.") or _has_prefix(keys, "decoder.up."):
        return "this is a VAE"
    return "this file is not a ColorizeDiffusion checkpoint (no diffusion model or sketch encoder keys found)"


def detect_family(sd) -> str:
    """'v1', 'v1.5' or 'v2'; a clear ColorizerLoadError for anything else."""
    keys = sd.keys()
    is_colorizer = _has_prefix(keys, UNET) and _has_prefix(keys, "control_encoder.")
    ctx = _context_dim(sd)
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
