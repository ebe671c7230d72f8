"""The line-extractor networks, with the key names of their released files.

- `SketchKeras` (tellurion `model.pth`): 6 down + 4 up blocks, ReflectionPad, BatchNorm eps 1e-3.
- `build_anime2sketch()` (lllyasviel `netG.pth`): pix2pix U-Net generator, 8 downsamplings, ngf 64,
  InstanceNorm without affine (so every conv has a bias), tanh, output clamped to [-1, 1].
- `MangaLineNet` (lllyasviel `erika.pth`): MangaLineExtraction residual U-Net, BN eps 1e-3, LeakyReLU 0.2,
  nearest upsampling, output `clamp(y, 0, 255) / 127.5 - 1`.
- `LineartDetector` (lllyasviel `sk_model.pth`, ControlNet "lineart"): wraps `Generator(3, 1, 3 blocks)`,
  InstanceNorm, sigmoid; the file holds the Generator keys (no leading `model.`).
Sequential indices are part of the key names and therefore fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------- sketchKeras
def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0)


def _down(cin, cout, k, s):
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, k, stride=s), _bn(cout), nn.ReLU()]


class _Upsample2x(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode=self.mode)


def _up(cin, cmid, cout):
    return nn.Sequential(_Upsample2x("bicubic"), nn.ReflectionPad2d((1, 2, 1, 2)), nn.Conv2d(cin, cmid, 4),
                         _bn(cmid), nn.ReLU(), *_down(cmid, cout, 3, 1))


class SketchKeras(nn.Module):
    def __init__(self):
        super().__init__()
        self.downblock_1 = nn.Sequential(*_down(1, 32, 3, 1))
        self.downblock_2 = nn.Sequential(*_down(32, 64, 4, 2), *_down(64, 64, 3, 1))
        self.downblock_3 = nn.Sequential(*_down(64, 128, 4, 2), *_down(128, 128, 3, 1))
        self.downblock_4 = nn.Sequential(*_down(128, 256, 4, 2), *_down(256, 256, 3, 1))
        self.downblock_5 = nn.Sequential(*_down(256, 512, 4, 2))
        self.downblock_6 = nn.Sequential(*_down(512, 512, 3, 1))
        self.upblock_1 = _up(1024, 512, 256)
        self.upblock_2 = _up(512, 256, 128)
        self.upblock_3 = _up(256, 128, 64)
        self.upblock_4 = _up(128, 64, 32)
        self.last_pad = nn.ReflectionPad2d(1)
        self.last_conv = nn.Conv2d(64, 1, 3)

    def forward(self, x):
        d1 = self.downblock_1(x)
        d2 = self.downblock_2(d1)
        d3 = self.downblock_3(d2)
        d4 = self.downblock_4(d3)
        d5 = self.downblock_5(d4)
        d6 = self.downblock_6(d5)
        u = self.upblock_1(torch.cat((d5, d6), 1))
        u = self.upblock_2(torch.cat((d4, u), 1))
        u = self.upblock_3(torch.cat((d3, u), 1))
        u = self.upblock_4(torch.cat((d2, u), 1))
        return self.last_conv(self.last_pad(torch.cat((d1, u), 1)))


# ----------------------------------------------------------------------------------------- anime2sketch
class _Cat(nn.Module):
    """pix2pix skip block: x -> cat(x, inner(x)); the outermost one returns inner(x) clamped to [-1, 1]."""

    def __init__(self, layers: list, outermost: bool):
        super().__init__()
        self.outermost = outermost
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        y = self.model(x)
        return y.clamp(-1, 1) if self.outermost else torch.cat([x, y], 1)


class _Anime2Sketch(nn.Module):
    def __init__(self, root: nn.Module):
        super().__init__()
        self.model = root

    def forward(self, x):
        return self.model(x)


def build_anime2sketch(input_nc: int = 3, output_nc: int = 1, num_downs: int = 8, ngf: int = 64) -> nn.Module:
    """UnetGenerator(3, 1, 8, 64, InstanceNorm2d(affine=False), no dropout), built innermost first."""
    def norm(c):
        return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)

    def conv(i, o):
        return nn.Conv2d(i, o, 4, stride=2, padding=1, bias=True)

    def deconv(i, o):
        return nn.ConvTranspose2d(i, o, 4, stride=2, padding=1, bias=True)

    lrelu, relu = (lambda: nn.LeakyReLU(0.2, True)), (lambda: nn.ReLU(True))
    inner = ngf * 8
    block = _Cat([lrelu(), conv(inner, inner), relu(), deconv(inner, inner), norm(inner)], False)
    widths = [(inner, inner)] * (num_downs - 5) + [(ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)]
    for outer_c, inner_c in widths:
        block = _Cat([lrelu(), conv(outer_c, inner_c), norm(inner_c), block,
                      relu(), deconv(inner_c * 2, outer_c), norm(outer_c)], False)
    root = _Cat([conv(input_nc, ngf), block, relu(), deconv(ngf * 2, output_nc), nn.Tanh()], True)
    return _Anime2Sketch(root)


# ----------------------------------------------------------------------------------------- manga lines
def _bn_lrelu_conv(cin, cout, k=3, stride=1, upsample=False):
    layers = [nn.BatchNorm2d(cin, eps=1e-3), nn.LeakyReLU(0.2), nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return _Seq(layers)


class _Seq(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class _Shortcut(nn.Module):
    """x + y, with a 1x1 conv on x when the widths or the stride differ (then upsampled if `up`)."""

    def __init__(self, cin, cout, stride=1, up=False):
        super().__init__()
        needed = cin != cout or (stride != 1 and not up)
        if needed:
            layers = [nn.Conv2d(cin, cout, 1, stride=stride)]
            if up:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            self.model = nn.Sequential(*layers)
        else:
            self.model = None

    def forward(self, x, y):
        return (self.model(x) if self.model is not None else x) + y


class _Block(nn.Module):
    def __init__(self, cin, cout, stride=1, up=False):
        super().__init__()
        self.conv1 = _bn_lrelu_conv(cin, cout, stride=stride, upsample=up)
        self.residual = _bn_lrelu_conv(cout, cout)
        self.shortcut = _Shortcut(cin, cout, stride, up)

    def forward(self, x):
        return self.shortcut(x, self.residual(self.conv1(x)))


def _stage(cin, cout, reps, first=False, up=False):
    blocks = []
    for i in range(reps):
        c_in = cin if i == 0 else cout
        if up:
            blocks.append(_Block(c_in, cout, up=(i == 0)))
        else:
            blocks.append(_Block(c_in, cout, stride=2 if (i == reps - 1 and not first) else 1))
    return _Seq(blocks)


MANGA_WIDTHS = (24, 48, 96, 192, 384, 16)   # the released erika.pth: block0..block4, then block9


def manga_widths(sd: dict) -> tuple[int, ...]:
    """The widths of a res_skip state dict (block0..block4 and block9), read from its first convolutions."""
    try:
        return tuple(int(sd[f"block{i}.model.0.conv1.model.2.weight"].shape[0]) for i in (0, 1, 2, 3, 4, 9))
    except KeyError as exc:
        raise KeyError(f"not a MangaLineExtraction (res_skip) state dict: no {exc.args[0]}") from None


class MangaLineNet(nn.Module):
    """MangaLineExtraction `res_skip`; `widths` = block0..block4 and block9 (the released file's by default).

    `forward` is the ControlNet annotator's use (`clamp(y, 0, 255) / 127.5 - 1`); `raw` is the bare network output,
    which ColorFlow's decolorize step uses."""

    def __init__(self, widths: tuple[int, ...] = MANGA_WIDTHS):
        super().__init__()
        c0, c1, c2, c3, c4, c9 = widths
        self.block0 = _stage(1, c0, 2, first=True)
        self.block1 = _stage(c0, c1, 3)
        self.block2 = _stage(c1, c2, 5)
        self.block3 = _stage(c2, c3, 7)
        self.block4 = _stage(c3, c4, 12)
        self.block5 = _stage(c4, c3, 7, up=True)
        self.res1 = _Shortcut(c3, c3)
        self.block6 = _stage(c3, c2, 5, up=True)
        self.res2 = _Shortcut(c2, c2)
        self.block7 = _stage(c2, c1, 3, up=True)
        self.res3 = _Shortcut(c1, c1)
        self.block8 = _stage(c1, c0, 2, up=True)
        self.res4 = _Shortcut(c0, c0)
        self.block9 = _stage(c0, c9, 2, first=True)
        self.conv15 = _bn_lrelu_conv(c9, 1, k=1)

    def raw(self, x):
        x0 = self.block0(x)
        x1 = self.block1(x0)
        x2 = self.block2(x1)
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        r = self.res1(x3, self.block5(x4))
        r = self.res2(x2, self.block6(r))
        r = self.res3(x1, self.block7(r))
        r = self.res4(x0, self.block8(r))
        return self.conv15(self.block9(r))

    def forward(self, x):
        return self.raw(x).clamp(0, 255) / 127.5 - 1.0


# ----------------------------------------------------------------------------------------- sk_model
def _inorm(c):
    return nn.InstanceNorm2d(c)


class _ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _inorm(c), nn.ReLU(True),
                                        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _inorm(c))

    def forward(self, x):
        return x + self.conv_block(x)


class LineartGenerator(nn.Module):
    def __init__(self, input_nc: int = 3, output_nc: int = 1, n_residual_blocks: int = 3):
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, 64, 7), _inorm(64), nn.ReLU(True))
        self.model1 = nn.Sequential(nn.Conv2d(64, 128, 3, stride=2, padding=1), _inorm(128), nn.ReLU(True),
                                    nn.Conv2d(128, 256, 3, stride=2, padding=1), _inorm(256), nn.ReLU(True))
        self.model2 = nn.Sequential(*[_ResidualBlock(256) for _ in range(n_residual_blocks)])
        self.model3 = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1), _inorm(128), nn.ReLU(True),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), _inorm(64), nn.ReLU(True))
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, output_nc, 7), nn.Sigmoid())

    def forward(self, x):
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))


class LineartDetector(nn.Module):
    """The app's wrapper: `self.model = Generator(3, 1, 3)`; weight files hold `self.model`'s keys."""

    def __init__(self):
        super().__init__()
        self.model = LineartGenerator(3, 1, 3)

    def forward(self, x):
        return self.model(x)
