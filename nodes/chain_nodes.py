"""The conditioning chain: Apply Sketch, then any of Split Attention, Background Encoder, Style Encoder and the
reference-strength nodes, each taking the (positive, negative) pair and returning it with its part added.

Which nodes are wired is the inference mode (model_patches/colorize_diffusion/modes.py has the table); the maths is in
model_patches/colorize_diffusion/chain.py.
"""
from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from ..model_patches.colorize_diffusion import chain
from ..model_patches.colorize_diffusion.assembly import conditionings
from ..model_patches.colorize_diffusion.prompt import prompt_of
from ..model_patches.colorize_diffusion.modes import BACKGROUND_NODE, SPLIT_NODE, STYLE_NODE
from ..model_patches.colorize_diffusion.settings import BLOCK_NAMES, accurate_reference_scales
from ..model_patches.colorize_diffusion.settings import GuidanceWindow as Window
from ..model_patches.colorize_diffusion.unet_patches import apply_colorizer
from .io_types import CATEGORY, Colorizer, ColorizerReference, ColorizerSketch, WDTagger, fraction


def _pair_inputs():
    return [io.Conditioning.Input("positive", tooltip="positive of Apply Sketch or of a node chained after it"),
            io.Conditioning.Input("negative", tooltip="negative of the same node")]


