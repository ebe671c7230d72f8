"""ScreenStyle (BidirectionalTranslation) networks of ColorFlow's "GrayImage(ScreenStyle)" decolorize step.

The colour -> screen direction needs two of the five released files:

- `latest_net_G_RGB2INTSCR.pth`: U-Net (8 levels, `UnetBlock_A`): additive skips, spectral-norm 3x3 convolutions,
  replicate padding, bilinear (align_corners) upsampling + 1x1 conv, LayerNorm without affine over the whole [C,H,W]
  tensor (padding included), output tanh. Spectral norm in eval mode: `W = W_orig / (u . W_orig_mat v)` with the
  stored `u`, `v` (no power iteration).
- `ScreenVAE/latest_net_dec.pth`: U-Net (7 levels, `UnetBlock_G`): concatenated skips, plain convolutions, the 3
  inner levels bilinear, the outer ones ConvTranspose(4, 2, 1), a 7x7 output conv, no tanh. The official code never
  puts it in eval mode: the two middle levels end in an active `Dropout(0.5)`, and the three outer inner levels add
  `w * randn + b` on their first half of channels (`ApplyNoise`). Both come from a `ScreenRandom`.

Quirk kept: every block but the outermost starts with an in-place LeakyReLU(0.2) on its input, so the skip carries
`lrelu(x)`, not `x`. Widths (ngf) and input channels are read from the files; the module trees carry the released
key names (Sequential indices included).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScreenRandom:
    """The decoder's random draws, in execution order: given noise tensors and dropout masks (parity), or a seeded
    CPU generator (the app draws them from the global, unseeded RNG)."""

    def __init__(self, seed: int | None = None, noise: list | None = None, masks: list | None = None):
        self.generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        self.noise_given = list(noise) if noise is not None else None
        self.masks_given = list(masks) if masks is not None else None

    def _draw(self, given: list | None, what: str, shape, make):
        if given is not None:
            if not given:
                raise ValueError(f"ScreenVAE: more {what} draws needed than given")
            t = given.pop(0)
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"ScreenVAE: {what} of shape {tuple(t.shape)} given where {tuple(shape)} is drawn")
            return t
        if self.generator is None:
            raise ValueError(f"ScreenVAE: no seed and no {what} given")
        return make(shape)

    def noise(self, shape):
        return self._draw(self.noise_given, "noise", shape,
                          lambda s: torch.randn(s, generator=self.generator, dtype=torch.float32))

    def mask(self, shape):
        return self._draw(self.masks_given, "dropout mask", shape,
                          lambda s: torch.empty(s, dtype=torch.float32).bernoulli_(0.5, generator=self.generator))


class SNConv2d(nn.Module):
    """A spectral-norm conv as stored (`weight_orig`, `weight_u`, `weight_v`, `bias`), evaluated in eval mode."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.stride = stride
        self.bias = nn.Parameter(torch.zeros(cout))
        self.weight_orig = nn.Parameter(torch.zeros(cout, cin, k, k))
        self.register_buffer("weight_u", torch.zeros(cout))
        self.register_buffer("weight_v", torch.zeros(cin * k * k))

    def forward(self, x):
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return F.conv2d(x, w / sigma, self.bias, stride=self.stride)


class LayerNormAll(nn.Module):
    """LayerNorm over [C, H, W] without affine (eps 1e-5), statistics over the whole (padded) tensor."""

    def forward(self, x):
        return F.layer_norm(x, x.shape[1:])


class ApplyNoise(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x, random: ScreenRandom):
        half = self.weight.shape[0] // 2
        zero = torch.zeros_like(self.weight[half:])
        w = torch.cat([self.weight[:half], zero]).view(1, -1, 1, 1)
        b = torch.cat([self.bias[:half], zero]).view(1, -1, 1, 1)
        noise = random.noise(tuple(x.shape)).to(x.device, x.dtype)
        return x + (w * noise + b)


class Dropout(nn.Module):
    """Training-mode Dropout(0.5) with the mask from the ScreenRandom: x * mask * 2."""

    def forward(self, x, random: ScreenRandom):
        return x * (random.mask(tuple(x.shape)).to(x.device, x.dtype) * 2.0)


def _lrelu():
    return nn.LeakyReLU(0.2)


def _bilinear_up(cin, cout):
    return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), nn.Conv2d(cin, cout, 1)]


