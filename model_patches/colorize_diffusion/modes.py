"""The one table of the inference modes: which encoder nodes each official mode wires, and what each family allows.

The official app has no mode dropdown: its checkboxes (Style enhance, BG enhance, FG enhance) combine per family
(reference-app.md §1.3). In the graph a mode is which nodes are wired after Apply Sketch:

* Split Attention (the mask-guided split cross-attention; its `foreground_enhance` is the FG checkbox),
* Background Encoder (the BG checkbox: background tokens, v1.5 threshold embedding and cluster transformer,
  v2 background encoder),
* Style Encoder (the Style checkbox, v2 only).

Everything that decides whether a combination is allowed, and the words of the error when it is not, lives here.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ColorizerInputError

FAMILY_NAMES = {"v1": "v1 (mult)", "v1.5": "v1.5 (switch)", "v2": "v2", "sdxl": "XL (sdxl)", "xlv2": "XL v2 (xlv2)"}
OFFICIAL_MODES = ("vanilla", "style enhance", "background enhance", "foreground enhance", "full")

SPLIT_NODE = "ColorizeDiffusion Split Attention"
BACKGROUND_NODE = "ColorizeDiffusion Background Encoder"
STYLE_NODE = "ColorizeDiffusion Style Encoder"


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


def official_mode(mode: str, family: str) -> ModeParts:
    """The nodes an official mode name wires for `family` ("full": v2 style + BG, v1.5 BG + FG, v1 BG)."""
    if mode not in OFFICIAL_MODES:
        raise ColorizerInputError(f"unknown mode {mode!r}; choose one of {', '.join(OFFICIAL_MODES)}")
    if mode == "full":
        return from_checkboxes(style=family == "v2", background=True, foreground=family == "v1.5")
    return from_checkboxes(style=mode == "style enhance", background=mode == "background enhance",
                           foreground=mode == "foreground enhance")


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def check_style(family: str) -> None:
    """The style encoder exists only in v2 checkpoints (the v1/v1.5 apps ignore the checkbox)."""
    if family != "v2":
        raise ColorizerInputError(
            f"{STYLE_NODE} needs a ColorizeDiffusion v2 checkpoint; this one is {family_name(family)}, which has no "
            f"style encoder. Remove the Style Encoder from this graph (or load a v2 checkpoint such as "
            "v2-full.safetensors)")


def unfinished(family: str, parts: ModeParts) -> str:
    """Why a wiring cannot run yet ('' when it can): checked before sampling, whatever the order of the nodes."""
    if parts.style and family != "v2":
        return (f"{STYLE_NODE} needs a ColorizeDiffusion v2 checkpoint; this one is {family_name(family)}")
    if parts.background and not parts.split:
        return (f"{BACKGROUND_NODE} needs {SPLIT_NODE} on the same conditioning: the sketch mask decides where the "
                f"background goes ({family_name(family)}). Wire Split Attention with the sketch's mask before or after "
                "the Background Encoder")
    if parts.split and not parts.background:
        if family == "xlv2":
            return (f"{SPLIT_NODE} alone (foreground enhance) needs a foreground encoder, which the released "
                    f"{family_name(family)} checkpoints do not have: add {BACKGROUND_NODE} (background enhance) or "
                    "remove Split Attention")
        if family == "v1":
            return (f"{SPLIT_NODE} alone (foreground enhance) has no effect with a {family_name(family)} checkpoint: "
                    f"add {BACKGROUND_NODE} (background enhance) or remove Split Attention")
        if not parts.foreground:
            return (f"{SPLIT_NODE} with foreground_enhance off needs {BACKGROUND_NODE}: turn foreground_enhance on "
                    "(foreground enhance) or wire a Background Encoder (background enhance)")
    return ""


def check_runnable(family: str, parts: ModeParts) -> None:
    message = unfinished(family, parts)
    if message:
        raise ColorizerInputError(message)


def lora_branches(family: str, parts: ModeParts) -> tuple[bool, bool]:
    """(foreground LoRA, background LoRA) of the split attention as the official wrappers set them
    (model-spec §3.5): v2 both with the background, v1.5 one per checkbox, v1 none."""
    if not parts.split:
        return False, False
    if family in ("v2", "xlv2"):       # xlv2: its one "background" LoRA on both halves
        return parts.background, parts.background
    if family == "v1.5":
        return parts.foreground, parts.background
    return False, False
