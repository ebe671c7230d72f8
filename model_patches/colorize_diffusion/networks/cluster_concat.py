"""ClusterConcat (official `refnet.modules.proj.ClusterConcat`, prefix `proj.`): the XL reference context.

Self-attention over the CLIP "full" tokens (257 for bigG at 224), the first 196 kept (the CLS token and the
first 195 patch tokens: no spatial alignment with the tagger's 14×14 grid — an official quirk), LayerNorm,
concatenated channel-wise with the WD tagger's 196 tokens, then Linear → SiLU → Linear → LayerNorm.
Head size is not visible in the weights: 128 in the released files (`head_dim`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....errors import ColorizerInputError, ColorizerLoadError
from .common import load_prefixed, operations_or_default, state_shape

DEFAULT_PREFIX = "proj."
RELEASED_HEAD_DIM = 128
TOKENS = 196


class ClusterConcat(nn.Module):
    def __init__(self, clip_dim: int, tagger_dim: int, out_dim: int, head_dim: int = RELEASED_HEAD_DIM, *,
                 dtype=None, device=None, operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        kw = dict(dtype=dtype, device=device)
        if clip_dim % head_dim:
            raise ColorizerLoadError(f"ClusterConcat width {clip_dim} is not a multiple of its head size {head_dim}")
        self.heads = clip_dim // head_dim
        self.clip_dim, self.tagger_dim = clip_dim, tagger_dim
        self.attn = nn.Module()
        self.attn.to_q = ops.Linear(clip_dim, clip_dim, bias=False, **kw)
        self.attn.to_k = ops.Linear(clip_dim, clip_dim, bias=False, **kw)
        self.attn.to_v = ops.Linear(clip_dim, clip_dim, bias=False, **kw)
        self.attn.to_out = nn.Sequential(ops.Linear(clip_dim, clip_dim, **kw))
        self.norm = ops.LayerNorm(clip_dim, **kw)
        self.proj = nn.Sequential(ops.Linear(clip_dim + tagger_dim, out_dim, **kw), nn.SiLU(),
                                  ops.Linear(out_dim, out_dim, **kw), ops.LayerNorm(out_dim, **kw))

    def check_inputs(self, clip_full: torch.Tensor, tagger_tokens: torch.Tensor) -> None:
        if clip_full.shape[-1] != self.clip_dim:
            raise ColorizerInputError(
                f"CLIP vision tokens of width {clip_full.shape[-1]} do not match the XL checkpoint's {self.clip_dim} "
                "(its reference projection): ColorizeDiffusion XL needs the CLIP ViT-bigG vision tower "
                "(clip_vision_g.safetensors, projection 1280)")
        if tagger_tokens.shape[-1] != self.tagger_dim:
            raise ColorizerInputError(
                f"WD tagger tokens of width {tagger_tokens.shape[-1]} do not match the XL checkpoint's "
                f"{self.tagger_dim}: ColorizeDiffusion XL needs SmilingWolf's wd-v1-4-swinv2-tagger-v2 (width 1024)")
        if clip_full.shape[1] < TOKENS or tagger_tokens.shape[1] != TOKENS:
            raise ColorizerInputError(f"ClusterConcat needs ≥{TOKENS} CLIP tokens and {TOKENS} tagger tokens, got "
                                      f"{clip_full.shape[1]} and {tagger_tokens.shape[1]}")

    def forward(self, clip_full: torch.Tensor, tagger_tokens: torch.Tensor) -> torch.Tensor:
        """[B, 257, C_clip] + [B, 196, C_tag] → [B, 196, context]."""
        self.check_inputs(clip_full, tagger_tokens)
        dtype = self.norm.weight.dtype
        x = clip_full.to(dtype)
        b, n, _ = x.shape
        a = self.attn
        split = lambda t: t.reshape(b, n, self.heads, -1).transpose(1, 2)   # noqa: E731
        out = F.scaled_dot_product_attention(split(a.to_q(x)), split(a.to_k(x)), split(a.to_v(x)))
        x = a.to_out(out.transpose(1, 2).reshape(b, n, -1))[:, :TOKENS]
        x = torch.cat([self.norm(x), tagger_tokens.to(dtype)], 2)
        return self.proj(x)


def build_from_state_dict(sd: dict, prefix: str = DEFAULT_PREFIX, *, head_dim: int = RELEASED_HEAD_DIM,
                          dtype=None, device=None, operations=None) -> ClusterConcat:
    clip_dim = state_shape(sd, prefix + "attn.to_q.weight", "reference projection")[0]
    out_dim, joined = state_shape(sd, prefix + "proj.0.weight", "reference projection")
    module = ClusterConcat(clip_dim, joined - clip_dim, out_dim, head_dim, dtype=dtype, device="meta",
                           operations=operations)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)
