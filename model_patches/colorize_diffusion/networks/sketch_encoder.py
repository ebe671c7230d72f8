"""The sketch encoder (official `refnet.modules.encoder.MultiEncoder`, checkpoint prefix `control_encoder.`).

A plain conv stack: a fixed stem (16, 16, 32↓, 32, 96↓, 96, 256↓, then `model_channels`), a 1×1 "zero" conv
giving residual 0, then one block per channel multiplier (SiLU, conv (stride 2 except the last), SiLU, conv),
each followed by its own 1×1 conv giving residuals 1..4. The residuals are added to the UNet after input
blocks 0, 3, 6, 9, 11 (model-spec §2.4, §3.3).
"""
from __future__ import annotations

import torch
from torch import nn

from ....errors import ColorizerLoadError
from .common import operations_or_default, count_indexed, load_prefixed, state_shape

DEFAULT_PREFIX = "control_encoder."



# --------------------------------------------------------------------------- the encoder

def conv_stem(in_channels: int, widths: list[int], ops, **kw) -> nn.Sequential:
    """The official 3×3 conv stem (SiLU between convs; convs 2, 4 and 6 have stride 2, so ÷8 overall)."""
    layers, prev = [], in_channels
    for i, ch in enumerate(widths):
        if i:
            layers.append(nn.SiLU())
        layers.append(ops.Conv2d(prev, ch, 3, stride=2 if i in (2, 4, 6) else 1, padding=1, **kw))
        prev = ch
    return nn.Sequential(*layers)


class SketchEncoder(nn.Module):
    """MultiEncoder: `forward(sketch [B,C,H,W] in [-1,1]) -> [r0, r1, r2, r3, r4]`.

    `stem` lists the stem conv widths (official: 16,16,32,32,96,96,256 then model_channels); the stem convs
    at positions 2, 4, 6 (0-based conv index) have stride 2. `block_channels` are the widths of the output
    blocks (model_channels × ch_mults); every block but the last has stride 2.
    """

    def __init__(self, in_channels: int, stem: list[int], block_channels: list[int], *,
                 dtype=None, device=None, operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        self.model = conv_stem(in_channels, stem, ops, dtype=dtype, device=device)
        prev = stem[-1]
        self.zero_layer = nn.Sequential(ops.Conv2d(prev, prev, 1, dtype=dtype, device=device))
        self.output_blocks = nn.ModuleList()
        self.zero_blocks = nn.ModuleList()
        n = len(block_channels)
        for i, ch in enumerate(block_channels):
            self.output_blocks.append(nn.Sequential(
                nn.SiLU(),
                ops.Conv2d(prev, ch, 3, stride=2 if i != n - 1 else 1, padding=1, dtype=dtype, device=device),
                nn.SiLU(),
                ops.Conv2d(ch, ch, 3, padding=1, dtype=dtype, device=device),
            ))
            self.zero_blocks.append(nn.Sequential(ops.Conv2d(ch, ch, 1, dtype=dtype, device=device)))
            prev = ch

    compute_dtype: torch.dtype | None = None   # set to compute in another dtype than the weights'

    @property
    def dtype(self) -> torch.dtype:
        """dtype the inputs are cast to: `compute_dtype` if set, else the weights' dtype."""
        return self.compute_dtype or self.model[0].weight.dtype

    def forward(self, sketch: torch.Tensor) -> list[torch.Tensor]:
        x = self.model(sketch.to(self.dtype))
        hints = [self.zero_layer(x)]
        for block, zero in zip(self.output_blocks, self.zero_blocks):
            x = block(x)
            hints.append(zero(x))
        return hints

    def encode_with_blank(self, sketch: torch.Tensor, strength: float = 1.0
                          ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Residuals of `sketch` and of the blank (all −1) sketch, both × strength (official
        `prepare_conditions`: one run on `cat([sketch, -ones_like(sketch)])`, every output × control_scale,
        then `chunk(2)`). Returns (cond [B,...] ×5, blank [B,...] ×5)."""
        b = sketch.shape[0]
        out = self(torch.cat([sketch, -torch.ones_like(sketch)], 0))
        out = [o * strength for o in out]
        return [o[:b] for o in out], [o[b:] for o in out]


def build_from_state_dict(sd: dict, prefix: str = DEFAULT_PREFIX, *, dtype=None, device=None,
                          operations=None) -> SketchEncoder:
    """Build the sketch encoder from the shapes under `prefix`, load it and pop its keys from `sd`."""
    n_stem = count_indexed(sd, prefix + "model.", "weight")
    if n_stem == 0:
        raise ColorizerLoadError(f"checkpoint has no sketch encoder (no key {prefix}model.0.weight)")
    stem_keys = [f"{prefix}model.{i}.weight" for i in range(0, 2 * 8, 2)]
    stem = [state_shape(sd, k, "sketch encoder stem")[0] for k in stem_keys]
    in_channels = state_shape(sd, stem_keys[0])[1]
    n_blocks = count_indexed(sd, prefix + "output_blocks.")
    if n_blocks == 0:
        raise ColorizerLoadError(f"checkpoint has no key {prefix}output_blocks.0.1.weight")
    blocks = [state_shape(sd, f"{prefix}output_blocks.{i}.1.weight")[0] for i in range(n_blocks)]
    module = SketchEncoder(in_channels, stem, blocks, dtype=dtype, device="meta", operations=operations)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)
