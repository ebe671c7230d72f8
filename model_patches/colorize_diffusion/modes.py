"""The one table of the inference modes: which encoder nodes each official mode wires, and what each family allows.

The official app has no mode dropdown: its checkboxes (Style enhance, BG enhance, FG enhance) combine per family
(reference-app.md §1.3). In the graph a mode is which nodes are wired after Apply Sketch:

* Split Attention (the mask-guided split cross-attention; its `foreground_enhance` is the FG checkbox),
* Background Encoder (the BG checkbox: background tokens, v1.5 threshold embedding and cluster transformer,
  v2 background encoder),
* Style Encoder (the Style checkbox, v2 only).

Everything that decides whether a combination is allowed, and the words of the error when it is not, lives here;
what each family has and does comes from its spec (families.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ColorizerInputError
from .families import FamilySpec, spec_of

OFFICIAL_MODES = ("vanilla", "style enhance", "background enhance", "foreground enhance", "full")

# How the rules' messages name the chain's nodes (their display names, nodes/chain_nodes.py; a test keeps them equal).
SPLIT_NODE = "ColorizeDiffusion Split Attention"
BACKGROUND_NODE = "ColorizeDiffusion Background Encoder"
STYLE_NODE = "ColorizeDiffusion Style Encoder"
WINDOW_NODE = "ColorizeDiffusion Guidance Window"


@dataclass(frozen=True)
class ModeParts:
    """Which optional parts a prompt has (= which nodes the graph wires)."""
    split: bool = False                # Split Attention
    foreground: bool = False           # its foreground enhance (FG checkbox)
    background: bool = False           # Background Encoder (BG checkbox)
    style: bool = False                # Style Encoder

    @property
    def name(self) -> str:
        """The official mode this wiring reproduces (for messages and file names)."""
        if self.style and self.background:
            return "full"
        if self.background and self.foreground:
            return "full"
        if self.style:
            return "style enhance"
        if self.background:
            return "background enhance"
        if self.foreground:
            return "foreground enhance"
        return "vanilla"


def from_checkboxes(style: bool = False, background: bool = False, foreground: bool = False) -> ModeParts:
    """The official app's checkboxes as the nodes to wire ("mask guided" = BG or FG)."""
    return ModeParts(split=background or foreground, foreground=foreground, background=background, style=style)


def official_mode(mode: str, family: FamilySpec | str) -> ModeParts:
    """The nodes an official mode name wires for `family` ("full": v2 style + BG, v1.5 BG + FG, v1 BG)."""
    if mode not in OFFICIAL_MODES:
        raise ColorizerInputError(f"unknown mode {mode!r}; choose one of {', '.join(OFFICIAL_MODES)}")
    if mode == "full":
        spec = spec_of(family)
        return from_checkboxes(style=spec.style_encoder, background=True,
                               foreground=spec.lora_branches == "checkboxes")
    return from_checkboxes(style=mode == "style enhance", background=mode == "background enhance",
                           foreground=mode == "foreground enhance")


def family_name(family: FamilySpec | str) -> str:
    return spec_of(family).display_name


def check_style(family: FamilySpec | str) -> None:
    """The style encoder exists only in v2 checkpoints (the v1/v1.5 apps ignore the checkbox)."""
    if not spec_of(family).style_encoder:
        raise ColorizerInputError(
            f"{STYLE_NODE} needs a ColorizeDiffusion v2 checkpoint; this one is {family_name(family)}, which has no "
            f"style encoder. Remove the Style Encoder from this graph (or load a v2 checkpoint such as "
            "v2-full.safetensors)")


def check_window(family: FamilySpec | str, all_families: bool) -> None:
    """The official apps honour the guidance window for v1 and XL; `all_families` applies it anyway (not official)."""
    if not spec_of(family).guidance_window and not all_families:
        raise ColorizerInputError(
            f"the official {family_name(family)} app ignores the guidance window (v1 and XL honour it): "
            f"remove {WINDOW_NODE} for the official result, or turn its all_families on to apply the window anyway")


def unfinished(family: FamilySpec | str, parts: ModeParts) -> str:
    """Why a wiring cannot run yet ('' when it can): checked before sampling, whatever the order of the nodes."""
    spec = spec_of(family)
    if parts.style and not spec.style_encoder:
        return (f"{STYLE_NODE} needs a ColorizeDiffusion v2 checkpoint; this one is {spec.display_name}")
    if parts.background and not parts.split:
        return (f"{BACKGROUND_NODE} needs {SPLIT_NODE} on the same conditioning: the sketch mask decides where the "
                f"background goes ({spec.display_name}). Wire Split Attention with the sketch's mask before or after "
                "the Background Encoder")
    if parts.split and not parts.background:
        if spec.split_alone:
            return (f"{SPLIT_NODE} alone (foreground enhance) {spec.split_alone.format(family=spec.display_name)}: "
                    f"add {BACKGROUND_NODE} (background enhance) or remove Split Attention")
        if not parts.foreground:
            return (f"{SPLIT_NODE} with foreground_enhance off needs {BACKGROUND_NODE}: turn foreground_enhance on "
                    "(foreground enhance) or wire a Background Encoder (background enhance)")
    return ""


def check_runnable(family: FamilySpec | str, parts: ModeParts) -> None:
    message = unfinished(family, parts)
    if message:
        raise ColorizerInputError(message)


def lora_branches(family: FamilySpec | str, parts: ModeParts) -> tuple[bool, bool]:
    """(foreground LoRA, background LoRA) of the split attention as the official wrappers set them
    (model-spec §3.5): v2 and xlv2 (its one "background" LoRA on both halves) both with the background, v1.5 one
    per checkbox, v1 and sdxl none."""
    if not parts.split:
        return False, False
    branches = spec_of(family).lora_branches
    if branches == "background":
        return parts.background, parts.background
    if branches == "checkboxes":
        return parts.foreground, parts.background
    return False, False
