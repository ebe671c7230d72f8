"""ColorFlow's guided super-resolution network (`MultiResNetModel.bin`): per VAE encoder level, four ResNet blocks
(conv-BN-ReLU-conv-BN plus a shortcut, ReLU) read the colour result's and the black-and-white page's encoder
features side by side and give the decoder a feature map of the channels of the decoder level it is added to.

Key names are the released file's (`two_layer_resnets.{level}.block{1..4}.{conv1,bn1,conv2,bn2,shortcut.0,
shortcut.1}`), so the file loads unchanged. BatchNorm: the released app never switches the network to eval mode,
so it normalises with the statistics of the picture being processed (`batch_statistics=True`, the default here);
the running statistics of the file are the documented alternative. The running statistics are never updated.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = 4


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor, batch_statistics: bool) -> torch.Tensor:
        out = F.relu(_norm(self.bn1, self.conv1(x), batch_statistics))
        out = _norm(self.bn2, self.conv2(out), batch_statistics)
        if len(self.shortcut):
            x = _norm(self.shortcut[1], self.shortcut[0](x), batch_statistics)
        return F.relu(out + x)


def _norm(bn: nn.BatchNorm2d, x: torch.Tensor, batch_statistics: bool) -> torch.Tensor:
    """BatchNorm with this picture's statistics (the released app) or the file's running ones."""
    if batch_statistics:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


class LevelResNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        for i in range(1, BLOCKS + 1):
            self.add_module(f"block{i}", ResidualBlock(in_channels if i == 1 else out_channels, out_channels))

    def forward(self, x: torch.Tensor, batch_statistics: bool) -> torch.Tensor:
        for i in range(1, BLOCKS + 1):
            x = getattr(self, f"block{i}")(x, batch_statistics)
        return x


class GuidedSuperResolution(nn.Module):
    """`channels[i]`: the channels of encoder feature i (conv_in output, then each down level's output); feature i
    of both pictures (2 x channels[i]) becomes channels[min(n-1, i+2)], the decoder's channels where it is added."""

    def __init__(self, channels: list[int]):
        super().__init__()
        n = len(channels)
        self.channels = list(channels)
        self.two_layer_resnets = nn.ModuleList(LevelResNet(2 * channels[i], channels[min(n - 1, i + 2)])
                                               for i in range(n))

    def forward(self, colour_features: list, page_features: list, batch_statistics: bool = True) -> list:
        return [net(torch.cat([c, p], 1), batch_statistics)
                for net, c, p in zip(self.two_layer_resnets, colour_features, page_features)]

    @staticmethod
    def channels_of(sd: dict) -> list[int]:
        """The channel list a state dict was built with (from its first conv of each level)."""
        levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"two_layer_resnets\.(\d+)\.", k))})
        if not levels or levels != list(range(len(levels))):
            raise ValueError("no two_layer_resnets.<level> keys")
        ins = [int(sd[f"two_layer_resnets.{i}.block1.conv1.weight"].shape[1]) // 2 for i in levels]
        return ins
