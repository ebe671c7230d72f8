"""One spec per ColorizeDiffusion family: what the family's checkpoint holds and what its official app does.

The loader detects the family from the checkpoint's keys (detection.py) and the `Colorizer` looks its spec up once;
everything after it — the loader's network split, the chain's parts, the rules table (modes.py), the attention
settings and the UNet patch — reads what a family does from the spec, never from its name.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..common.specs import spec_from


@dataclass(frozen=True)
class FamilySpec:
    name: str                        # "v1" | "v1.5" | "v2" | "sdxl" | "xlv2" (detection.py)
    display_name: str                # in messages
    xl: bool = False                 # SDXL-shaped UNet (70 transformer blocks, a 512-d y), CLIP bigG + WD tagger
    #                                  reference through ClusterConcat, XL sketch encoder, nearest-sampled masks
    guidance_window: bool = False    # the official wrapper applies the guidance window (v1.5/v2 never reach it)
    style_encoder: bool = False      # v2: style encoder and decoder style modules (Style Encoder node)
    background_encoder: bool = False  # v2: VAE-latent background encoder and skip-warp modules
    threshold_context: bool = False  # v1.5: threshold embedder and cluster transformer in the split context
    reference_net: bool = False      # xlv2: background ReferenceNet, whose banks the decoder self-attentions read
    lora_branches: str = "none"      # split LoRA per half: "none" (v1, sdxl), "checkboxes" (v1.5: FG and BG each
    #                                  with its checkbox), "background" (v2, xlv2: both with the background)
    lora_label: str = ""             # the one LoRA both halves use ("background": xlv2), else their own fg/bg pair
    strengths_reset: str = "never"   # the official wrapper resets the fg/bg strengths to 1: "always" (v1, v1.5),
    #                                  "unmerged" (sdxl, when the merging scale is 0)
    split_rule: str = ""             # which tokens go to the foreground half: "" by layer type (SD2.1),
    #                                  "above" m > threshold (sdxl), "soft" blend (xlv2)
    split_alone: str = ""            # why Split Attention alone (foreground enhance) cannot run; "" = it can
    latent_copy_threshold: float | None = None   # the XL latent copy's mask threshold (None: the sketch mask's)
    reference_levels: str = "sd21"   # how Reference Strength's sliders reach the blocks: "sd21" (16 blocks by
    #                                  level), "encoder" (sdxl: every block ← encoder), "encoder+low" (xlv2)

    @property
    def latent_format(self):
        import comfy.latent_formats

        return comfy.latent_formats.SDXL() if self.xl else comfy.latent_formats.SD15()   # SD2.x: scale 0.18215


FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec("v1", "v1 (mult)", guidance_window=True, strengths_reset="always",
               split_alone="has no effect with a {family} checkpoint"),
    FamilySpec("v1.5", "v1.5 (switch)", threshold_context=True, lora_branches="checkboxes", strengths_reset="always"),
    FamilySpec("v2", "v2", style_encoder=True, background_encoder=True, lora_branches="background"),
    FamilySpec("sdxl", "XL (sdxl)", xl=True, guidance_window=True, strengths_reset="unmerged", split_rule="above",
               latent_copy_threshold=0.5, reference_levels="encoder"),
    FamilySpec("xlv2", "XL v2 (xlv2)", xl=True, guidance_window=True, reference_net=True, lora_branches="background",
               lora_label="background", split_rule="soft", reference_levels="encoder+low",
               split_alone="needs a foreground encoder, which the released {family} checkpoints do not have"),
)}


def spec_of(family) -> FamilySpec:
    """The spec of `family`: a FamilySpec as it is, or a family name."""
    return spec_from(FAMILIES, family, "ColorizeDiffusion")
