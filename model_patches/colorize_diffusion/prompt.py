"""The conditioning chain's value: a `ColorizerPrompt`, which Apply Sketch starts and each encoder node of the chain
returns a copy of with its part added (model_patches/colorize_diffusion/chain.py builds the parts, assembly.py turns
a prompt into CONDITIONING).

The prompt travels inside the positive and negative CONDITIONING it describes (`PROMPT_KEY`), so the next node of
the chain reads it back with `prompt_of`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import ColorizerInputError
from .modes import ModeParts
from .settings import GuidanceWindow, level_reference_scales

LATENT_SCALE = 8
PROMPT_KEY = "colorize_diffusion_prompt"          # conditioning entry: the ColorizerPrompt it was built from
NEGATIVE_KEY = "colorize_diffusion_negative"      # conditioning entry: marks the reference-unconditional one
APPLY_SKETCH = "ColorizeDiffusion Apply Sketch"


@dataclass(frozen=True)
class SplitPart:
    """Split Attention: the sketch mask at latent size and the official mask-guided knobs."""
    mask: torch.Tensor                # [B, 1, H/8, W/8] soft sketch mask
    threshold: float                  # Sketch mask threshold
    foreground_strength: float = 1.0
    background_strength: float = 1.0
    merge_scale: float = 0.0
    foreground: bool = True           # FG enhance (v1.5: the foreground LoRA)
    official_fgbg_reset: bool = True  # v1/v1.5: strengths reset to 1 as in the official app
    full_mask: torch.Tensor | None = None   # XL: the mask at the generation size (xlv2 ReferenceNet input)


@dataclass(frozen=True)
class BackgroundPart:
    """Background Encoder: CLIP local tokens of the background (picture or background-only reference)."""
    tokens: torch.Tensor              # [1, S or B, T, C]: distinct rows, repeated per picture by the context
    separate: bool                    # a separate background picture (v1.5: no cluster transformer)
    reference_threshold: float        # v1.5: its threshold embedding is added to the background tokens
    hs_bg: list | None = None         # v2: 12 × [B, N_j, C_j] background features × background factor
    z_bg: torch.Tensor | None = None  # xlv2: VAE latent of the background source at the generation size
    reference_mask: torch.Tensor | None = None   # xlv2: the reference's character mask (ReferenceNet input)
    bgy: torch.Tensor | None = None   # xlv2: the ReferenceNet's y (crop scales of the background source)
    copy_latent: torch.Tensor | None = None      # XL "Latent copy BG input": the background picture's latent


@dataclass(frozen=True)
class ColorizerPrompt:
    colorizer: object
    reference: object                 # ColorizerReference, one row per generated picture
    controls: list                    # 5 × sketch residuals × sketch strength
    blank_controls: list              # 5 × blank-sketch residuals × sketch strength
    size: tuple                       # (H, W) generation size in pixels
    reference_scales: tuple = level_reference_scales()
    split: SplitPart | None = None
    background: BackgroundPart | None = None
    style: list | None = None         # v2: 12 × [B, D_j] style modulations
    window: GuidanceWindow | None = None
    y: torch.Tensor | None = None     # XL: [B, 512] size and aesthetic-score vector of the UNet
    xl_context: torch.Tensor | None = None      # XL: [B, 196, C] ClusterConcat of the reference's tokens
    control_scales: tuple = (1.0, 1.0, 1.0, 1.0)   # Sketch Level Strength (XL app's Sketch strength 1..4)
    banks: object = None              # xlv2: the ReferenceNet's banks (derived once split and background are known)
    split_context: torch.Tensor | None = None   # v1.5: the split context (derived once split and background are known)
    source_reference: object = None   # the reference as given (one row, or one per sketch): what the encoders read
    samples_per_sketch: int = 1

    @property
    def family(self) -> str:
        return self.colorizer.family

    @property
    def spec(self):
        """The family's spec (families.py), looked up once when the checkpoint was loaded."""
        return self.colorizer.spec

    @property
    def batch(self) -> int:
        return int(self.controls[0].shape[0])

    @property
    def distinct_reference(self):
        """The reference's distinct rows (one, or one per sketch): encoders run on these, never on repeats."""
        return self.source_reference if self.source_reference is not None else self.reference

    def per_picture(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """`t` with one row per generated picture, from one row, one per sketch (each repeated for its samples,
        sketch-major as the latent) or one per picture."""
        n = self.samples_per_sketch
        if n > 1 and t.shape[0] > 1 and t.shape[0] * n == self.batch:
            return t.repeat_interleave(n, 0)
        return rows_for(t, self.batch, what)

    def common_rows(self, *ts: torch.Tensor) -> list:
        """The tensors with one row count: single rows expanded to the others' count, or all per picture when their
        counts differ otherwise."""
        counts = {int(t.shape[0]) for t in ts} - {1}
        if not counts:
            return list(ts)
        if len(counts) == 1:
            rows = counts.pop()
            return [t.expand(rows, *t.shape[1:]) for t in ts]
        return [self.per_picture(t, "encoder input") for t in ts]

    @property
    def parts(self) -> ModeParts:
        return ModeParts(split=self.split is not None, foreground=bool(self.split and self.split.foreground),
                         background=self.background is not None, style=self.style is not None)


def to_intermediate(t):
    """`t` (or None) on ComfyUI's intermediate device, where the chain keeps its tensors between nodes."""
    import comfy.model_management

    return None if t is None else t.to(comfy.model_management.intermediate_device())


def rows_for(t: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """`t` with one row per generated picture: a single row is repeated; otherwise it must already match."""
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch, *t.shape[1:])
    raise ColorizerInputError(f"{what} has {t.shape[0]} rows but {batch} pictures are generated: give one, or one "
                              "per picture")


def prompt_of(positive, negative, node: str) -> ColorizerPrompt:
    """The prompt a (positive, negative) pair from the chain carries; a clear error for anything else."""
    def entry(cond, name):
        if not isinstance(cond, list) or len(cond) != 1 or PROMPT_KEY not in cond[0][1]:
            raise ColorizerInputError(
                f"{node}: {name} must come from {APPLY_SKETCH} or a ColorizeDiffusion node chained after it "
                "(a text or combined conditioning cannot carry the sketch and reference)")
        return cond[0][1]

    pos, neg = entry(positive, "positive"), entry(negative, "negative")
    if pos.get(NEGATIVE_KEY) or not neg.get(NEGATIVE_KEY):
        raise ColorizerInputError(f"{node}: positive and negative are swapped; connect positive to positive and "
                                  "negative to negative")
    if pos[PROMPT_KEY] is not neg[PROMPT_KEY]:
        raise ColorizerInputError(f"{node}: positive and negative come from different chains; connect the pair that "
                                  "one node gave")
    return pos[PROMPT_KEY]
