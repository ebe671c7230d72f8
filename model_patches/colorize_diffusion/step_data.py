"""What one UNet call knows about the colorizer: settings plus the per-row tensors from the conditioning.

The conditioning node puts these tensors into every CONDITIONING entry (`model_conds`), so ComfyUI batches
them exactly like the latent rows: row i of each tensor belongs to row i of x, whatever the order of
positive / negative / sketch-negative chunks (`cond_or_uncond`) in that call.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .settings import AttentionSettings

STEP_KEY = "colorize_diffusion"      # transformer_options key
PASSES_KEY = "colorize_diffusion_passes"   # transformer_options: the guider's pass names, by cond_or_uncond index
COND_PREFIX = "colorize_diffusion_"  # model_conds keys: COND_PREFIX + controls|settings|mask|hs_bg|style
COND_KEYS = ("controls", "settings", "mask", "hs_bg", "style", "banks")

# The UNet's final `out` layer gets no transformer_options; the v2 style FiLM after the last decoder block
# reads the step data from here while the diffusion model runs.
CURRENT_STEP: contextvars.ContextVar = contextvars.ContextVar("colorize_diffusion_step", default=None)


@dataclass
class StepData:
    settings: AttentionSettings
    controls: list | None = None
    mask: torch.Tensor | None = None        # [B,1,h,w] latent-size soft sketch mask
    hs_bg: list | None = None               # 12 × [B, N_j, C_j], index = decoder block
    style: list | None = None               # 12 × [B, D_j], index = decoder block
    time_emb: torch.Tensor | None = None    # the UNet's own time embedding of this step
    banks: "Banks | None" = None            # xlv2: the background ReferenceNet's decoder banks
    _mask_cache: dict = field(default_factory=dict)

    def attention_mask(self, scale: float, hw: tuple) -> torch.Tensor:
        """Mask at a transformer block's resolution as tokens [B, H·W, 1] (official: bicubic by scale factor)."""
        key = ("scale", scale, hw)
        if key not in self._mask_cache:
            h, w = self.mask.shape[-2:]
            if (int(h * scale), int(w * scale)) == tuple(hw):
                m = F.interpolate(self.mask, scale_factor=scale, mode="bicubic")
            else:  # sizes that are not multiples of 64 px: the official code would fail here
                m = F.interpolate(self.mask, size=tuple(hw), mode="bicubic")
            self._mask_cache[key] = m.flatten(2).transpose(1, 2)
        return self._mask_cache[key]

    def cached(self, key: tuple, compute):
        """`compute()` once per UNet call for `key` (blocks of the same resolution share token selections: on a
        GPU, finding the selected tokens waits for the device, so it should happen once, not in every block)."""
        if key not in self._mask_cache:
            self._mask_cache[key] = compute()
        return self._mask_cache[key]

    def skip_mask(self, hw: tuple) -> torch.Tensor:
        """Mask at a skip's resolution [B,1,H,W] (official v2 warp: bicubic to an explicit size)."""
        key = ("size", tuple(hw))
        if key not in self._mask_cache:
            self._mask_cache[key] = F.interpolate(self.mask, size=tuple(hw), mode="bicubic")
        return self._mask_cache[key]


def pop_step_data(kwargs: dict) -> StepData | None:
    """Take the colorizer's conditioning out of the UNet kwargs (None when it carries none)."""
    found = {k: kwargs.pop(COND_PREFIX + k) for k in COND_KEYS if COND_PREFIX + k in kwargs}
    if "settings" not in found:
        return None
    return StepData(settings=found["settings"], controls=found.get("controls"), mask=found.get("mask"),
                    hs_bg=found.get("hs_bg"), style=found.get("style"), banks=found.get("banks"))


class Banks:
    """The xlv2 ReferenceNet's banks of one prompt (one per decoder transformer block, [b, N, C] with b = 1 or the
    batch). Shared by every pass and row of a step (a CONDConstant: equal only to itself), repeated to a call's rows
    when read."""

    def __init__(self, banks: list):
        self.banks = list(banks)

    def __len__(self):
        return len(self.banks)

    def bank(self, index: int) -> torch.Tensor:
        return self.banks[index]

    @staticmethod
    def expand_rows(t: torch.Tensor, n: int) -> torch.Tensor:
        """`t` [b, N, C] given to a call of `n` rows (passes × pictures): b = 1 is shared, otherwise repeated."""
        if t.shape[0] == 1:
            return t.expand(n, -1, -1)
        if n % t.shape[0]:
            raise ValueError(f"{n} rows cannot take banks of batch {t.shape[0]}")
        return t.repeat(n // t.shape[0], 1, 1)

    def to(self, *args, **kwargs):
        return Banks([b.to(*args, **kwargs) for b in self.banks])
