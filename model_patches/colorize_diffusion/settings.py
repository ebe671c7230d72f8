"""Per-prompt knobs of the patched UNet, and how the official app derives them from its UI.

Block numbering (16 transformer blocks, depth-first): input 1,2,4,5,7,8 → 0–5, middle → 6, output 3–11 → 7–15.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ColorizerInputError
from .families import FamilySpec, spec_of
from .modes import ModeParts, lora_branches, unfinished

NUM_BLOCKS = 16
ENCODER_BLOCKS = (0, 1, 2, 3, 4, 5)
MIDDLE_LEVEL_BLOCKS = (2, 3, 10, 11, 12)   # "Color crossattn scale"
LOW_LEVEL_BLOCKS = (4, 5, 7, 8, 9)         # "Semantics crossattn scale"
UNSET_BY_OFFICIAL = (6, 13, 14, 15)        # never written by the official level mode
BLOCK_NAMES = ("input 1", "input 2", "input 4", "input 5", "input 7", "input 8", "middle", "output 3",
               "output 4", "output 5", "output 6", "output 7", "output 8", "output 9", "output 10", "output 11")

def level_reference_scales(strength=1.0, encoder=1.0, middle=1.0, low=1.0, all_blocks=False) -> tuple:
    """The official level mode: enc·s on 0–5, then middle·s on 2,3,10,11,12, then low·s on 4,5,7,8,9.

    Blocks 6 and 13–15 keep 1 there. `all_blocks=True` (not official) also scales them: the UNet middle
    block with the low level, the three last decoder blocks with the encoder scale (same resolution as 0–1).
    """
    scales = [1.0] * NUM_BLOCKS
    for i in ENCODER_BLOCKS:
        scales[i] = encoder * strength
    for i in MIDDLE_LEVEL_BLOCKS:
        scales[i] = middle * strength
    for i in LOW_LEVEL_BLOCKS:
        scales[i] = low * strength
    if all_blocks:
        scales[6] = low * strength
        for i in (13, 14, 15):
            scales[i] = encoder * strength
    return tuple(float(s) for s in scales)


def accurate_reference_scales(sliders, official_shift: bool = True) -> tuple:
    """The official "accurate crossattn control": one slider per transformer block, reference strength ignored.

    The app reads the sliders one place too far (`args[5:]`): slider 0 is dropped, block i gets slider i+1 and
    block 15 keeps 1. `official_shift=True` reproduces that (parity); False gives each slider its own block.
    """
    sliders = tuple(float(v) for v in sliders)
    if len(sliders) != NUM_BLOCKS:
        raise ColorizerInputError(f"accurate crossattn control needs {NUM_BLOCKS} block scales, got {len(sliders)}")
    if not official_shift:
        return sliders
    return sliders[1:] + (1.0,)


@dataclass(frozen=True)
class AttentionSettings:
    """What the split cross-attention of every block needs; travels in the conditioning (CONDConstant)."""
    reference_scales: tuple = field(default_factory=lambda: (1.0,) * NUM_BLOCKS)
    split: bool = False
    threshold: float = 0.05
    foreground_strength: float = 1.0
    background_strength: float = 1.0
    merge_scale: float = 0.0
    fg_lora: bool = False
    bg_lora: bool = False
    rule: str = ""                       # which tokens go to the foreground half (see SplitCrossAttention):
                                         # "" by layer type (SD2.1), "above" m > threshold (sdxl), "soft" blend (xlv2)
    lora_label: str = ""                 # the LoRA both halves use, when not their own fg/bg pair ("background": xlv2)
    unfinished: str = ""                 # why this wiring cannot run (modes.unfinished); "" = complete
    window: "GuidanceWindow | None" = None
    batch: int = 1                       # pictures the conditioning was prepared for (sketches × samples each)


@dataclass(frozen=True)
class GuidanceWindow:
    """The official guidance window: at progress tr = 1 − t/999 (0 = first step, 1 = last) the reference context
    is replaced by zero tokens when tr < start, tr > end, or no_start ≤ tr ≤ no_end (defaults: never)."""
    start: float = 0.0
    end: float = 1.0
    no_start: float = -0.05
    no_end: float = -0.05

    def check(self) -> None:
        if self.end < self.start:
            raise ColorizerInputError(f"guidance window: the end {self.end:g} is before the start {self.start:g}; "
                                      "the reference would never act")
        if self.no_end < self.no_start:
            raise ColorizerInputError(f"guidance window: the no-guidance end {self.no_end:g} is before its start "
                                      f"{self.no_start:g}")

    def off_at(self, timestep: float) -> bool:
        """Whether the reference is off at UNet timestep `timestep` (0..999)."""
        tr = 1 - float(timestep) / 999
        return tr < self.start or tr > self.end or self.no_start <= tr <= self.no_end


def attention_settings(family: FamilySpec | str, parts: ModeParts, reference_scales: tuple, threshold: float,
                       foreground_strength: float = 1.0, background_strength: float = 1.0, merge_scale: float = 0.0,
                       official_fgbg_reset: bool = True, window: GuidanceWindow | None = None) -> AttentionSettings:
    """The split attention's settings for a wiring; LoRA branches as the official wrappers set them.

    v1/v1.5 `prepare_conditions` reset the fg/bg strengths to 1 (an app bug); sdxl's single biased attention has no
    strengths (merging scale 0); `official_fgbg_reset=False` lets the strengths act in every family.
    """
    spec = spec_of(family)
    if not parts.split:
        return AttentionSettings(reference_scales=tuple(reference_scales), threshold=threshold,
                                 unfinished=unfinished(spec, parts), window=window)
    fg_lora, bg_lora = lora_branches(spec, parts)
    reset = spec.strengths_reset == "always" or spec.strengths_reset == "unmerged" and not merge_scale
    if reset and official_fgbg_reset:
        foreground_strength = background_strength = 1.0
    return AttentionSettings(reference_scales=tuple(reference_scales), split=True, threshold=float(threshold),
                             foreground_strength=float(foreground_strength),
                             background_strength=float(background_strength), merge_scale=float(merge_scale),
                             fg_lora=fg_lora, bg_lora=bg_lora, rule=spec.split_rule, lora_label=spec.lora_label,
                             unfinished=unfinished(spec, parts), window=window)
