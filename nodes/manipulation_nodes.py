"""Text manipulation nodes: the CLIP text tower, manipulation rows (structured or in the shared text form), the
reference they act on, and the Visualize heat map. The maths: model_patches/manipulation.py."""
from __future__ import annotations

import dataclasses

import torch

import comfy.model_management as mm
import folder_paths

from ..errors import ColorizerInputError
from ..model_patches import clip_tokens, manipulation
from ..model_patches.checkpoint_file import read_state_dict
from ..preprocess import convert

CATEGORY = "ColorizeDiffusion/manipulation"
MANIPULATIONS = "COLORIZER_MANIPULATIONS"
TEXT_TOWER = "COLORIZER_TEXT_TOWER"


def _threshold(default, name):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.01,
                      "tooltip": f"Threshold {name}: band edge of the min-max normalised control similarity"})


class ColorizeDiffusionLoadTextTower:
    DESCRIPTION = ("Loads the CLIP text tower for text manipulation from a full OpenCLIP ViT-H-14 file "
                   "(open_clip_pytorch_model.bin or its safetensors, in models/clip_vision); image-only files such "
                   "as clip_vision_h.safetensors do not carry it.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (TEXT_TOWER,)
    RETURN_NAMES = ("text_tower",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip_name": (folder_paths.get_filename_list("clip_vision"),),
            "heads": ("INT", {"default": 0, "min": 0, "max": 64,
                              "tooltip": "attention heads of the text transformer; 0 = from its width (ViT-H: 16)"}),
        }}

    def load(self, clip_name, heads=0):
        path = folder_paths.get_full_path_or_raise("clip_vision", clip_name)
        side = clip_tokens.read_sidecar_config(path)
        return (manipulation.load_text_tower(read_state_dict(path, "CLIP file"),
                                             heads=heads or side.get("text_heads")),)


class _RowsNode:
    """Both ways of writing manipulation rows give the same list."""
    CATEGORY = CATEGORY
    RETURN_TYPES = (MANIPULATIONS,)
    RETURN_NAMES = ("manipulations",)


class ColorizeDiffusionManipulation(_RowsNode):
    DESCRIPTION = ("One text manipulation row of the official app: the reference tokens most similar to the control "
                   "prompt move from the anchor towards the target prompt, by the target scale. Chain rows through "
                   "`previous`; they act in order.")
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "target": ("STRING", {"default": "", "tooltip": "Target prompt"}),
            "anchor": ("STRING", {"default": "none", "tooltip": "Anchor prompt; the word 'none' for no anchor"}),
            "control": ("STRING", {"default": "none", "tooltip": "Control prompt: which tokens move most"}),
            "target_scale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 15.0, "step": 0.1,
                                       "tooltip": "Target scale"}),
            "enhance": ("BOOLEAN", {"default": False, "tooltip": "Enhance manipulation (acts with an anchor)"}),
            "threshold_0": _threshold(0.5, 0), "threshold_1": _threshold(0.55, 1),
            "threshold_2": _threshold(0.65, 2), "threshold_3": _threshold(0.95, 3),
        }, "optional": {"previous": (MANIPULATIONS, {"tooltip": "rows applied before this one"})}}

    def add(self, target, anchor, control, target_scale, enhance, threshold_0, threshold_1, threshold_2, threshold_3,
            previous=()):
        group = manipulation.ManipulationGroup(target, anchor, control, float(target_scale), bool(enhance),
                                               (threshold_0, threshold_1, threshold_2, threshold_3))
        group.check()
        return (tuple(previous) + (group,),)


class ColorizeDiffusionManipulationText(_RowsNode):
    DESCRIPTION = ("Manipulation rows in the shared text form, one per line, as the official app writes them: "
                   "[target] T; [anchor] A; [control] C; [scale] s; [enhanced] b; [ts0] t0; [ts1] t1; [ts2] t2; "
                   "[ts3] t3")
    FUNCTION = "parse"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text": ("STRING", {"multiline": True, "default": ""}),
            "official_enhanced_parsing": ("BOOLEAN", {"default": True, "tooltip":
                                          "as the app: any non-empty [enhanced] value (even False) means True"}),
        }}

    def parse(self, text, official_enhanced_parsing=True):
        groups = manipulation.parse_groups(text, official_quirks=official_enhanced_parsing)
        for g in groups:
            g.check()
        return (tuple(groups),)


