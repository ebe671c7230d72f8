"""Reference tokens: the official ColorizeDiffusion CLIP image encoding as plain torch functions.

Official recipe (``refnet/modules/embedder.py::FrozenOpenCLIPImageEmbedder``; model-spec §3.2,
golden README §5 A1 and §8 item 10), for a reference ``x`` in [-1, 1], NCHW:

1. ``F.interpolate(x, (S, S), mode="bicubic", align_corners=True, antialias=True)`` with S the tower's
   image size (224 for ViT-H/14) -- a *squash* (aspect not kept), no crop, no 8-bit quantisation;
2. ``(x + 1) / 2`` then ``(x - mean) / std`` with the OpenAI CLIP mean/std;
3. ViT forward: patch conv, class token, positional embedding, ``ln_pre``, every residual block;
4. ``ln_post`` on **every** token, then ``@ proj`` (no L2 normalisation);
5. "full" = all 257 tokens, "tokens" = "local" = ``full[:, 1:]`` (CLS dropped) -> ``[B, 256, C]``.

The unconditional reference is zeros of the same shape (:func:`uncond_tokens`).

The towers (the two back ends, ComfyUI's ``CLIP_VISION`` and the pack's OpenCLIP one) come from
model_patches/common/clip_vision.py.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ...errors import ColorizerInputError
from .clip_vision import CLIP_MEAN, CLIP_STD, DEFAULT_IMAGE_SIZE, OpenCLIPVision

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# image layout and preprocessing
# --------------------------------------------------------------------------------------------

def preprocess(x: torch.Tensor, size: int = DEFAULT_IMAGE_SIZE,
               mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """Official CLIP input: squash-resize ``[B,3,H,W]`` in [-1,1] to size x size, map to [0,1], normalise.

    Bicubic, ``align_corners=True``, ``antialias=True``; no crop, no clamping, no 8-bit quantisation.
    Runs in float32 on ``x``'s device.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ColorizerInputError(f"expected a reference [B,3,H,W] in [-1,1], got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    x = F.interpolate(x, (size, size), mode="bicubic", align_corners=True, antialias=True)
    x = (x + 1.0) / 2.0
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def preprocess_many(images, size: int = DEFAULT_IMAGE_SIZE) -> torch.Tensor:
    """:func:`preprocess` for a batch tensor or a list of references of different sizes (each ``[3,H,W]``
    or ``[b,3,H,W]``); the results are concatenated along the batch."""
    if isinstance(images, torch.Tensor):
        return preprocess(images, size)
    parts = [preprocess(im.unsqueeze(0) if im.ndim == 3 else im, size) for im in images]
    if not parts:
        raise ColorizerInputError("no reference image given")
    return torch.cat(parts, dim=0)


def uncond_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """The unconditional reference: zero tokens of the same shape, dtype and device."""
    return torch.zeros_like(tokens)


def check_context_dim(out_dim: int, context_dim: int | None, *, width: int | None = None,
                      projection: int | None = None) -> None:
    """Raise :class:`ColorizerInputError` when the CLIP token width differs from the checkpoint's context dim."""
    if context_dim is None or int(out_dim) == int(context_dim):
        return
    what = f"CLIP vision width/projection {out_dim}"
    if width is not None and projection is not None:
        what = f"CLIP vision output dim {out_dim} (width {width}, projection {projection})"
    elif width is not None and projection is None:
        what = f"CLIP vision width {width} (no projection)"
    raise ColorizerInputError(
        f"{what} does not match the checkpoint's context dim {context_dim}: the reference tokens feed the "
        f"UNet cross-attention directly. The released ColorizeDiffusion (SD2.1) models need the OpenCLIP "
        f"ViT-H/14 vision tower (clip_vision_h.safetensors: width 1280, projection 1024).")


# --------------------------------------------------------------------------------------------
# back end (a): ComfyUI CLIP_VISION
# --------------------------------------------------------------------------------------------

def _comfy_out_dim(cv) -> tuple[int, int, int | None]:
    """(output dim, width, projection dim or None) of a ComfyUI CLIP vision model, from its weights."""
    vm = cv.model
    width = int(vm.vision_model.post_layernorm.weight.shape[0])
    proj = getattr(vm, "visual_projection", None)
    if isinstance(proj, torch.nn.Module) and getattr(proj, "weight", None) is not None:
        p = int(proj.weight.shape[0])
        return p, width, p
    return width, width, None


