"""ColorFlow's ColorGuider for SD1.5 (the GraySD model): a BrushNet-like copy of the UNet that reads the noisy latent
beside the 5-channel conditioning (canvas latent + mask) with self-attention only (no text), and returns one
residual per UNet skip point through zero 1x1 convolutions: 12 for the encoder (conv_in, each resnet(+attention),
each downsampler), 1 after the mid block, 15 for the decoder (each resnet(+attention), each upsampler).

Plain torch, built from the released `config.json`; the parameter names are the released file's, so its weights
load unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - shift))
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1) if flip_sin_to_cos else emb


class TimestepMLP(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, out)
        self.linear_2 = nn.Linear(out, out)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = (f(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
                   for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, c))


class GEGLUFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([nn.Module(), nn.Identity(), nn.Linear(dim * mult, dim)])
        self.net[0].proj = nn.Linear(dim, dim * mult * 2)

    def forward(self, x):
        h, gate = self.net[0].proj(x).chunk(2, dim=-1)
        return self.net[2](h * F.gelu(gate))


class SelfAttentionBlock(nn.Module):
    """A transformer block with self-attention and feed-forward only (no text cross-attention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = SelfAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = GEGLUFeedForward(dim)

    def forward(self, x):
        x = self.attn1(self.norm1(x)) + x
        return self.ff(self.norm3(x)) + x


class SpatialSelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([SelfAttentionBlock(channels, heads)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            t = block(t)
        return self.proj_out(t.reshape(b, h, w, c).permute(0, 3, 1, 2)) + x


class Resample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, stride=1)


class Downsample(Resample):
    def __init__(self, channels: int):
        super().__init__(channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, stride=2)

    def forward(self, x):
        return self.conv(x)


class Upsample(Resample):
    def forward(self, x, size=None):
        return self.conv(F.interpolate(x, size=size, scale_factor=None if size else 2.0, mode="nearest"))


class Block(nn.Module):
    """One down or up block: resnets, optional self-attentions, optional resampler."""

    def __init__(self, resnets, attentions, resampler, key: str):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        self._resampler_key = key if resampler is not None else None
        if resampler is not None:
            setattr(self, key, nn.ModuleList([resampler]))

    @property
    def resampler(self):
        return getattr(self, self._resampler_key)[0] if self._resampler_key else None

    def layers(self):
        attns = getattr(self, "attentions", None)
        return [(r, attns[i] if attns is not None else None) for i, r in enumerate(self.resnets)]


class ColorGuiderSD(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        ch = list(config["block_out_channels"])
        layers = int(config.get("layers_per_block", 2))
        groups, eps = int(config.get("norm_num_groups", 32)), float(config.get("norm_eps", 1e-5))
        heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
        heads = [heads] * len(ch) if isinstance(heads, int) else list(heads)
        self.flip, self.shift = bool(config.get("flip_sin_to_cos", True)), float(config.get("freq_shift", 0))
        temb = ch[0] * 4
        self.time_embedding = TimestepMLP(ch[0], temb)
        self.conv_in_condition = nn.Conv2d(int(config.get("in_channels", 4)) + int(config["conditioning_channels"]),
                                           ch[0], 3, padding=1)
        down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
        zero = [nn.Conv2d(ch[0], ch[0], 1)]
        self.down_blocks = nn.ModuleList()
        cout = ch[0]
        for i, kind in enumerate(down_types):
            cin, cout = cout, ch[i]
            last = i == len(ch) - 1
            attn = kind.startswith("SelfAttn")
            self.down_blocks.append(Block(
                [ResnetBlock(cin if j == 0 else cout, cout, temb, groups, eps) for j in range(layers)],
                [SpatialSelfAttention(cout, heads[i], groups) for _ in range(layers)] if attn else [],
                None if last else Downsample(cout), "downsamplers"))
            zero += [nn.Conv2d(cout, cout, 1) for _ in range(layers + (0 if last else 1))]
        self.brushnet_down_blocks = nn.ModuleList(zero)
        self.mid_block = nn.Module()
        self.mid_block.resnets = nn.ModuleList([ResnetBlock(ch[-1], ch[-1], temb, groups, eps) for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([SpatialSelfAttention(ch[-1], heads[-1], groups)])
        self.brushnet_mid_block = nn.Conv2d(ch[-1], ch[-1], 1)
        rch, rheads = ch[::-1], heads[::-1]
        self.up_blocks = nn.ModuleList()
        zero = []
        cout = rch[0]
        for i, kind in enumerate(up_types):
            prev, cout = cout, rch[i]
            skip_in = rch[min(i + 1, len(ch) - 1)]
            last = i == len(ch) - 1
            attn = kind.startswith("SelfAttn")
            self.up_blocks.append(Block(
                [ResnetBlock((prev if j == 0 else cout) + (skip_in if j == layers else cout), cout, temb, groups,
                             eps) for j in range(layers + 1)],
                [SpatialSelfAttention(cout, rheads[i], groups) for _ in range(layers + 1)] if attn else [],
                None if last else Upsample(cout), "upsamplers"))
            zero += [nn.Conv2d(cout, cout, 1) for _ in range(layers + 1 + (0 if last else 1))]
        self.brushnet_up_blocks = nn.ModuleList(zero)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor,
                scale: float = 1.0) -> tuple[list, torch.Tensor, list]:
        """(12 encoder residuals, the mid residual, 15 decoder residuals), each times `scale`."""
        t = timestep.expand(sample.shape[0]) if timestep.ndim == 0 or timestep.shape[0] == 1 else timestep
        temb = timestep_embedding(t, self.time_embedding.linear_1.in_features, self.flip, self.shift)
        temb = self.time_embedding(temb.to(sample.dtype))
        h = self.conv_in_condition(torch.cat([sample, condition.to(sample.dtype)], 1))
        skips = [h]
        for block in self.down_blocks:
            for resnet, attn in block.layers():
                h = resnet(h, temb)
                h = attn(h) if attn is not None else h
                skips.append(h)
            if block.resampler is not None:
                h = block.resampler(h)
                skips.append(h)
        down = [z(s) * scale for z, s in zip(self.brushnet_down_blocks, skips)]
        mb = self.mid_block
        h = mb.resnets[1](mb.attentions[0](mb.resnets[0](h, temb)), temb)
        mid = self.brushnet_mid_block(h) * scale
        outs = []
        for i, block in enumerate(self.up_blocks):
            for resnet, attn in block.layers():
                h = resnet(torch.cat([h, skips.pop()], 1), temb)
                h = attn(h) if attn is not None else h
                outs.append(h)
            if block.resampler is not None:
                h = block.resampler(h, skips[-1].shape[-2:])
                outs.append(h)
        up = [z(s) * scale for z, s in zip(self.brushnet_up_blocks, outs)]
        return down, mid, up
