"""Text manipulation of the reference tokens (the official app's `-manipulate` option), and its heat map.

The CLIP text tower (OpenCLIP ViT-H/14's, beside the image tower in `open_clip_pytorch_model.bin`) encodes
prompts as the official `FrozenOpenCLIPEmbedder(clip_skip=1)` does: the last resblock is skipped, the EOT row is
projected and L2-normalised. A manipulation group moves the local reference tokens along a target prompt, the
more the more similar a token is to a control prompt (`local_group`); `global_group` is the official form for
CLS-token models. The maths, step by step: ../shared/golden/README.md §10.3 (the golden cases follow the
official code, quirks included).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ColorizerInputError, ColorizerLoadError
from ...preprocess import convert
from ...weight_files import load_strict, read_state_dict
from ..common import clip_tokens, extra_networks
from ..common.clip_vision import read_sidecar_config
from .networks.common import count_indexed

NO_ANCHOR = "none"
KNOWN_TEXT_HEADS_BY_WIDTH = {512: 8, 768: 12, 1024: 16, 1280: 20}
PW_RATIO = 2.0     # official compute_pwv: the least similar tokens move by -ratio·Δ


# --------------------------------------------------------------------------------------------- text tower

class _ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp, width))

    def forward(self, x, mask):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class TextTower(nn.Module):
    """OpenCLIP's text transformer (open_clip key names), run the official way (`clip_skip=1`)."""

    def __init__(self, vocab: int, context: int, width: int, heads: int, layers: int, mlp: int, out_dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(context, width))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(_ResidualBlock(width, heads, mlp) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, out_dim))

    @property
    def out_dim(self) -> int:
        return int(self.text_projection.shape[1])

    def project(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [n, 77] -> the projected EOT rows [n, D] before normalisation."""
        dev = self.positional_embedding.device
        ids = ids.to(dev)
        x = self.token_embedding(ids) + self.positional_embedding
        n = ids.shape[1]
        mask = torch.full((n, n), float("-inf"), device=dev).triu(1)
        for block in self.transformer.resblocks[:-1]:      # clip_skip=1: the last resblock does not run
            x = block(x, mask)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=dev), ids.argmax(dim=-1)] @ self.text_projection

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> L2-normalised text features [n, 1, D] (float32)."""
        with torch.no_grad():
            f = self.project(tokenize(texts)).float()
        return (f / f.norm(dim=-1, keepdim=True)).unsqueeze(1)


def tokenize(texts: list[str]) -> torch.Tensor:
    """open_clip's tokenizer (the SD 2.x CLIP BPE): [n, 77] int64."""
    import open_clip

    return open_clip.tokenize(list(texts))


def find_text_prefix(sd: dict) -> str | None:
    """The prefix under which `sd` holds an OpenCLIP text tower with its projection, or None."""
    for key in sd:
        if key.endswith("token_embedding.weight"):
            prefix = key[: -len("token_embedding.weight")]
            if prefix + "text_projection" in sd:
                return prefix
    return None


def load_text_tower(sd: dict, heads: int | None = None) -> TextTower:
    """The text tower of an OpenCLIP state dict (`open_clip_pytorch_model.bin` / its safetensors; any prefix)."""

    prefix = find_text_prefix(sd)
    if prefix is None:
        raise ColorizerLoadError("no CLIP text tower with its projection in this file (expected keys "
                                 "token_embedding.weight and text_projection, as in open_clip_pytorch_model.bin "
                                 "of ViT-H-14); text manipulation needs the full OpenCLIP file")
    vocab, width = sd[prefix + "token_embedding.weight"].shape
    context = sd[prefix + "positional_embedding"].shape[0]
    layers = count_indexed(sd, prefix + "transformer.resblocks.")
    mlp = sd[prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    out_dim = sd[prefix + "text_projection"].shape[1]
    heads = heads or KNOWN_TEXT_HEADS_BY_WIDTH.get(int(width))
    if not heads or width % heads:
        raise ColorizerLoadError(f"text tower of width {width}: the head count is not known from the file; give it "
                                 "(a <file>.json next to it with text_cfg.heads)")
    with torch.device("meta"):
        tower = TextTower(int(vocab), int(context), int(width), int(heads), layers, int(mlp), int(out_dim))
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and _is_text_key(k[len(prefix):])}
    own.pop("logit_scale", None)
    return load_strict(tower, own, key_prefix=prefix, what="CLIP text tower", dtype=torch.float32).eval()


def load_text_tower_file(path: str, heads: int = 0):
    """The text tower of the OpenCLIP file `path` in a ModelPatcher (the COLORIZER_TEXT_TOWER value), through the
    pack's one extra-network path (common/extra_networks.py); `heads` 0 = from a `<file>.json` or the width."""
    heads = heads or read_sidecar_config(path).get("text_heads")
    return extra_networks.patcher_for("CLIP text tower", path,
                                      lambda: load_text_tower(read_state_dict(path, "CLIP file"), heads), heads)


def _is_text_key(key: str) -> bool:
    return key.split(".")[0] in ("token_embedding", "positional_embedding", "transformer", "ln_final",
                                 "text_projection", "logit_scale")


# --------------------------------------------------------------------------------------------- manipulation

@dataclass(frozen=True)
class ManipulationGroup:
    """One official manipulation row: move tokens similar to `control` from `anchor` towards `target`."""
    target: str
    anchor: str                  # "none" (the word) for no anchor; "" is an (empty) anchor prompt, as officially
    control: str
    scale: float                 # target scale, 0-15 in the app
    enhance: bool
    thresholds: tuple            # τ0 < τ1 < τ2 < τ3 in [0, 1]

    def check(self) -> None:
        t = tuple(float(v) for v in self.thresholds)
        if len(t) != 4 or not all(a < b for a, b in zip(t, t[1:])):
            raise ColorizerInputError(f"manipulation thresholds must be four increasing values, got {list(t)} "
                                      f"(for target {self.target!r}); equal thresholds divide by zero")
        if not self.target.strip():
            raise ColorizerInputError("a manipulation needs a target prompt")


@dataclass
class GroupResult:
    tokens: torch.Tensor         # [B, 257, D] after the group
    cur_target_scale: torch.Tensor
    dscale: torch.Tensor
    c_map: torch.Tensor
    n: torch.Tensor
    band: torch.Tensor
    pwm: torch.Tensor
    anchor_scale: torch.Tensor | None = None
    a_map: torch.Tensor | None = None


def piecewise_weight(s: torch.Tensor, dscale: torch.Tensor, thresholds) -> tuple:
    """Official `compute_pwv` (ratio 2) of similarities `s` [B, N, 1]: (weights, normalised s, band index)."""
    t0, t1, t2, t3 = (float(v) for v in thresholds)
    lo, hi = s.amin(dim=1, keepdim=True), s.amax(dim=1, keepdim=True)
    n = (s - lo) / (hi - lo)
    band = (n > t0).long() + (n > t1).long() + (n > t2).long() + (n > t3).long()
    pieces = torch.stack([
        -PW_RATIO * dscale.expand_as(n),
        -dscale + dscale * (n - t0) / (t1 - t0),
        0.5 * dscale * (n - t1) / (t2 - t1),
        0.5 * dscale + 0.5 * dscale * (n - t2) / (t3 - t2),
        dscale.expand_as(n),
    ])
    return pieces.gather(0, band[None]).squeeze(0), n, band[..., 0]


def local_group(v: torch.Tensor, group: ManipulationGroup, text: TextTower) -> GroupResult:
    """One group on the full tokens `v` [B, 257, D] (CLS first; the CLS token never changes)."""
    group.check()
    b = v.shape[0]
    cls, local = v[:, :1], v[:, 1:]
    t = text.encode([group.target]).to(v)
    c = text.encode([group.control]).to(v)
    cur = cls @ t.transpose(1, 2)
    c_map = local @ c.transpose(1, 2)
    if group.anchor != NO_ANCHOR:
        a = text.encode([group.anchor] * b).to(v)
        anchor_scale = cls @ a.transpose(1, 2)
        dscale = group.scale - (anchor_scale if group.enhance else cur)
        w, n, band = piecewise_weight(c_map, dscale, group.thresholds)
        a_map = local @ a.transpose(1, 2)
        local = local + (w + float(group.enhance) * a_map) * (t - a)
        return GroupResult(torch.cat([cls, local], 1), cur, dscale, c_map, n, band, w, anchor_scale, a_map)
    dscale = group.scale - cur
    w, n, band = piecewise_weight(c_map, dscale, group.thresholds)
    return GroupResult(torch.cat([cls, local + w * t], 1), cur, dscale, c_map, n, band, w)


def manipulate(v: torch.Tensor, groups, text: TextTower) -> torch.Tensor:
    """Every group in order on the full tokens [B, 257, D] (official `local_manipulate`)."""
    for group in groups:
        v = local_group(v, group, text).tokens
    return v


def manipulate_reference(reference, groups, text_tower):
    """A copy of the COLORIZER_REFERENCE `reference` with its tokens manipulated by `groups` (CLS unchanged), by the
    COLORIZER_TEXT_TOWER patcher `text_tower`. As the app (`check_manipulate`), the rows act only when some target
    scale is above 0 (then all of them); otherwise `reference` itself."""
    if not any(g.scale > 0 for g in groups):
        return reference
    full = manipulate(reference.full, groups, extra_networks.loaded(text_tower, full=True))
    return dataclasses.replace(reference, cls=full[:, :1], tokens=full[:, 1:])


def global_group(v: torch.Tensor, group: ManipulationGroup, text: TextTower) -> torch.Tensor:
    """Official `global_manipulate` of CLS-token features `v` [B, 1, D] (models with token_type 'cls')."""
    t = text.encode([group.target]).to(v)
    if group.anchor != NO_ANCHOR:
        a = text.encode([group.anchor] * v.shape[0]).to(v)
        if not group.enhance:
            return v + group.scale * (t - a)
        v = v - (v @ a.transpose(1, 2)) * a
        return v + group.scale * t
    if group.enhance:
        return v + group.scale * t
    return v + (group.scale - v @ t.transpose(1, 2)) * t


def parse_groups(text: str, official_quirks: bool = True) -> list:
    """The shared text form, one group per line, as the official app writes it:
    `[target] T; [anchor] A; [control] C; [scale] s; [enhanced] b; [ts0] t0; [ts1] t1; [ts2] t2; [ts3] t3`.
    With `official_quirks` (the default, for parity) `[enhanced]` is True whenever it is not empty, as the app
    reads it (`bool(string)`); otherwise only "true"/"1"/"yes" (any case) mean True."""
    groups = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = {}
        for part in line.split(";"):
            part = part.strip()
            if part.startswith("[") and "]" in part:
                name, _, value = part[1:].partition("]")
                fields[name.strip()] = value.strip()
        try:
            thresholds = tuple(float(fields[f"ts{k}"]) for k in range(4))
            scale = float(fields["scale"])
            target, anchor, control = fields["target"], fields["anchor"], fields["control"]
        except (KeyError, ValueError) as exc:
            raise ColorizerInputError(f"manipulation line {number} is not in the form '[target] …; [anchor] …; "
                                      f"[control] …; [scale] s; [enhanced] b; [ts0] … [ts3] …' ({exc}): "
                                      f"{line!r}") from None
        flag = fields.get("enhanced", "")
        enhance = bool(flag) if official_quirks else flag.lower() in ("true", "1", "yes")
        groups.append(ManipulationGroup(target, anchor, control, scale, enhance, thresholds))
    return groups


# --------------------------------------------------------------------------------------------- heat map

@dataclass
class HeatMap:
    scale_tokens: torch.Tensor   # [B, 1, g, g] similarity of each local token to the control prompt
    scale_pixels: torch.Tensor   # [B, 1, H, W] bicubic to the picture size
    n_pixels: torch.Tensor       # min-max normalised over each picture
    heat: list                   # per threshold: 0 or 0.25 where reached
    labels: torch.Tensor         # [B, H, W] int64: thresholds reached, 0..4


def heat_map(v: torch.Tensor, control: str, thresholds, size: tuple, text: TextTower) -> HeatMap:
    """Official Visualize: similarity of the local tokens of `v` [B, 1+g², D] to `control`, on the token grid,
    bicubic to `size` (H, W), min-max normalised over the pixels, thresholded by each of the four values."""
    c = text.encode([control]).to(v)
    local = v[:, 1:]
    g = int(round(local.shape[1] ** 0.5))
    scale_tokens = (local @ c.transpose(1, 2)).reshape(v.shape[0], 1, g, g)
    pixels = F.interpolate(scale_tokens, size=tuple(size), mode="bicubic", align_corners=False)
    flat = pixels.flatten(1)
    lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
    n = (pixels - lo) / (hi - lo)
    heat = [torch.where(n < float(t), torch.zeros_like(n), torch.full_like(n, 0.25)) for t in thresholds]
    labels = sum((h > 0).long() for h in heat)[:, 0]
    return HeatMap(scale_tokens, pixels, n, heat, labels)


def visualize(image: torch.Tensor, clip_vision, text_tower, control: str, thresholds, groups=()) -> tuple:
    """The official Visualize of each picture of `image` [B, H, W, 3] in [0, 1]: its full CLIP tokens, manipulated
    by `groups`, compared with `control`. Returns (overlays [B, H, W, 3] in [0, 1], bands [B, H, W]: the thresholds
    reached / 4)."""
    thresholds = tuple(thresholds)
    if not all(a < b for a, b in zip(thresholds, thresholds[1:])):
        raise ColorizerInputError(f"Visualize: the thresholds must increase, got {list(thresholds)}")
    overlays, bands = [], []
    for i in range(image.shape[0]):
        v = clip_tokens.encode_reference(clip_vision, convert.to_model(image[i:i + 1]), token_type="full")
        text = extra_networks.loaded(text_tower, full=True)
        hm = heat_map(manipulate(v, groups, text), control, thresholds, image.shape[1:3], text)
        mixed, _ = overlay((image[i] * 255).round().to(torch.uint8), hm.labels[0].to(image.device))
        overlays.append(mixed.float() / 255)
        bands.append(hm.labels[0].to(image.device).float() / 4)
    return torch.stack(overlays), torch.stack(bands)


def jet_lut() -> torch.Tensor:
    """OpenCV's COLORMAP_JET as RGB uint8 [256, 3]."""
    import cv2
    import numpy as np

    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]
    return torch.from_numpy(bgr[:, ::-1].copy())


def overlay(picture_u8: torch.Tensor, labels: torch.Tensor) -> tuple:
    """The Visualize picture: 0.3·picture + 0.7·JET(63·labels) (OpenCV's addWeighted rounding), with black grid
    lines every H//16 rows and W//16 columns. `picture_u8` [H, W, 3] uint8, `labels` [H, W]. Returns
    (overlay uint8 [H, W, 3], JET colours uint8 [H, W, 3])."""
    colours = jet_lut()[(labels * 63).long()]
    alpha, beta = torch.tensor(0.3, dtype=torch.float32), torch.tensor(0.7, dtype=torch.float32)
    q = colours.to(torch.float32) * beta                   # float32 product, then one fused multiply-add:
    mixed = (picture_u8.double() * alpha.double() + q.double()).float()     # exact in float64, rounded once
    mixed = torch.round(mixed).clamp(0, 255).to(torch.uint8)
    h, w = labels.shape
    for i in range(16):
        mixed[i * (h // 16), :] = 0
        mixed[:, i * (w // 16)] = 0
    return mixed, colours
