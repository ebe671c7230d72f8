"""Text manipulation nodes: the CLIP text tower, manipulation rows (structured or in the shared text form), the
reference they act on, and the Visualize heat map. The maths: model_patches/colorize_diffusion/manipulation.py."""
from __future__ import annotations

import comfy.model_management as mm
import folder_paths
from comfy_api.v0_0_2 import io

from ..model_patches.colorize_diffusion import manipulation
from ..preprocess import convert
from .io_types import CATEGORY as PACK_CATEGORY, ColorizerReference, Manipulations, TextTower

CATEGORY = f"{PACK_CATEGORY}/manipulation"
THRESHOLDS = (0.5, 0.55, 0.65, 0.95)


def _thresholds():
    return [io.Float.Input(f"threshold_{i}", default=d, min=0.0, max=1.0, step=0.01,
                           tooltip=f"Threshold {i}: band edge of the min-max normalised control similarity")
            for i, d in enumerate(THRESHOLDS)]


class LoadTextTower(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadTextTower", display_name="ColorizeDiffusion Load Text Tower",
            category=CATEGORY,
            description=("Loads the CLIP text tower for text manipulation from a full OpenCLIP ViT-H-14 file "
                         "(open_clip_pytorch_model.bin or its safetensors, in models/clip_vision); image-only files "
                         "such as clip_vision_h.safetensors do not carry it."),
            inputs=[
                io.Combo.Input("clip_name", options=folder_paths.get_filename_list("clip_vision")),
                io.Int.Input("heads", default=0, min=0, max=64,
                             tooltip="attention heads of the text transformer; 0 = from its width (ViT-H: 16)"),
            ],
            outputs=[TextTower.Output(display_name="text_tower")],
        )

    @classmethod
    def execute(cls, clip_name, heads=0):
        path = folder_paths.get_full_path_or_raise("clip_vision", clip_name)
        return io.NodeOutput(manipulation.load_text_tower_file(path, heads))


class Manipulation(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionManipulation", display_name="ColorizeDiffusion Manipulation", category=CATEGORY,
            description=("One text manipulation row of the official app: the reference tokens most similar to the "
                         "control prompt move from the anchor towards the target prompt, by the target scale. Chain "
                         "rows through `previous`; they act in order."),
            inputs=[
                io.String.Input("target", default="", tooltip="Target prompt"),
                io.String.Input("anchor", default="none", tooltip="Anchor prompt; the word 'none' for no anchor"),
                io.String.Input("control", default="none", tooltip="Control prompt: which tokens move most"),
                io.Float.Input("target_scale", default=0.0, min=0.0, max=15.0, step=0.05, tooltip="Target scale"),
                io.Boolean.Input("enhance", default=False, tooltip="Enhance manipulation (acts with an anchor)"),
                *_thresholds(),
                Manipulations.Input("previous", optional=True, tooltip="rows applied before this one"),
            ],
            outputs=[Manipulations.Output(display_name="manipulations")],
        )

    @classmethod
    def execute(cls, target, anchor, control, target_scale, enhance, threshold_0, threshold_1, threshold_2,
                threshold_3, previous=()):
        group = manipulation.ManipulationGroup(target, anchor, control, float(target_scale), bool(enhance),
                                               (threshold_0, threshold_1, threshold_2, threshold_3))
        group.check()
        return io.NodeOutput(tuple(previous) + (group,))


class ManipulationText(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionManipulationText", display_name="ColorizeDiffusion Manipulation (text form)",
            category=CATEGORY,
            description=("Manipulation rows in the shared text form, one per line, as the official app writes them: "
                         "[target] T; [anchor] A; [control] C; [scale] s; [enhanced] b; [ts0] t0; [ts1] t1; [ts2] t2; "
                         "[ts3] t3"),
            inputs=[
                io.String.Input("text", multiline=True, default=""),
                io.Boolean.Input("official_enhanced_parsing", default=True, tooltip=(
                    "as the app: any non-empty [enhanced] value (even False) means True")),
            ],
            outputs=[Manipulations.Output(display_name="manipulations")],
        )

    @classmethod
    def execute(cls, text, official_enhanced_parsing=True):
        groups = manipulation.parse_groups(text, official_quirks=official_enhanced_parsing)
        for g in groups:
            g.check()
        return io.NodeOutput(tuple(groups))


class ManipulateReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionManipulateReference", display_name="ColorizeDiffusion Manipulate Reference",
            category=CATEGORY,
            description=("Applies text manipulation rows to the reference tokens (CLS unchanged). Connect the result "
                         "to Apply Sketch's reference; the v2 style and background encoders then see it too. As the "
                         "app, the rows act only when some target scale is above 0 (then all of them, scale-0 rows "
                         "included)."),
            inputs=[ColorizerReference.Input("reference"), TextTower.Input("text_tower"),
                    Manipulations.Input("manipulations")],
            outputs=[ColorizerReference.Output(display_name="reference")],
        )

    @classmethod
    def execute(cls, reference, text_tower, manipulations):
        return io.NodeOutput(manipulation.manipulate_reference(reference, manipulations, text_tower))


class VisualizeManipulation(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionVisualizeManipulation", display_name="ColorizeDiffusion Visualize Manipulation",
            category=CATEGORY,
            description=("The official Visualize: which parts of the reference resemble the control prompt (after "
                         "the manipulation rows), as four bands over the picture: blue = least similar … brown = "
                         "most."),
            inputs=[
                io.Image.Input("image", tooltip="the reference picture"),
                io.ClipVision.Input("clip_vision"), TextTower.Input("text_tower"),
                io.String.Input("control", default="", tooltip="Control prompt"),
                *_thresholds(),
                Manipulations.Input("manipulations", optional=True),
            ],
            outputs=[io.Image.Output(display_name="overlay",
                                     tooltip="the picture with the coloured bands and the 16x16 token grid"),
                     io.Mask.Output(display_name="bands", tooltip="number of thresholds reached per pixel / 4")],
        )

    @classmethod
    def execute(cls, image, clip_vision, text_tower, control, threshold_0, threshold_1, threshold_2, threshold_3,
                manipulations=()):
        image = convert.rgb(convert.check_image(image, "image"))
        overlays, bands = manipulation.visualize(image, clip_vision, text_tower, control,
                                                 (threshold_0, threshold_1, threshold_2, threshold_3), manipulations)
        dev = mm.intermediate_device()
        return io.NodeOutput(overlays.to(dev), bands.to(dev))


NODES = [LoadTextTower, Manipulation, ManipulationText, ManipulateReference, VisualizeManipulation]
