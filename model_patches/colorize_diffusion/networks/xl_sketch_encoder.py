"""The XL sketch encoder (official `refnet.modules.encoder.MultiScaleAttentionEncoder`, prefix `control_encoder.`).

The SD2.1 encoder's conv stem (÷8), then one conv per level (stride 2 except the last). Every level and a global
token (the spatial mean of the last level) are projected to one width and joined coarse-to-fine into one token
sequence; a block-causal attention (each level attends to itself and to the coarser levels, 2-D rotary position
embedding per level, RMS-normalised q/k) refines them; each level is projected back to its own width. The four
residuals are added after UNet input blocks 0, 3, 6 and 8 (golden_xl README §4).

Head size is not visible in the weights: 128 in the released files (`head_dim`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....errors import ColorizerLoadError
from .common import count_indexed, load_prefixed, operations_or_default, state_shape
from .sketch_encoder import conv_stem

DEFAULT_PREFIX = "control_encoder."
RELEASED_HEAD_DIM = 128
ROPE_POSITIONS = 1024
ROPE_THETA = 10000.0


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, dtype=None, device=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x):
        xf = x.float()
        out = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return out * self.weight.to(out.dtype)


def rope_frequencies(head_dim: int, positions: int = ROPE_POSITIONS, device=None, dtype=torch.float64):
    """Complex rotations [positions, head_dim/4] per axis (official: float64 angles, `torch.polar`)."""
    half = head_dim // 2
    inv = 1.0 / torch.pow(ROPE_THETA, torch.arange(0, half, 2, dtype=torch.float64).div(half))
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv)
    freqs = torch.polar(torch.ones_like(angles), angles)
    return freqs.to(device=device, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)


def apply_rope(x: torch.Tensor, grid: tuple, freqs: torch.Tensor) -> torch.Tensor:
    """2-D RoPE of tokens x [B, h·w, heads, d]: the first d/2 channels rotate with the row, the rest with the
    column (adjacent channel pairs). Computed in the precision of `freqs` (float64 as the official code)."""
    b, n, heads = x.shape[:3]
    h, w = grid
    if h > freqs.shape[0] or w > freqs.shape[0]:
        raise ValueError(f"sketch grid {h}x{w} exceeds the encoder's {freqs.shape[0]} rotary positions")
    real = torch.float64 if freqs.dtype == torch.complex128 else torch.float32
    xc = torch.view_as_complex(x.to(real).reshape(b, n, heads, -1, 2).contiguous())
    f = torch.cat([freqs[:h].view(1, h, 1, -1).expand(b, h, w, -1),
                   freqs[:w].view(1, 1, w, -1).expand(b, h, w, -1)], dim=-1).reshape(b, n, 1, -1)
    return torch.view_as_real(xc * f).flatten(3).to(x.dtype)


class BlockCausalAttention(nn.Module):
    def __init__(self, dim: int, head_dim: int, *, dtype=None, device=None, operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        if dim % head_dim:
            raise ColorizerLoadError(f"sketch encoder attention width {dim} is not a multiple of the head size "
                                     f"{head_dim}")
        self.heads, self.head_dim = dim // head_dim, head_dim
        kw = dict(dtype=dtype, device=device)
        self.to_q = ops.Linear(dim, dim, bias=False, **kw)
        self.to_k = ops.Linear(dim, dim, bias=False, **kw)
        self.to_v = ops.Linear(dim, dim, bias=False, **kw)
        self.to_out = nn.Sequential(ops.Linear(dim, dim, **kw))
        self.q_norm = RMSNorm(dim, **kw)
        self.k_norm = RMSNorm(dim, **kw)

    def forward(self, x, grids: list, lengths: list):
        """x [B, 1 + Σ lengths, C]: the global token, then the levels coarse to fine."""
        b, n, _ = x.shape
        split = lambda t: t.reshape(b, n, self.heads, self.head_dim)   # noqa: E731
        q, k, v = split(self.q_norm(self.to_q(x))), split(self.k_norm(self.to_k(x))), split(self.to_v(x))
        precise = x.device.type != "mps"        # no float64 there
        freqs = rope_frequencies(self.head_dim, device=x.device, dtype=torch.float64 if precise else torch.float32)
        q, k = q.clone(), k.clone()
        outs, start = [], 0
        for i, (grid, length) in enumerate(zip(grids, lengths)):
            first = start + (i == 0)            # the global token (first chunk) gets no rotation
            end = start + length + (i == 0)
            q[:, first:end] = apply_rope(q[:, first:end], grid, freqs)
            k[:, first:end] = apply_rope(k[:, first:end], grid, freqs)
            qs, ks, vs = (t.transpose(1, 2) for t in (q[:, start:end], k[:, :end], v[:, :end]))
            outs.append(F.scaled_dot_product_attention(qs, ks, vs).transpose(1, 2))
            start = end
        return self.to_out(torch.cat(outs, 1).reshape(b, n, -1))


class XLSketchEncoder(nn.Module):
    """`forward(sketch [B,C,H,W] in [-1,1]) -> [r0 (H/8), r1 (H/16), r2 (H/32), r3 (H/32)]`."""

    def __init__(self, in_channels: int, stem: list[int], level_channels: list[int], attn_dim: int,
                 head_dim: int = RELEASED_HEAD_DIM, *, dtype=None, device=None, operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        kw = dict(dtype=dtype, device=device)
        self.model = conv_stem(in_channels, stem, ops, **kw)
        first = stem[-1]
        self.proj_ins = nn.ModuleList([ops.Conv2d(first, attn_dim, 1, **kw)])
        self.proj_outs = nn.ModuleList([ops.Conv2d(attn_dim, first, 1, **kw)])
        self.downsample_layers = nn.ModuleList()
        prev, n = first, len(level_channels)
        for i, ch in enumerate(level_channels):
            self.downsample_layers.append(nn.Sequential(
                nn.SiLU(), ops.Conv2d(prev, ch, 3, stride=2 if i != n - 1 else 1, padding=1, **kw)))
            self.proj_ins.append(ops.Conv2d(ch, attn_dim, 1, **kw))
            self.proj_outs.append(ops.Conv2d(attn_dim, ch, 1, **kw))
            prev = ch
        self.proj_ins.append(ops.Conv2d(attn_dim, attn_dim, 1, **kw))    # the global token
        self.attn_layer = BlockCausalAttention(attn_dim, head_dim, operations=ops, **kw)

    compute_dtype: torch.dtype | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.compute_dtype or self.model[0].weight.dtype

    def forward(self, sketch: torch.Tensor) -> list[torch.Tensor]:
        x = self.model(sketch.to(self.dtype))
        maps = [x]
        for layer in self.downsample_layers:
            x = layer(x)
            maps.append(x)
        tokens = [proj(m).flatten(2).transpose(1, 2) for proj, m in zip(self.proj_ins, maps)]
        tokens.append(self.proj_ins[-1](x.mean(dim=[2, 3], keepdim=True)).flatten(2).transpose(1, 2))
        grids = [tuple(m.shape[-2:]) for m in maps][::-1]
        lengths = [h * w for h, w in grids]
        seq = torch.cat(tokens[::-1], 1)
        seq = self.attn_layer(seq, grids, lengths) + seq
        controls, start = [], 1
        for (h, w), length, proj in zip(grids, lengths, self.proj_outs[::-1]):
            level = seq[:, start:start + length].transpose(1, 2).reshape(seq.shape[0], -1, h, w)
            controls.append(proj(level))
            start += length
        return controls[::-1]

    def encode_with_blank(self, sketch: torch.Tensor, strength: float = 1.0):
        """(residuals of `sketch`, residuals of the blank all −1 sketch), × strength, from one batched run."""
        b = sketch.shape[0]
        out = [o * strength for o in self(torch.cat([sketch, -torch.ones_like(sketch)], 0))]
        return [o[:b] for o in out], [o[b:] for o in out]


def is_xl_sketch_encoder(sd: dict, prefix: str = DEFAULT_PREFIX) -> bool:
    return f"{prefix}attn_layer.to_q.weight" in sd


def build_from_state_dict(sd: dict, prefix: str = DEFAULT_PREFIX, *, head_dim: int = RELEASED_HEAD_DIM,
                          dtype=None, device=None, operations=None) -> XLSketchEncoder:
    stem = [state_shape(sd, f"{prefix}model.{2 * i}.weight", "XL sketch encoder stem")[0] for i in range(8)]
    in_channels = state_shape(sd, f"{prefix}model.0.weight")[1]
    n = count_indexed(sd, prefix + "downsample_layers.")
    if n == 0:
        raise ColorizerLoadError(f"checkpoint has no key {prefix}downsample_layers.0.1.weight")
    levels = [state_shape(sd, f"{prefix}downsample_layers.{i}.1.weight")[0] for i in range(n)]
    attn_dim = state_shape(sd, f"{prefix}attn_layer.to_q.weight")[0]
    module = XLSketchEncoder(in_channels, stem, levels, attn_dim, head_dim, dtype=dtype, device="meta",
                             operations=operations)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)
