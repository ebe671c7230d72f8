"""v2 decoder extras: the skip "warp" modules (background injection) and the style FiLM modules."""
from __future__ import annotations

import torch
import torch.nn as nn

from .common import operations_or_default, load_prefixed

HEAD_DIM = 64  # hard-coded in the official SelfTransformerBlock


def _attention(q, k, v, heads):
    from comfy.ldm.modules.attention import optimized_attention

    return optimized_attention(q, k, v, heads)


class WarpAttention(nn.Module):
    def __init__(self, dim, dtype=None, device=None, operations=None):
        super().__init__()
        self.heads = max(dim // HEAD_DIM, 1)
        self.to_q = operations.Linear(dim, dim, bias=False, dtype=dtype, device=device)
        self.to_k = operations.Linear(dim, dim, bias=False, dtype=dtype, device=device)
        self.to_v = operations.Linear(dim, dim, bias=False, dtype=dtype, device=device)
        self.to_out = nn.Sequential(operations.Linear(dim, dim, dtype=dtype, device=device))

    def forward(self, x, context):
        return self.to_out(_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))


class WarpModule(nn.Module):
    """SelfTransformerBlock(ich): skip tokens attend to the background encoder's tokens for that skip."""

    def __init__(self, dim, dtype=None, device=None, operations=None):
        super().__init__()
        self.norm1 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.attn = WarpAttention(dim, dtype=dtype, device=device, operations=operations)
        self.norm2 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.ff = nn.Sequential(operations.Linear(dim, 4 * dim, dtype=dtype, device=device), nn.SiLU(),
                                operations.Linear(4 * dim, dim, dtype=dtype, device=device))

    def forward_tokens(self, t: torch.Tensor, hs_bg: torch.Tensor) -> torch.Tensor:
        t = t + self.attn(self.norm1(t), hs_bg)
        return t + self.ff(self.norm2(t))

    def forward(self, skip: torch.Tensor, hs_bg: torch.Tensor) -> torch.Tensor:
        b, c, h, w = skip.shape
        t = skip.flatten(2).transpose(1, 2)
        t = self.forward_tokens(t, hs_bg.to(t.dtype))
        return t.transpose(1, 2).reshape(b, c, h, w)


class StyleModule(nn.Module):
    """FiLM after decoder block j: s = proj(LN(style_j + emb_proj(time_emb))); h*(1+scale)+shift."""

    def __init__(self, dim, emb_dim, dtype=None, device=None, operations=None):
        super().__init__()
        self.add_module("0", operations.LayerNorm(dim, dtype=dtype, device=device))
        self.add_module("1", operations.Linear(emb_dim, dim, dtype=dtype, device=device))
        self.add_module("2", operations.Linear(dim, dim, dtype=dtype, device=device))

    def forward(self, h: torch.Tensor, style: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        norm, emb_proj, proj = self._modules["0"], self._modules["1"], self._modules["2"]
        s = proj(norm(style.to(h.dtype) + emb_proj(time_emb.to(h.dtype))))
        scale, shift = s.chunk(2, dim=1)
        return h * (1 + scale[..., None, None]) + shift[..., None, None]


def _indices(sd: dict, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)})


def build_warp_modules(sd: dict, prefix: str, *, dtype=None, device=None, operations=None) -> nn.ModuleList:
    operations = operations_or_default(operations)
    mods = nn.ModuleList()
    for j in _indices(sd, prefix):
        dim = int(sd[f"{prefix}{j}.attn.to_q.weight"].shape[0])
        mods.append(WarpModule(dim, dtype=dtype, device="meta", operations=operations))
    return load_prefixed(mods, sd, prefix, dtype=dtype, device=device)


def build_style_modules(sd: dict, prefix: str, *, dtype=None, device=None, operations=None) -> nn.ModuleList:
    operations = operations_or_default(operations)
    mods = nn.ModuleList()
    for j in _indices(sd, prefix):
        dim, emb_dim = (int(s) for s in sd[f"{prefix}{j}.1.weight"].shape)
        mods.append(StyleModule(dim, emb_dim, dtype=dtype, device="meta", operations=operations))
    return load_prefixed(mods, sd, prefix, dtype=dtype, device=device)
