"""ColorFlow's sketch colorizer on ComfyUI's own PixArt-alpha model: the ColorGuider's residuals added after the first
blocks of the transformer, as the official transformer adds them.

ComfyUI's PixArt model has no per-block patch point (nor a diffusion-model wrapper point), so an object patch of its
`forward` runs the model's forward
over its own modules (its weights, LoRA patches and casts are ComfyUI's) with two differences from ComfyUI's
forward: each guider residual is added after its block, and the position embedding is the official one (grid
i / (n / 32), computed in float64) — ComfyUI's on-the-fly formula gives the same grid but divides by zero for
canvases under 256 px. Rows without ColorFlow conditioning run ComfyUI's forward unchanged.
"""
from __future__ import annotations

import torch

from ...errors import ColorizerInputError
from .conditioning import GUIDE_KEY, SCALE_KEY, check_guide_size
from .networks.pixart_guider import sincos_pos_embed_2d

ADDITIONAL_MODELS_KEY = "colorflow_guider"
POSITION_BASE = 32.0          # base_size / interpolation_scale of PixArt-XL-2-512-MS and -1024-MS


def micro_conditions(x: torch.Tensor, c_size, c_ar):
    """Canvas size [h, w] in pixels and aspect ratio h/w per row (ComfyUI's fallback: the latent's size x 8)."""
    b, _, h, w = x.shape
    if c_size is None:
        c_size = torch.tensor([[h * 8, w * 8]], dtype=x.dtype, device=x.device)
    if c_ar is None:
        c_ar = torch.tensor([[h / w]], dtype=x.dtype, device=x.device)
    return c_size.to(x).expand(b, -1), c_ar.to(x).expand(b, -1)


def pixart_forward(dm, x, timesteps, context, c_size, c_ar, residuals=(), learned_sigma: bool = False):
    """ComfyUI's PixArtMS forward over its own modules, residual i added after block i, the official positions."""
    b, _, h, w = x.shape
    p = dm.patch_size
    tokens = dm.x_embedder(x)
    tokens = tokens + sincos_pos_embed_2d(tokens.shape[-1], h // p, w // p, POSITION_BASE).to(tokens)[None]
    t = dm.t_embedder(timesteps, x.dtype)
    if dm.micro_conditioning:
        t = t + torch.cat([dm.csize_embedder(c_size, b), dm.ar_embedder(c_ar, b)], dim=1)
    t0 = dm.t_block(t)
    y = dm.y_embedder(context.unsqueeze(1) if context.ndim == 3 else context, False)
    y = y.squeeze(1).reshape(1, -1, tokens.shape[-1])
    for i, block in enumerate(dm.blocks):
        tokens = block(tokens, y, t0, None, (h, w))
        if i < len(residuals):
            tokens = tokens + residuals[i].to(tokens.dtype)
    out = dm.unpatchify(dm.final_layer(tokens, t), h, w)
    return out if learned_sigma or not dm.pred_sigma else out[:, :dm.in_channels]


class GuidedForward:
    """The PixArt model's forward (an object patch on `diffusion_model.forward`: ComfyUI's PixArt model has no
    diffusion-model wrapper point): rows with ColorFlow conditioning run `pixart_forward` with the guider's
    residuals, others the model's own forward."""

    def __init__(self, diffusion_model, guider_patcher):
        self._model = (diffusion_model,)
        self.guider_patcher = guider_patcher

    def __deepcopy__(self, memo):
        return self

    def residuals(self, x, timesteps, guide, c_size, c_ar, scale: float) -> list:
        guider = self.guider_patcher.model
        q = next(guider.parameters())
        inp = torch.cat([x, guide.to(x)], dim=1).to(device=q.device, dtype=q.dtype)
        return guider(inp, timesteps.to(q.dtype), c_size.to(q.dtype), c_ar.to(q.dtype), scale)

    def __call__(self, x, timesteps, context, c_size=None, c_ar=None, **kwargs):
        dm = self._model[0]
        guide = kwargs.pop(GUIDE_KEY, None)
        scale = float(kwargs.pop(SCALE_KEY, 1.0))
        if guide is None:
            return type(dm).forward(dm, x, timesteps, context, c_size=c_size, c_ar=c_ar, **kwargs)
        check_guide_size(guide, x)
        c_size, c_ar = micro_conditions(x, c_size, c_ar)
        res = self.residuals(x, timesteps, guide, c_size, c_ar, scale)
        return pixart_forward(dm, x, timesteps, context, c_size, c_ar, res)


def apply_guider(model, guider_patcher, lora_patches: dict | None = None):
    """A clone of the PixArt-alpha MODEL `model` with the guider's residuals (and the LoRA's weight patches)."""
    m = model.clone()
    dm = m.get_model_object("diffusion_model")
    if not hasattr(dm, "blocks") or not hasattr(dm, "y_embedder") or not hasattr(dm, "t_block"):
        raise ColorizerInputError(f"this MODEL is a {type(dm).__name__}, not PixArt-alpha: the sketch ColorFlow "
                                  "colorizers (sketch/, shading/) patch PixArt-XL-2-1024-MS")
    if not getattr(dm, "micro_conditioning", False):
        raise ColorizerInputError("this MODEL is PixArt-Sigma (no size conditioning): the sketch ColorFlow "
                                  "colorizers were trained on PixArt-alpha XL-2-1024-MS")
    depth = len(guider_patcher.model.transformer_blocks)
    if depth > len(dm.blocks):
        raise ColorizerInputError(f"the ColorGuider has {depth} blocks but this PixArt model only "
                                  f"{len(dm.blocks)}: the guider belongs to a larger base")
    m.add_object_patch("diffusion_model.forward", GuidedForward(dm, guider_patcher))
    m.set_additional_models(ADDITIONAL_MODELS_KEY, [guider_patcher])
    if lora_patches:
        m.add_patches(lora_patches, 1.0)
    return m
