"""The COLORIZER_REFERENCE value: a picture's CLIP tokens (and, for XL, its WD tagger tokens) with the picture."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...errors import ColorizerInputError
from ..common.clip_tokens import check_context_dim, encode_reference, uncond_tokens
from ..common.clip_vision import OpenCLIPVision
from .tagger import tagger_tokens as encode_tagger_tokens


@dataclass
class ColorizerReference:
    """What the ``COLORIZER_REFERENCE`` socket carries (see ``nodes/reference_nodes.py``).

    * ``tokens``: ``[B, N, C]`` float32 (N = 256 for ViT-H/14 at 224) -- projected local tokens, CLS dropped;
      the reference context of every family; ``uncond()`` gives the zero tokens of the same shape.
    * ``cls``: ``[B, 1, C]`` float32 -- the projected CLS token (``full = cat([cls, tokens], 1)``).
    * ``image``: ``[B, 3, H, W]`` float32 in [-1, 1] -- the reference as given (before the CLIP resize);
      v2 background/style encoders VAE-encode it and take its size.
    * ``size``: ``(H, W)`` pixel size of ``image``.
    * ``clip_dim``: C; ``backend``: ``"comfy"`` or ``"open_clip"`` (informational).
    * ``tagger_tokens``: ``[B, 196, C_tagger]`` -- XL: the WD tagger's tokens of ``image`` (None without a tagger).
    All tensors live on ComfyUI's intermediate device (CPU unless ``--gpu-only``).
    """

    tokens: torch.Tensor
    cls: torch.Tensor
    image: torch.Tensor
    size: tuple[int, int]
    backend: str = "comfy"
    tagger_tokens: torch.Tensor | None = None

    @property
    def full(self) -> torch.Tensor:
        return torch.cat([self.cls, self.tokens], dim=1)

    @property
    def local(self) -> torch.Tensor:
        return self.tokens

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def clip_dim(self) -> int:
        return int(self.tokens.shape[-1])

    def uncond(self) -> torch.Tensor:
        return uncond_tokens(self.tokens)

    def check_context_dim(self, context_dim: int) -> None:
        check_context_dim(self.clip_dim, context_dim)

    def expand_to(self, batch: int) -> "ColorizerReference":
        """Repeat a single reference for ``batch`` generations (B must be 1 or ``batch``)."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ColorizerInputError(f"{self.batch_size} references cannot be paired with a batch of {batch}: "
                                      f"give one reference or one per image")
        return self._rows(lambda t: t.expand(batch, *t.shape[1:]).contiguous())

    def repeat_each(self, n: int) -> "ColorizerReference":
        """Each row ``n`` times in a row (several samples per sketch)."""
        if n == 1:
            return self
        return self._rows(lambda t: t.repeat_interleave(n, dim=0))

    def _rows(self, rep) -> "ColorizerReference":
        """A copy whose per-picture tensors all got the rows `rep` gives."""
        tagger = None if self.tagger_tokens is None else rep(self.tagger_tokens)
        return dataclasses.replace(self, tokens=rep(self.tokens), cls=rep(self.cls), image=rep(self.image),
                                   tagger_tokens=tagger)


def make_reference(clip_vision, image_pm1: torch.Tensor, *, tagger=None,
                   context_dim: int | None = None) -> ColorizerReference:
    """Encode ``[B,3,H,W]`` in [-1,1] once (CLIP; with a WD ``tagger``, its tokens too) as a
    :class:`ColorizerReference`."""
    import comfy.model_management as mm

    full = encode_reference(clip_vision, image_pm1, context_dim=context_dim, token_type="full")
    backend = "open_clip" if isinstance(clip_vision, OpenCLIPVision) else "comfy"
    img = image_pm1.to(device=mm.intermediate_device(), dtype=torch.float32)
    return ColorizerReference(tokens=full[:, 1:].contiguous(), cls=full[:, :1].contiguous(), image=img,
                              size=(int(img.shape[-2]), int(img.shape[-1])), backend=backend,
                              tagger_tokens=None if tagger is None else encode_tagger_tokens(tagger, img))
