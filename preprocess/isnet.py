"""ISNet (IS-Net / DIS, SkyTNT anime-segmentation architecture) and the app's two mask procedures.

`ISNetDIS` keeps the key names of the released `sketch-segment.safetensors` / `isnetis.safetensors`
(`conv_in`, `stage1..6`, `stage5d..1d`, `side1..6`; RSU blocks `rebnconvin`, `rebnconvN[d]` with
`conv_s1` / `bn_s1`). Only `side1` is used by forward; `side2..6` are in the files and loaded strictly.

Procedures (official `ISNetDIS.proceed`):
- `sketch_mask`: sketch side (crop=False): plain bicubic squash to size x size, no normalisation
  (the white-paper sketch in [-1, 1] goes in as is), sigmoid out, bicubic to (H, W), clamp.
- `reference_mask`: reference side (crop=True): long side scaled to `size` with `scale_factor`,
  centred on a -1 canvas, then `1 - (canvas + 1) / 2` (colours inverted, white padding), output cropped
  back, bicubic to (h, w), clamp, optional 11x11 max-pool dilation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .convert import letterbox
from .masks import dilate as dilate_mask


def _up_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class REBNCONV(nn.Module):
    """3x3 conv (dilated) + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of `depth` levels (RSU7..RSU4: pooled; RSU4F: dilated, no pooling)."""

    def __init__(self, depth: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.depth, self.dilated = depth, dilated
        self.rebnconvin = REBNCONV(cin, cout)
        if dilated:  # RSU4F: dilations 1, 2, 4 then 8 at the bottom; decoder 4, 2, 1
            enc_dil = [1, 2, 4]
            dec_dil = [4, 2, 1]
            bottom = 8
        else:
            enc_dil = [1] * (depth - 1)
            dec_dil = [1] * (depth - 1)
            bottom = 2
        for i in range(1, depth):
            self.add_module(f"rebnconv{i}", REBNCONV(cout if i == 1 else mid, mid, enc_dil[i - 1]))
        self.add_module(f"rebnconv{depth}", REBNCONV(mid, mid, bottom))
        for i in range(depth - 1, 0, -1):
            self.add_module(f"rebnconv{i}d", REBNCONV(mid * 2, cout if i == 1 else mid, dec_dil[depth - 1 - i]))

    def forward(self, x):
        hxin = self.rebnconvin(x)
        feats = []
        h = hxin
        for i in range(1, self.depth):
            h = getattr(self, f"rebnconv{i}")(h)
            feats.append(h)
            if not self.dilated and i < self.depth - 1:
                h = _pool(h)
        d = getattr(self, f"rebnconv{self.depth}")(h)
        for i in range(self.depth - 1, 0, -1):
            d = getattr(self, f"rebnconv{i}d")(torch.cat((d, feats[i - 1]), 1))
            if not self.dilated and i > 1:
                d = _up_like(d, feats[i - 2])
        return d + hxin


class ISNetDIS(nn.Module):
    def __init__(self, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, 64, 3, stride=2, padding=1)
        self.stage1 = RSU(7, 64, 32, 64)
        self.stage2 = RSU(6, 64, 32, 128)
        self.stage3 = RSU(5, 128, 64, 256)
        self.stage4 = RSU(4, 256, 128, 512)
        self.stage5 = RSU(4, 512, 256, 512, dilated=True)
        self.stage6 = RSU(4, 512, 256, 512, dilated=True)
        self.stage5d = RSU(4, 1024, 256, 512, dilated=True)
        self.stage4d = RSU(4, 1024, 128, 256)
        self.stage3d = RSU(5, 512, 64, 128)
        self.stage2d = RSU(6, 256, 32, 64)
        self.stage1d = RSU(7, 128, 16, 64)
        self.side1 = nn.Conv2d(64, out_ch, 3, padding=1)
        self.side2 = nn.Conv2d(64, out_ch, 3, padding=1)
        self.side3 = nn.Conv2d(128, out_ch, 3, padding=1)
        self.side4 = nn.Conv2d(256, out_ch, 3, padding=1)
        self.side5 = nn.Conv2d(512, out_ch, 3, padding=1)
        self.side6 = nn.Conv2d(512, out_ch, 3, padding=1)

    def forward(self, x):
        hxin = self.conv_in(x)          # the official pool_in result is never used
        h1 = self.stage1(hxin)
        h2 = self.stage2(_pool(h1))
        h3 = self.stage3(_pool(h2))
        h4 = self.stage4(_pool(h3))
        h5 = self.stage5(_pool(h4))
        h6 = self.stage6(_pool(h5))
        d5 = self.stage5d(torch.cat((_up_like(h6, h5), h5), 1))
        d4 = self.stage4d(torch.cat((_up_like(d5, h4), h4), 1))
        d3 = self.stage3d(torch.cat((_up_like(d4, h3), h3), 1))
        d2 = self.stage2d(torch.cat((_up_like(d3, h2), h2), 1))
        d1 = self.stage1d(torch.cat((_up_like(d2, h1), h1), 1))
        return torch.sigmoid(_up_like(self.side1(d1), x))


def _run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    p = next(net.parameters())
    with torch.no_grad():
        return net(x.to(p.device, p.dtype)).to(x.device, torch.float32)


def sketch_mask(net: nn.Module, white_sketch: torch.Tensor, height: int, width: int, size: int = 1024
                ) -> torch.Tensor:
    """Official sketch mask (`proceed(crop=False)`): [B,3,h,w] black-on-white in [-1,1] -> [B,1,H,W] in [0,1]."""
    x = F.interpolate(white_sketch.float(), size=(size, size), mode="bicubic")
    out = _run(net, x)
    return F.interpolate(out, size=(height, width), mode="bicubic").clamp(0, 1)


def reference_canvas(reference: torch.Tensor, size: int = 1024) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The ISNet input of the reference mask: the reference [B,3,h,w] in [-1,1] scaled to fit size² (bicubic),
    centred on a -1 canvas, then mapped to 1 - (x + 1) / 2; with the box (ph, pw, h', w') it occupies."""
    x = reference.float()
    h, w = x.shape[-2:]
    scale = size / max(h, w)
    nh, nw = int(h * scale), int(w * scale)
    scaled = F.interpolate(x, scale_factor=scale, mode="bicubic")
    if scaled.shape[-2:] != (nh, nw):  # float rounding of the two size rules; never seen, kept safe
        scaled = F.interpolate(x, size=(nh, nw), mode="bicubic")
    canvas, (pw, ph, _, _) = letterbox(scaled, size, size, fill=-1.0)
    return 1 - (canvas + 1.0) / 2.0, (ph, pw, nh, nw)


def reference_mask(net: nn.Module, reference: torch.Tensor, size: int = 1024, dilate: bool = True) -> torch.Tensor:
    """Official ISNet reference mask (`proceed(crop=True)`): [B,3,h,w] in [-1,1] -> [B,1,h,w] in [0,1]."""

    h, w = reference.shape[-2:]
    canvas, (ph, pw, nh, nw) = reference_canvas(reference, size)
    out = _run(net, canvas)[:, :, ph:ph + nh, pw:pw + nw]
    mask = F.interpolate(out, size=(h, w), mode="bicubic").clamp(0, 1)
    return dilate_mask(mask) if dilate else mask