def _pair_outputs():
    return [io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")]


def _strength(id_: str, tooltip: str):
    return io.Float.Input(id_, default=1.0, min=0.0, max=2.0, step=0.05, tooltip=tooltip)


class ApplySketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionApplySketch", display_name="ColorizeDiffusion Apply Sketch", category=CATEGORY,
            description=(
                "Starts a colorization: runs the sketch encoder once on the prepared sketch, patches the MODEL "
                "(sketch residuals, reference cross-attention) and gives the positive and negative conditionings "
                "(negative = the reference-unconditional pass) and the empty latent. Alone it is the official "
                "vanilla mode; chain Split Attention, Background Encoder or Style Encoder after it for the others."),
            inputs=[
                io.Model.Input("model", tooltip="the UNet of Load ColorizeDiffusion Checkpoint"),
                Colorizer.Input("colorizer"),
                ColorizerSketch.Input("sketch", tooltip="from ColorizeDiffusion Prepare Sketch"),
                ColorizerReference.Input("reference", tooltip="from ColorizeDiffusion Encode Reference"),
                io.Float.Input("sketch_strength", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Sketch strength: multiplies every sketch residual"),
                io.Int.Input("samples_per_sketch", default=1, min=1, max=64,
                             tooltip="pictures generated per sketch in one run (the app's batch size)"),
            ],
            outputs=[io.Model.Output(display_name="model"), *_pair_outputs(),
                     io.Latent.Output(display_name="latent", tooltip="empty latent of the sketch's size and batch")],
        )

    @classmethod
    def execute(cls, model, colorizer, sketch, reference, sketch_strength=1.0, samples_per_sketch=1):
        prompt = chain.start(colorizer, sketch.sketch, reference, sketch_strength, samples_per_sketch)
        height, width = prompt.size
        latent = {"samples": torch.zeros(prompt.batch, 4, height // 8, width // 8)}
        return io.NodeOutput(apply_colorizer(model, colorizer), *conditionings(prompt), latent)


class SplitAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionSplitAttention", display_name=SPLIT_NODE, category=CATEGORY,
            description=(
                "Mask-guided split cross-attention (the official 'FG enhance' / the mask half of 'BG enhance'): "
                "where the sketch mask is above the threshold the UNet attends to the foreground tokens, elsewhere "
                "to the background tokens. Alone: foreground enhance; with Background Encoder: background enhance."),
            inputs=[
                *_pair_inputs(),
                io.Mask.Input("sketch_mask", tooltip="the character in the prepared sketch (ColorizeDiffusion Sketch "
                                                     "Mask, or any MASK of the generation size)"),
                fraction("threshold", 0.05, "Sketch mask threshold: foreground where the mask is above it", 0.01),
                _strength("foreground_strength", "Foreground strength of the split attention"),
                _strength("background_strength", "Background strength of the split attention"),
                fraction("merge_scale", 0.0, "Merging scale: blends the background attention into the foreground"),
                io.Boolean.Input("foreground_enhance", default=True, tooltip=(
                    "the official FG enhance checkbox (v1.5: the foreground LoRA). Off with a Background Encoder "
                    "= the official BG enhance alone")),
                io.Boolean.Input("strengths_all_families", default=False, tooltip=(
                    "not official: let the foreground/background strengths act on v1/v1.5 too (the official app "
                    "resets them to 1 there)")),
            ],
            outputs=_pair_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, sketch_mask, threshold=0.05, foreground_strength=1.0,
                background_strength=1.0, merge_scale=0.0, foreground_enhance=True, strengths_all_families=False):
        prompt = prompt_of(positive, negative, SPLIT_NODE)
        prompt = chain.with_split(prompt, sketch_mask, threshold, foreground_strength, background_strength,
                                  merge_scale, foreground_enhance, not strengths_all_families)
        return io.NodeOutput(*conditionings(prompt))


class BackgroundEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionBackgroundEncoder", display_name=BACKGROUND_NODE, category=CATEGORY,
            description=(
                "The official 'BG enhance': the background half of the split attention. From a separate "
                "background picture, or from the reference with its character whitened out (reference mask). "
                "v1: its CLIP tokens; v1.5: with the threshold embedding and the cluster transformer; v2: also "
                "the background encoder's features injected into the decoder skips. Needs Split Attention."),
            inputs=[
                *_pair_inputs(),
                fraction("reference_mask_threshold", 0.5, "Reference mask threshold: the character is whitened where "
                                                          "the reference mask reaches it", 0.01),
                _strength("background_factor", "Background factor (v2 background features)"),
                io.Vae.Input("vae", optional=True, tooltip="v2: encodes the background"),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="encodes the background-only reference (no background picture)"),
                io.Mask.Input("reference_mask", optional=True,
                              tooltip="the character in the reference (ColorizeDiffusion Reference Mask)"),
                ColorizerReference.Input("background", optional=True, tooltip="a separate background picture "
                                                                              "(Encode Reference of it)"),
                WDTagger.Input("tagger", optional=True, tooltip=(
                    "XL: encodes the background-only reference with the CLIP tokens (no background picture)")),
                io.Boolean.Input("latent_copy", optional=True, default=False, tooltip=(
                    "XL app's 'Latent copy BG input': outside the character every step starts from the background "
                    "picture's latent (needs a background picture and the ColorizeDiffusion Guider)")),
            ],
            outputs=_pair_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, reference_mask_threshold=0.5, background_factor=1.0, vae=None,
                clip_vision=None, reference_mask=None, background=None, tagger=None, latent_copy=False):
        prompt = prompt_of(positive, negative, BACKGROUND_NODE)
        prompt = chain.with_background(prompt, vae=vae, clip_vision=clip_vision, background=background,
                                       reference_mask=reference_mask, reference_threshold=reference_mask_threshold,
                                       factor=background_factor, tagger=tagger, latent_copy=bool(latent_copy))
        return io.NodeOutput(*conditionings(prompt))


class StyleEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionStyleEncoder", display_name=STYLE_NODE, category=CATEGORY,
            description=(
                "The official 'Style enhance' (v2 only): the reference's VAE latent through the style encoder "
                "modulates every decoder block, for a stronger transfer of the reference's rendering. With a "
                "background picture, its own modulation is blended in by the merging scale."),
            inputs=[
                *_pair_inputs(),
                io.Vae.Input("vae", tooltip="encodes the reference"),
                fraction("merge_scale", 0.0, "Merging scale: share of the background picture's style"),
                ColorizerReference.Input("background", optional=True, tooltip="a separate background picture"),
            ],
            outputs=_pair_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, vae, merge_scale=0.0, background=None):
        prompt = prompt_of(positive, negative, STYLE_NODE)
        prompt = chain.with_style(prompt, vae=vae, background=background, merge_scale=merge_scale)
        return io.NodeOutput(*conditionings(prompt))


