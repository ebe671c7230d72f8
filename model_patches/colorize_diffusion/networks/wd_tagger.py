"""The WD v1.4 SwinV2 tagger (SmilingWolf/wd-v1-4-swinv2-tagger-v2, `model.safetensors`) as the XL reference
encoder's second half: its final-norm feature map as 196 tokens (golden_xl README §5 A2).

Built with timm's SwinTransformerV2 (the architecture the file's keys name; timm is already a dependency of
open_clip_torch). Layout from the weights: embed width, blocks per stage, heads per stage (each block's
`logit_scale` holds one value per head) and the number of tags; window 14 at 448 px as released.

Official recipe: squash-resize to 448 (bicubic, align_corners, antialias), RGB→BGR, no other normalisation
(the tagger sees BGR in [-1, 1] — an official quirk), every stage, final norm → [B, 14, 14, C] → [B, 196, C].
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ....errors import ColorizerInputError, ColorizerLoadError

IMAGE_SIZE = 448
WINDOW = 14
_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.attn\.logit_scale$")


def looks_like_swinv2(sd: dict) -> bool:
    return "patch_embed.proj.weight" in sd and any(_BLOCK.match(k) for k in sd)


def describe(sd: dict) -> str:
    if any(k.startswith("stages.") or k.startswith("stem.") for k in sd):
        return "a ConvNeXt-style tagger (stem/stages keys)"
    if any(k.startswith("blocks.") for k in sd) and "cls_token" in sd:
        return "a ViT-style tagger"
    if any(k.startswith("vision_model.") or k.startswith("visual.") for k in sd):
        return "a CLIP vision tower"
    if any(k.startswith("model.diffusion_model.") for k in sd):
        return "a diffusion checkpoint"
    return "not a SwinV2 tagger"


def architecture(sd: dict) -> dict:
    """timm create_model arguments of a SwinV2 tagger state dict (shapes only)."""
    heads: dict[int, int] = {}
    depths: dict[int, int] = {}
    for k, v in sd.items():
        m = _BLOCK.match(k)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            heads[stage] = int(v.shape[0])
            depths[stage] = max(depths.get(stage, 0), block + 1)
    stages = sorted(depths)
    if stages != list(range(len(stages))):
        raise ColorizerLoadError(f"SwinV2 tagger stages are not consecutive: {stages}")
    head = sd.get("head.fc.weight")
    return {"embed_dim": int(sd["patch_embed.proj.weight"].shape[0]),
            "depths": tuple(depths[s] for s in stages), "num_heads": tuple(heads[s] for s in stages),
            "num_classes": int(head.shape[0]) if head is not None else 0,
            "patch_size": int(sd["patch_embed.proj.weight"].shape[-1])}


class WDTagger(torch.nn.Module):
    """`tokens(x [B,3,H,W] RGB in [-1,1]) -> ([B,196,C], logits [B,196,tags])`."""

    def __init__(self, arch: dict):
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ColorizerLoadError("the WD tagger needs the timm package (pip install timm; it comes with "
                                     "open_clip_torch)") from None
        self.arch = dict(arch)
        self.model = timm.create_model(
            "swinv2_base_window8_256", pretrained=False, num_classes=arch["num_classes"], global_pool="avg",
            img_size=IMAGE_SIZE, window_size=WINDOW, act_layer="gelu", embed_dim=arch["embed_dim"],
            depths=arch["depths"], num_heads=arch["num_heads"], patch_size=arch["patch_size"])
        self.model.eval().requires_grad_(False)

    @property
    def width(self) -> int:
        return int(self.model.norm.weight.shape[0])

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), (IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=True, antialias=True)
        return x[:, [2, 1, 0]]

    def tokens(self, x: torch.Tensor, logits: bool = False):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ColorizerInputError(f"the WD tagger takes [B,3,H,W] pictures, got {tuple(x.shape)}")
        dtype = self.model.norm.weight.dtype
        with torch.no_grad():
            h = self.model.forward_features(self.preprocess(x).to(dtype))     # [B, 14, 14, C]: ends in the norm
            tokens = h.flatten(1, 2)
            out = self.model.head.fc(tokens) if logits and self.arch["num_classes"] else None
        return tokens.float(), (None if out is None else out.float())


def build(sd: dict, name: str, dtype=torch.float32) -> WDTagger:
    """A WDTagger holding exactly the tensors of `sd` (file `name`, for messages)."""
    if not looks_like_swinv2(sd):
        raise ColorizerLoadError(
            f"{name} is {describe(sd)}, not the WD v1.4 SwinV2 tagger ColorizeDiffusion XL encodes references with: "
            "use SmilingWolf/wd-v1-4-swinv2-tagger-v2's model.safetensors")
    tagger = WDTagger(architecture(sd))
    want = tagger.model.state_dict()
    missing = sorted(k for k in want if k not in sd and not _rebuilt_buffer(k))
    unexpected = sorted(k for k in sd if k not in want)
    if missing or unexpected:
        raise ColorizerLoadError(f"{name} does not match the SwinV2 tagger layout: missing {missing[:4]}, "
                                 f"unexpected {unexpected[:4]}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise ColorizerLoadError(f"{name}: {k} has shape {list(v.shape)}, the tagger expects {list(want[k].shape)}")
    tagger.model.load_state_dict(sd, strict=False)
    return tagger.to(dtype)


def _rebuilt_buffer(key: str) -> bool:
    """Buffers timm recomputes (relative-position tables, attention masks): never in a released file."""
    return key.endswith(("relative_coords_table", "relative_position_index", "attn_mask"))
