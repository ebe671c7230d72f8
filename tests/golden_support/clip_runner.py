"""Golden runner for level-A CLIP cases (A1): reference tokens through the pack's nodes.

The tiny tower at ``root / case["clip"]`` is loaded the way a user would: ComfyUI's own CLIP vision loader
when it recognises the file (it only knows ViT-L/H/G layer counts, so for the tiny tower it returns None),
otherwise the "ColorizeDiffusion Load OpenCLIP Vision" node (back end (b), open_clip). The image then goes
through the "ColorizeDiffusion Encode Reference" node in ComfyUI IMAGE layout.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch


def tower_heads(clip_path: Path) -> int | None:
    """Head count of a golden CLIP file: ``<stem>.json`` or any JSON next to it describing ``open_clip_model_cfg``."""
    from colorize_diffusion.model_patches.common import clip_tokens, clip_vision

    side = clip_vision.read_sidecar_config(str(clip_path))
    if "heads" in side:
        return side["heads"]
    for js in sorted(clip_path.parent.glob("*.json")):
        try:
            cfg = json.loads(js.read_text())
        except ValueError:
            continue
        if isinstance(cfg, dict) and "open_clip_model_cfg" in cfg:
            derived = cfg.get("derived", {})
            if "heads" in derived:
                return int(derived["heads"])
            vc = cfg["open_clip_model_cfg"]["vision_cfg"]
            return int(vc["width"]) // int(vc.get("head_width", 64))
    return None


@contextlib.contextmanager
def clip_vision_folder(folder: Path):
    """Temporarily add ``folder`` to ComfyUI's ``clip_vision`` model paths (and drop the listing cache after)."""
    import folder_paths

    folder = str(folder)
    paths = folder_paths.folder_names_and_paths["clip_vision"][0]
    added = folder not in paths
    if added:
        paths.append(folder)
    folder_paths.filename_list_cache.pop("clip_vision", None)
    try:
        yield
    finally:
        if added:
            paths.remove(folder)
        folder_paths.filename_list_cache.pop("clip_vision", None)


def load_clip_vision(clip_path: Path, *, prefer_comfy: bool = True):
    """(clip_vision, how) for a CLIP file, through the node a user would pick."""
    import comfy.clip_vision
    from colorize_diffusion.nodes.reference_nodes import LoadOpenCLIPVision

    if prefer_comfy:
        cv = comfy.clip_vision.load(str(clip_path))
        if cv is not None:
            # ComfyUI knows this tower: its CLIP_VISION, re-loaded in fp32 for parity (as with --fp32-text-enc;
            # by default ComfyUI stores CLIP vision weights in fp16)
            import comfy.utils
            sd = comfy.utils.load_torch_file(str(clip_path), safe_load=True)
            if "visual.transformer.resblocks.0.attn.in_proj_weight" in sd:
                sd = comfy.clip_vision.convert_to_transformers(sd, "visual.")
            cv.model.to(torch.float32)
            cv.dtype = torch.float32
            cv.load_sd(sd)
            return cv, "comfy"
    with clip_vision_folder(clip_path.parent):
        (cv,) = LoadOpenCLIPVision.execute(clip_path.name, heads=tower_heads(clip_path) or 0,
                                              activation="gelu", dtype="fp32")
    return cv, "open_clip"


def run(case: dict, inputs: dict, case_dir: Path, root: Path) -> dict:
    from colorize_diffusion.model_patches.common import clip_tokens, clip_vision
    from colorize_diffusion.nodes.reference_nodes import EncodeReference

    cv, _how = load_clip_vision(Path(root) / case["clip"])
    image = inputs["image_hwc01"] if "image_hwc01" in inputs else (inputs["image"].movedim(1, -1) + 1) / 2
    (ref,) = EncodeReference.execute(cv, image)
    if "image" in inputs:
        assert torch.equal(ref.image, inputs["image"]), "IMAGE -> [-1,1] conversion is not bit-exact"
    return {
        "full": ref.full,
        "tokens": ref.tokens,
        "local": ref.local,
        "preprocessed_224": clip_tokens.preprocess(ref.image, clip_tokens.clip_image_size(cv)),
    }
