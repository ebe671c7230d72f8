"""The model files of the example workflows: each file's download and model folder, and the loader widgets that
name them. One table: the workflows' `models` lists (what the frontend's Missing Models dialog and Issues panel
offer) and the README's model table (checked by tests/test_example_workflows.py) are made from it.
"""
from __future__ import annotations

from ..model_patches.colorize_diffusion.families import FAMILIES
from .colorflow_workflows import MODEL_FILES as COLORFLOW_FILES
from .colorflow_workflows import MODEL_WIDGETS as COLORFLOW_MODEL_WIDGETS

CHECKPOINTS = {"v1": "mult-eps-newft.safetensors", "v1.5": "switch-eps.safetensors", "v2": "v2-full.safetensors",
               # XL: the released names are not verified; the family is read from the weights and any name works
               # (one starting with sdxl / xlv2 and without "eps" keeps the official v-prediction rule)
               "sdxl": "sdxl.safetensors", "xlv2": "xlv2.safetensors"}
XL_FAMILIES = tuple(name for name, spec in FAMILIES.items() if spec.xl)
CLIP_VISION = "clip_vision_h.safetensors"
CLIP_VISION_XL = "clip_vision_g.safetensors"      # CLIP ViT-bigG vision tower, ComfyUI's file
TAGGER = "wd-v1-4-swinv2-tagger-v2.safetensors"   # SmilingWolf's model.safetensors, saved under this name
TEXT_TOWER = "open_clip_pytorch_model.bin"       # the full OpenCLIP ViT-H-14 file: its text tower manipulates
_HF = "https://huggingface.co"
MODEL_FILES = {   # file -> (download url, model folder): ComfyUI's missing-models dialog offers these
    "mult-eps-newft.safetensors": (f"{_HF}/tellurion/ColorizeDiffusion/resolve/main/mult-eps-newft.safetensors",
                                   "colorizediffusion"),
    "switch-eps.safetensors": (f"{_HF}/tellurion/ColorizeDiffusion/resolve/main/switch-eps.safetensors",
                               "colorizediffusion"),
    "v2-full.safetensors": (f"{_HF}/tellurion/ColorizeDiffusion/resolve/main/v2-full.safetensors",
                            "colorizediffusion"),
    CLIP_VISION: (f"{_HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/clip_vision/"
                  f"{CLIP_VISION}", "clip_vision"),
    "sketch-segment.safetensors": (f"{_HF}/tellurion/line_extractor/resolve/main/sketch-segment.safetensors",
                                   "colorizediffusion_preprocessors"),
    "isnetis.safetensors": (f"{_HF}/tellurion/line_extractor/resolve/main/isnetis.safetensors",
                            "colorizediffusion_preprocessors"),
    TEXT_TOWER: (f"{_HF}/laion/CLIP-ViT-H-14-laion2B-s32B-b79K/resolve/main/{TEXT_TOWER}", "clip_vision"),
    CLIP_VISION_XL: (f"{_HF}/comfyanonymous/clip_vision_g/resolve/main/{CLIP_VISION_XL}", "clip_vision"),
    TAGGER: (f"{_HF}/SmilingWolf/wd-v1-4-swinv2-tagger-v2/resolve/main/model.safetensors",
             "colorizediffusion_tagger"),
    **COLORFLOW_FILES,
}


# Widgets whose value names a user file (checked against the official names, not against a folder listing).
FILE_WIDGETS = {("LoadImage", "image"), ("LoadImageMask", "image"), ("LoadImageDataSetFromFolder", "folder"),
                ("VAELoader", "vae_name"), ("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"),
                ("CheckpointLoaderSimple", "ckpt_name"), ("ColorizeDiffusionLoadColorFlow", "colorizer"),
                ("ColorizeDiffusionLoadColorFlowSuperResolution", "folder"),
                ("ColorizeDiffusionLoadDiffusersBase", "folder"), ("ColorizeDiffusionCheckpointLoader", "ckpt_name"),
                ("ColorizeDiffusionLoadOpenCLIPVision", "clip_name"), ("ColorizeDiffusionLoadTextTower", "clip_name"),
                ("ColorizeDiffusionLoadWDTagger", "tagger_name")}
MODEL_WIDGETS = {("ColorizeDiffusionCheckpointLoader", "ckpt_name"), ("ColorizeDiffusionLoadOpenCLIPVision",
                                                                       "clip_name"),
                 ("ColorizeDiffusionLoadTextTower", "clip_name"), ("ColorizeDiffusionLoadWDTagger", "tagger_name"),
                 *COLORFLOW_MODEL_WIDGETS}
NETWORK_FILES = {"ColorizeDiffusionSketchMask": "sketch-segment.safetensors",
                 "ColorizeDiffusionReferenceMask": "isnetis.safetensors"}