def _comfy_encode_full(cv, pixels: torch.Tensor) -> torch.Tensor:
    import comfy.model_management as mm

    vm = cv.model
    vision = getattr(vm, "vision_model", None)
    if vision is None or not hasattr(vision, "post_layernorm") or getattr(vision.embeddings, "class_embedding", None) is None:
        raise ColorizerInputError(
            f"this CLIP_VISION ({type(vm).__name__}) is not a CLIP ViT with a class token; ColorizeDiffusion "
            f"needs the OpenCLIP ViT-H/14 vision tower (clip_vision_h.safetensors)")
    mm.load_models_gpu([cv.patcher])
    dev = cv.load_device
    with torch.no_grad():
        out = vm(pixel_values=pixels.to(dev, torch.float32), intermediate_output=None)
        last, pooled_embeds = out[0], out[2]
        ln, proj = vision.post_layernorm, vm.visual_projection
        if getattr(vision, "output_layernorm", False):
            normed = last                      # host already applied post_layernorm (structural flag)
        else:
            normed = ln(last)
            # Guard against a host that returns post-LN states without that flag: the pooled output is
            # visual_projection(post_layernorm(CLS)); keep the composition that reproduces it.
            if isinstance(pooled_embeds, torch.Tensor) and pooled_embeds.ndim == 2 \
                    and pooled_embeds.shape[0] == last.shape[0]:
                ref = pooled_embeds.float()
                err_once = (proj(normed[:, 0]).float() - ref).abs().max()
                err_as_is = (proj(last[:, 0]).float() - ref).abs().max()
                if err_as_is < err_once:
                    log.info("ColorizeDiffusion: CLIP vision last_hidden_state is already post-layernorm")
                    normed = last
        full = proj(normed)
    return full.to(device=mm.intermediate_device(), dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------

def is_comfy_clip_vision(obj) -> bool:
    return hasattr(obj, "patcher") and hasattr(getattr(obj, "model", None), "vision_model")


def clip_image_size(clip_vision) -> int:
    return int(getattr(clip_vision, "image_size", DEFAULT_IMAGE_SIZE) or DEFAULT_IMAGE_SIZE)


def check_clip_against_context(clip_vision, context_dim: int | None) -> None:
    if context_dim is None:
        return
    if isinstance(clip_vision, OpenCLIPVision):
        c = clip_vision.config
        check_context_dim(c["output_dim"], context_dim, width=c["width"],
                          projection=c["output_dim"] if c["has_proj"] else None)
    elif is_comfy_clip_vision(clip_vision):
        out, width, p = _comfy_out_dim(clip_vision)
        check_context_dim(out, context_dim, width=width, projection=p)
    else:
        raise ColorizerInputError(f"unsupported CLIP vision object {type(clip_vision).__name__}")


def encode_full(clip_vision, pixels: torch.Tensor) -> torch.Tensor:
    """Preprocessed pixels -> all projected tokens ``[B, 1+grid², C]`` (float32, intermediate device)."""
    if isinstance(clip_vision, OpenCLIPVision):
        return clip_vision.encode_tokens(pixels)
    if is_comfy_clip_vision(clip_vision):
        return _comfy_encode_full(clip_vision, pixels)
    raise ColorizerInputError(
        f"unsupported CLIP vision object {type(clip_vision).__name__}: connect a CLIP Vision loader "
        f"(clip_vision_h.safetensors) or 'ColorizeDiffusion Load OpenCLIP Vision'")


def image_embedder(clip_vision):
    """`embed(pixels) -> [B, D]`: the projected CLS token (CLIP's `image_embeds`) of preprocessed pixels, as
    ColorFlow's retrieval compares pictures with it."""
    def embed(pixels: torch.Tensor) -> torch.Tensor:
        return encode_full(clip_vision, pixels)[:, 0]
    return embed


def encode_reference(clip_vision, images, *, context_dim: int | None = None,
                     token_type: str = "tokens") -> torch.Tensor:
    """The official reference tokens of ``images`` (``[B,3,H,W]`` in [-1,1], or a list of such / ``[3,H,W]``
    tensors of different sizes).

    ``token_type``: ``"tokens"`` / ``"local"`` -> ``[B,256,C]`` (CLS dropped), ``"full"`` -> ``[B,257,C]``,
    ``"cls"`` -> ``[B,1,C]``. Raises :class:`ColorizerInputError` when ``context_dim`` is given and differs from C.
    """
    check_clip_against_context(clip_vision, context_dim)
    pixels = preprocess_many(images, clip_image_size(clip_vision))
    full = encode_full(clip_vision, pixels)
    if token_type == "full":
        return full
    if token_type in ("tokens", "local"):
        return full[:, 1:]
    if token_type == "cls":
        return full[:, :1]
    raise ValueError(f"token_type must be 'tokens', 'local', 'full' or 'cls', not {token_type!r}")
