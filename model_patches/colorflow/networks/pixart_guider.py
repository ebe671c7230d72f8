"""ColorFlow's ColorGuider for PixArt-alpha (the sketch and shaded-sketch models): a patch embedding of the noisy
latent beside the 9-channel conditioning, half as many transformer blocks as the base with self-attention and
feed-forward only (adaLN-single modulation by the timestep and the canvas size), and after each block a zero-
initialised linear "adapter" whose output is added after the same block of the base transformer.

Plain torch, built from the released `config.json`, parameter names as in the released file (which also holds the
last adapter a second time as `after_proj.*`: the official constructor assigns it in a loop).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .sd_guider import TimestepMLP, timestep_embedding

FREQUENCY_CHANNELS = 256


@functools.lru_cache(maxsize=16)
def sincos_pos_embed_2d(dim: int, h: int, w: int, base: float) -> torch.Tensor:
    """[h*w, dim] sine-cosine position embedding with grid i / (n / base), as the official numpy computes it,
    width half first. Cached: every step of a page (and the guider beside the base) uses the same one."""
    def one(positions: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
        out = positions.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    # the official grid is float32 (numpy), its sines float64
    gh = (torch.arange(h, dtype=torch.float32) / (h / base)).double()
    gw = (torch.arange(w, dtype=torch.float32) / (w / base)).double()
    grid_w, grid_h = torch.meshgrid(gw, gh, indexing="xy")
    return torch.cat([one(grid_w), one(grid_h)], dim=1)


def position_base(config: dict) -> float:
    """base_size / interpolation_scale of the released PixArt configs (32 for 512-MS and 1024-MS)."""
    sample, patch = int(config.get("sample_size", 128)), int(config.get("patch_size", 2))
    interp = config.get("interpolation_scale") or max(sample // 64, 1)
    return (sample // patch) / interp


class PatchEmbed(nn.Module):
    def __init__(self, cin: int, dim: int, patch: int, base: float):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, patch, stride=patch)
        self.patch, self.base = patch, base

    def forward(self, x):
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        pe = sincos_pos_embed_2d(tokens.shape[-1], h, w, self.base).to(tokens)
        return tokens + pe[None]


class SizeConditionedTimestep(nn.Module):
    """adaLN-single: the timestep embedding (+ the canvas size and aspect ratio) -> 6 modulation vectors."""

    def __init__(self, dim: int, sizes: bool):
        super().__init__()
        self.emb = nn.Module()
        self.emb.timestep_embedder = TimestepMLP(FREQUENCY_CHANNELS, dim)
        if sizes:
            self.emb.resolution_embedder = TimestepMLP(FREQUENCY_CHANNELS, dim // 3)
            self.emb.aspect_ratio_embedder = TimestepMLP(FREQUENCY_CHANNELS, dim // 3)
        self.sizes = sizes
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, t, resolution, aspect_ratio, dtype):
        b = t.shape[0]
        emb = self.emb.timestep_embedder(timestep_embedding(t, FREQUENCY_CHANNELS).to(dtype))
        if self.sizes:
            res = self.emb.resolution_embedder(timestep_embedding(resolution.flatten(), FREQUENCY_CHANNELS).to(dtype))
            ar = self.emb.aspect_ratio_embedder(timestep_embedding(aspect_ratio.flatten(), FREQUENCY_CHANNELS)
                                                .to(dtype))
            emb = emb + torch.cat([res.reshape(b, -1), ar.reshape(b, -1)], dim=1)
        return self.linear(F.silu(emb))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = (f(x).view(b, n, self.heads, c // self.heads).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        return self.to_out[0](F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([nn.Module(), nn.Identity(), nn.Linear(dim * mult, dim)])
        self.net[0].proj = nn.Linear(dim, dim * mult)

    def forward(self, x):
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.eps = eps
        self.attn1 = Attention(dim, heads)
        self.ff = FeedForward(dim)
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))

    def forward(self, x, modulation):
        b = x.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + modulation.reshape(b, 6, -1)).chunk(6, dim=1)
        n = F.layer_norm(x, x.shape[-1:], eps=self.eps) * (1 + scale_msa) + shift_msa
        x = gate_msa * self.attn1(n) + x
        n = F.layer_norm(x, x.shape[-1:], eps=self.eps) * (1 + scale_mlp) + shift_mlp
        return gate_mlp * self.ff(n) + x


class ColorGuiderPixArt(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        heads, head_dim = int(config["num_attention_heads"]), int(config["attention_head_dim"])
        dim = heads * head_dim
        sizes = config.get("use_additional_conditions")
        self.sizes = bool(int(config.get("sample_size", 128)) == 128 if sizes is None else sizes)
        self.pos_embed = PatchEmbed(int(config.get("in_channels", 4)) + int(config["cond_channels"]), dim,
                                    int(config.get("patch_size", 2)), position_base(config))
        depth = int(config["num_layers"]) // 2
        eps = float(config.get("norm_eps", 1e-6))
        self.transformer_blocks = nn.ModuleList(Block(dim, heads, eps) for _ in range(depth))
        self.adapter_linear = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.adaln_single = SizeConditionedTimestep(dim, self.sizes)

    @staticmethod
    def DUPLICATE_KEYS(sd: dict) -> tuple:  # noqa: N802 - the released file's quirk, named as a constant
        """`after_proj.*`: the last adapter stored twice; ignored when it equals `adapter_linear.<last>.*`."""
        last = max((int(k.split(".")[1]) for k in sd if k.startswith("adapter_linear.")), default=-1)
        dup = tuple(k for k in sd if k.startswith("after_proj."))
        if all(torch.equal(sd[k], sd.get(f"adapter_linear.{last}.{k.split('.', 1)[1]}", torch.empty(0))) for k in dup):
            return dup
        return ()

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, resolution: torch.Tensor, aspect_ratio: torch.Tensor,
                scale: float = 1.0) -> list:
        """One residual [B, tokens, dim] per guider block, for the base's blocks 0..n-1. `x`: the noisy latent
        concatenated with the conditioning latents."""
        t = timestep.expand(x.shape[0]) if timestep.ndim == 0 or timestep.shape[0] == 1 else timestep
        h = self.pos_embed(x)
        modulation = self.adaln_single(t, resolution, aspect_ratio, h.dtype)
        out = []
        for block, adapter in zip(self.transformer_blocks, self.adapter_linear):
            h = block(h, modulation)
            out.append(adapter(h) * scale)
        return out