class ColorizeDiffusionManipulateReference:
    DESCRIPTION = ("Applies text manipulation rows to the reference tokens (CLS unchanged). Connect the result to "
                   "the Conditioning's reference; the v2 style and background encoders then see it too. As the app, "
                   "the rows act only when some target scale is above 0 (then all of them, scale-0 rows included).")
    CATEGORY = CATEGORY
    FUNCTION = "manipulate"
    RETURN_TYPES = ("COLORIZER_REFERENCE",)
    RETURN_NAMES = ("reference",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"reference": ("COLORIZER_REFERENCE",), "text_tower": (TEXT_TOWER,),
                             "manipulations": (MANIPULATIONS,)}}

    def manipulate(self, reference, text_tower, manipulations):
        if not any(g.scale > 0 for g in manipulations):       # the app's check_manipulate
            return (reference,)
        full = manipulation.manipulate(reference.full, manipulations, text_tower)
        return (dataclasses.replace(reference, cls=full[:, :1], tokens=full[:, 1:]),)


class ColorizeDiffusionVisualizeManipulation:
    DESCRIPTION = ("The official Visualize: which parts of the reference resemble the control prompt (after the "
                   "manipulation rows), as four bands over the picture: blue = least similar … brown = most.")
    CATEGORY = CATEGORY
    FUNCTION = "visualize"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("overlay", "bands")
    OUTPUT_TOOLTIPS = ("the picture with the coloured bands and the 16x16 token grid",
                       "number of thresholds reached per pixel / 4")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "the reference picture"}),
            "clip_vision": ("CLIP_VISION",), "text_tower": (TEXT_TOWER,),
            "control": ("STRING", {"default": "", "tooltip": "Control prompt"}),
            "threshold_0": _threshold(0.5, 0), "threshold_1": _threshold(0.55, 1),
            "threshold_2": _threshold(0.65, 2), "threshold_3": _threshold(0.95, 3),
        }, "optional": {"manipulations": (MANIPULATIONS,)}}

    def visualize(self, image, clip_vision, text_tower, control, threshold_0, threshold_1, threshold_2, threshold_3,
                  manipulations=()):
        thresholds = (threshold_0, threshold_1, threshold_2, threshold_3)
        if not all(a < b for a, b in zip(thresholds, thresholds[1:])):
            raise ColorizerInputError(f"Visualize: the thresholds must increase, got {list(thresholds)}")
        image = convert.rgb(convert.check_image(image, "image"))
        overlays, bands = [], []
        for i in range(image.shape[0]):
            v = clip_tokens.encode_reference(clip_vision, convert.to_model(image[i:i + 1]), token_type="full")
            v = manipulation.manipulate(v, manipulations, text_tower)
            hm = manipulation.heat_map(v, control, thresholds, image.shape[1:3], text_tower)
            mixed, _ = manipulation.overlay((image[i] * 255).round().to(torch.uint8), hm.labels[0])
            overlays.append(mixed.float() / 255)
            bands.append(hm.labels[0].float() / 4)
        dev = mm.intermediate_device()
        return torch.stack(overlays).to(dev), torch.stack(bands).to(dev)


NODE_CLASS_MAPPINGS = {
    "ColorizeDiffusionLoadTextTower": ColorizeDiffusionLoadTextTower,
    "ColorizeDiffusionManipulation": ColorizeDiffusionManipulation,
    "ColorizeDiffusionManipulationText": ColorizeDiffusionManipulationText,
    "ColorizeDiffusionManipulateReference": ColorizeDiffusionManipulateReference,
    "ColorizeDiffusionVisualizeManipulation": ColorizeDiffusionVisualizeManipulation,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ColorizeDiffusionLoadTextTower": "ColorizeDiffusion Load Text Tower",
    "ColorizeDiffusionManipulation": "ColorizeDiffusion Manipulation",
    "ColorizeDiffusionManipulationText": "ColorizeDiffusion Manipulation (text form)",
    "ColorizeDiffusionManipulateReference": "ColorizeDiffusion Manipulate Reference",
    "ColorizeDiffusionVisualizeManipulation": "ColorizeDiffusion Visualize Manipulation",
}