class ReferenceStrength(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionReferenceStrength", display_name="ColorizeDiffusion Reference Strength",
            category=CATEGORY,
            description=("How strongly each UNet level attends to the reference: the official 'Reference strength' "
                         "and the encoder / color / semantics crossattn scales. Defaults reproduce the app."),
            inputs=[
                *_pair_inputs(),
                _strength("reference_strength", "Reference strength: multiplies the level scales"),
                _strength("encoder_scale", "Encoder crossattn scale (blocks 0-5)"),
                _strength("color_scale", "Color crossattn scale (middle level: blocks 2,3,10,11,12)"),
                _strength("semantics_scale", "Semantics crossattn scale (low level: blocks 4,5,7,8,9)"),
                io.Boolean.Input("scale_all_blocks", default=False, tooltip=(
                    "not official: also scale the UNet middle block and the last three decoder blocks, which the "
                    "official level mode leaves at 1")),
            ],
            outputs=_pair_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, reference_strength=1.0, encoder_scale=1.0, color_scale=1.0,
                semantics_scale=1.0, scale_all_blocks=False):
        prompt = prompt_of(positive, negative, "ColorizeDiffusion Reference Strength")
        prompt = chain.with_reference_levels(prompt, reference_strength, encoder_scale, color_scale, semantics_scale,
                                             scale_all_blocks)
        return io.NodeOutput(*conditionings(prompt))


class BlockReferenceStrength(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        blocks = [_strength(f"block_{i}", f"slider attn{i} ({name})") for i, name in enumerate(BLOCK_NAMES)]
        return io.Schema(
            node_id="ColorizeDiffusionBlockReferenceStrength",
            display_name="ColorizeDiffusion Block Reference Strength (accurate)", category=CATEGORY,
            description=(
                "Accurate crossattn control: the reference strength of each of the 16 transformer blocks on its "
                "own (the official 'Activate accurate crossattn control' sliders 0.down0.attn0 … 15.up0.attn2). "
                "By default the official reading is reproduced: the app shifts the sliders by one (slider 0 is "
                "unused, block i takes slider i+1, block 15 stays 1)."),
            inputs=[
                *_pair_inputs(), *blocks,
                io.Boolean.Input("official_slider_shift", default=True, tooltip=(
                    "as the official app: block i takes slider i+1 (slider 0 unused, block 15 stays 1); off: each "
                    "slider sets its own block")),
            ],
            outputs=_pair_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, official_slider_shift=True, **blocks):
        prompt = prompt_of(positive, negative, "ColorizeDiffusion Block Reference Strength")
        sliders = [blocks.get(f"block_{i}", 1.0) for i in range(len(BLOCK_NAMES))]
        scales = accurate_reference_scales(sliders, official_slider_shift)
        return io.NodeOutput(*conditionings(chain.with_reference_scales(prompt, scales)))


class GuidanceWindow(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionGuidanceWindow", display_name="ColorizeDiffusion Guidance Window",
            category=CATEGORY,
            description=(
                "The official guidance window: the reference acts only between the start and end steps, and not "
                "inside the no-guidance window (steps as fractions of the schedule, 0 = first). Outside, every "
                "pass sees a zero reference context. The official apps honour it for v1 and XL (sdxl, xlv2)."),
            inputs=[
                *_pair_inputs(),
                fraction("start", 0.0, "Guidance start step: no reference before it"),
                fraction("end", 1.0, "Guidance end step: no reference after it"),
                fraction("no_guidance_start", -0.05, "No guidance start step (-0.05 = no such window)", lo=-0.05),
                fraction("no_guidance_end", -0.05, "No guidance end step (-0.05 = no such window)", lo=-0.05),
                io.Boolean.Input("all_families", default=False, tooltip=(
                    "not official: apply the window to v1.5/v2 too (the official app ignores it there); with "
                    "Split Attention each half gets the zero context")),
            ],
            outputs=_pair_outputs(),
        )

    @classmethod
    def execute(cls, positive, negative, start=0.0, end=1.0, no_guidance_start=-0.05, no_guidance_end=-0.05,
                all_families=False):
        prompt = prompt_of(positive, negative, "ColorizeDiffusion Guidance Window")
        window = Window(float(start), float(end), float(no_guidance_start), float(no_guidance_end))
        return io.NodeOutput(*conditionings(chain.with_window(prompt, window, all_families)))


NODES = [ApplySketch, SplitAttention, BackgroundEncoder, StyleEncoder, ReferenceStrength, BlockReferenceStrength,
         GuidanceWindow]