class UnetLevel(nn.Module):
    """One `UnetBlock_A` (add=True, spectral norm) or `UnetBlock_G` (concat) level; `self.model` keeps the
    official Sequential indices, the submodule sits at its index and is called with the ScreenRandom."""

    def __init__(self, cin, outer, inner, sub=None, outermost=False, innermost=False, add=True, bilinear=True,
                 noise=False, dropout=False):
        super().__init__()
        self.outermost, self.add, self.noise = outermost, add, noise
        self.noiseblock = ApplyNoise(outer)
        conv3 = (lambda i, o, s=1: SNConv2d(i, o, 3, s)) if add else (lambda i, o, s=1: nn.Conv2d(i, o, 3, s))
        up_in = inner if (add or innermost) else inner * 2
        if outermost:
            if add:
                up = [_lrelu(), *_bilinear_up(up_in, outer), LayerNormAll(), _lrelu(), nn.ReplicationPad2d(1),
                      conv3(outer, outer)]
            else:
                up = [_lrelu(), nn.ConvTranspose2d(up_in, inner, 4, 2, 1), LayerNormAll(), _lrelu(),
                      nn.ReplicationPad2d(3), nn.Conv2d(inner, outer, 7)]
            layers = [nn.ReplicationPad2d(1), conv3(cin, inner, 2), sub, *up]
        else:
            upconv = _bilinear_up(up_in, outer) if bilinear else [nn.ConvTranspose2d(up_in, outer, 4, 2, 1)]
            up = [_lrelu(), *upconv, LayerNormAll(), _lrelu(), nn.ReplicationPad2d(1), conv3(outer, outer),
                  LayerNormAll()]
            down = [_lrelu(), nn.ReplicationPad2d(1), conv3(cin, inner, 2)]
            layers = down + up if innermost else down + [LayerNormAll(), sub] + up + ([Dropout()] if dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x, random: ScreenRandom | None = None):
        layers = list(self.model)
        if not self.outermost:
            x = layers.pop(0)(x)          # the official in-place LeakyReLU: the skip below sees lrelu(x)
        y = x
        for layer in layers:
            y = layer(y, random) if isinstance(layer, (UnetLevel, Dropout)) else layer(y)
        if self.outermost:
            return y
        if self.noise:
            y = self.noiseblock(y, random)
        if self.add:
            if y.shape[-2:] != x.shape[-2:]:
                y = F.interpolate(y, x.shape[2:])
            return y + x
        return torch.cat([y, x], 1)


def _unet(input_nc, output_nc, ngf, num_downs, add, bilinear_levels, noise_levels=0, dropout=False):
    """`G_Unet_add_input` (add=True) / `G_Unet_add_input_G` (add=False) with nz = 0."""
    big = ngf * 8
    block = UnetLevel(big, big, big, innermost=True, add=add)
    for _ in range(num_downs - 5):
        block = UnetLevel(big, big, big, block, add=add, dropout=dropout)
    for i, (outer, inner) in enumerate(((ngf * 4, big), (ngf * 2, ngf * 4), (ngf, ngf * 2))):
        block = UnetLevel(outer, outer, inner, block, add=add, bilinear=bilinear_levels,
                          noise=i < noise_levels)
    return UnetLevel(input_nc, output_nc, ngf, block, outermost=True, add=add, bilinear=bilinear_levels)


class ScreenGenerator(nn.Module):
    """`G_RGB2INTSCR`: tanh(U-Net(cat([L, A]))), 8 levels, bilinear everywhere, no noise, no dropout."""

    def __init__(self, input_nc=4, output_nc=4, ngf=48, num_downs=8):
        super().__init__()
        self.model = _unet(input_nc, output_nc, ngf, num_downs, add=True, bilinear_levels=True)

    def forward(self, x):
        return torch.tanh(self.model(x))


class ScreenDecoder(nn.Module):
    """ScreenVAE `dec`: U-Net 7 levels, noise on the 3 outer inner levels, training-mode dropout in the middle."""

    def __init__(self, input_nc=4, output_nc=1, ngf=48, num_downs=7):
        super().__init__()
        self.model = _unet(input_nc, output_nc, ngf, num_downs, add=False, bilinear_levels=False, noise_levels=3,
                           dropout=True)

    def forward(self, x, random: ScreenRandom):
        return self.model(x, random)


def _num_levels(sd: dict) -> int:
    return 1 + max(k.count("model.") for k in sd if k.endswith("noiseblock.weight")) - 1


def generator_from_state(sd: dict) -> ScreenGenerator:
    """A ScreenGenerator shaped like the state dict (ngf, channels and depth read from it)."""
    first = sd["model.model.1.weight_orig"]
    last = sd["model.noiseblock.weight"]
    return ScreenGenerator(int(first.shape[1]), int(last.shape[0]), int(first.shape[0]), _num_levels(sd))


def decoder_from_state(sd: dict) -> ScreenDecoder:
    first = sd["model.model.1.weight"]
    last = sd["model.noiseblock.weight"]
    return ScreenDecoder(int(first.shape[1]), int(last.shape[0]), int(first.shape[0]), _num_levels(sd))
