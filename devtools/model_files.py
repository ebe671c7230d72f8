"""The model files of the example workflows: each file's download and model folder, and the loader widgets that
name them. One table: the workflows' `models` lists (what the frontend's Missing Models dialog and Issues panel
offer) and the README's model table (checked by tests/test_example_workflows.py) are made from it.
"""
from __future__ import annotations

from ..model_patches.colorize_diffusion.families import FAMILIES
from .colorflow_workflows import MODEL_FILES as COLORFLOW_FILES
from .colorflow_workflows import REPOSITORY_NAMES as COLORFLOW_REPOSITORY_NAMES
from .colorflow_workflows import MODEL_WIDGETS as COLORFLOW_MODEL_WIDGETS

CHECKPOINTS = {"v1": "mult-eps-newft.safetensors", "v1.5": "switch-eps.safetensors", "v2": "v2-full.safetensors",
               # XL: the released names are not verified; the family is read from the weights and any name works
               # (one starting with sdxl / xlv2 and without "eps" keeps the official v-prediction rule)
               "sdxl": "sdxl.safetensors", "xlv2": "xlv2.safetensors"}
XL_FAMILIES = tuple(name for name, spec in FAMILIES.items() if spec.xl)
CLIP_VISION = "clip_vision_h.safetensors"
CLIP_VISION_XL = "clip_vision_g.safetensors"      # CLIP ViT-bigG vision tower, ComfyUI's file
TAGGER = "wd-v1-4-swinv2-tagger-v2.safetensors"   # SmilingWolf's model.safetensors, saved under this name
TEXT_TOWER = "open_clip_vit_h14_laion2b.safetensors"   # the full OpenCLIP ViT-H-14 file: its text tower manipulates
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
    TEXT_TOWER: (f"{_HF}/laion/CLIP-ViT-H-14-laion2B-s32B-b79K/resolve/main/open_clip_model.safetensors",
                 "clip_vision"),
    CLIP_VISION_XL: (f"{_HF}/comfyanonymous/clip_vision_g/resolve/main/{CLIP_VISION_XL}", "clip_vision"),
    TAGGER: (f"{_HF}/SmilingWolf/wd-v1-4-swinv2-tagger-v2/resolve/main/model.safetensors",
             "colorizediffusion_tagger"),
    **COLORFLOW_FILES,
}


# Widgets whose value names a user file (checked against the official names, not against a folder listing).
FILE_WIDGETS = {("LoadImage", "image"), ("ColorizeDiffusionLoadImage", "image"), ("LoadImageMask", "image"),
                ("LoadImageDataSetFromFolder", "folder"), ("ColorizeDiffusionExamplePicture", "picture"),
                ("ColorizeDiffusionExamplePictureFolder", "folder"),
                ("VAELoader", "vae_name"), ("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"),
                ("CheckpointLoaderSimple", "ckpt_name"), ("ColorizeDiffusionLoadColorFlow", "colorizer"),
                ("ColorizeDiffusionLoadColorFlowSuperResolution", "folder"),
                ("ColorizeDiffusionLoadDiffusersBase", "folder"), ("ColorizeDiffusionCheckpointLoader", "ckpt_name"),
                ("ColorizeDiffusionLoadOpenCLIPVision", "clip_name"), ("ColorizeDiffusionLoadTextTower", "clip_name"),
                ("ColorizeDiffusionLoadWDTagger", "tagger_name"), ("ColorizeDiffusionSketchMask", "weights"),
                ("ColorizeDiffusionReferenceMask", "weights")}
MODEL_WIDGETS = {("ColorizeDiffusionCheckpointLoader", "ckpt_name"), ("ColorizeDiffusionLoadOpenCLIPVision",
                                                                       "clip_name"),
                 ("ColorizeDiffusionLoadTextTower", "clip_name"), ("ColorizeDiffusionLoadWDTagger", "tagger_name"),
                 ("ColorizeDiffusionSketchMask", "weights"), ("ColorizeDiffusionReferenceMask", "weights"),
                 *COLORFLOW_MODEL_WIDGETS}
# the networks' files the mask nodes' `weights` widget names (the official names)
NETWORK_FILES = {"ColorizeDiffusionSketchMask": "sketch-segment.safetensors",
                 "ColorizeDiffusionReferenceMask": "isnetis.safetensors"}
# files saved under another name than their repository's (the download's last path part)
REPOSITORY_NAMES = {TAGGER: "model.safetensors", TEXT_TOWER: "open_clip_model.safetensors",
                    **COLORFLOW_REPOSITORY_NAMES}

# ComfyUI model folder key -> where it is under models/ (the pack's own keys: model_folders.FOLDERS)
FOLDER_PATHS = {"colorizediffusion": "colorizediffusion", "colorizediffusion_preprocessors":
                "colorizediffusion/preprocessors", "colorizediffusion_tagger": "colorizediffusion/tagger"}

# What the example workflows need beyond single files with a fixed name (no `models` entry: the frontend cannot
# offer them): (what, folder under models/, where to get it, the workflows' families or stems)
OTHER_FILES = (
    ("XL checkpoints: the `sdxl…` (base) and `xlv2…` (ReferenceNet) files of the release, under their release "
     "names (the workflows name `sdxl.safetensors` / `xlv2.safetensors`: pick yours in the loader)",
     "colorizediffusion", f"{_HF}/tellurion/ColorizeDiffusionXL/tree/main", "xl"),
    ("ColorFlow's released colorizer folders `sketch/`, `shading/`, `GraySD/` (config.json, weights, LoRA, "
     "MultiResNetModel.bin), whole", "colorflow", f"{_HF}/TencentARC/ColorFlow/tree/main", "colorflow"),
    ("ColorFlow's `LE/` and `ScreenStyle/` folders (Decolorize's networks), whole", "colorflow",
     f"{_HF}/TencentARC/ColorFlow/tree/main", "colorflow"),
)
README_BEGIN = "<!-- model table: generated by scripts/build_workflows.py from the workflows' models lists -->"
README_END = "<!-- end of model table -->"


def readme_table(models_by_stem: dict, groups: dict) -> str:
    """The README's table of every file the example workflows need: from each shipped workflow's `models` list
    (`models_by_stem`: stem -> that list) plus OTHER_FILES (`groups`: "xl"/"colorflow" -> their stems)."""
    rows, used = {}, {}
    for stem, models in models_by_stem.items():
        for m in models:
            rows[m["name"]] = (m["directory"], m["url"])
            used.setdefault(m["name"], []).append(stem)
    lines = [README_BEGIN, "", "| File | Folder | Download | Workflows |", "|---|---|---|---|"]
    for name, (directory, url) in rows.items():
        saved = f" (rename the download, `{REPOSITORY_NAMES[name]}`, to this)" if name in REPOSITORY_NAMES \
            else ""
        lines.append(f"| `{name}`{saved} | `models/{FOLDER_PATHS.get(directory, directory)}/` | {url} | "
                     f"{', '.join(sorted(used[name]))} |")
    for what, directory, url, group in OTHER_FILES:
        lines.append(f"| {what} | `models/{FOLDER_PATHS.get(directory, directory)}/` | {url} | "
                     f"{', '.join(sorted(groups[group]))} |")
    return "\n".join(lines + ["", README_END])
