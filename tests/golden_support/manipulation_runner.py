"""Level G on the CLIP towers: manipulated reference tokens (G1) and the Visualize heat map (G2).

The tokens come from the pack's reference encoder on the case's picture; the text tower from the full OpenCLIP
file; the groups from the case's parsed parameters (G1) or the Final-prompt text through the pack's parser (G2).
"""
from __future__ import annotations

from pathlib import Path

import torch

from colorize_diffusion.model_patches.common import clip_tokens, clip_vision
from colorize_diffusion.model_patches.colorize_diffusion import manipulation
from colorize_diffusion.weight_files import read_state_dict

from .clip_runner import tower_heads


def _towers(root: Path, case: dict):
    path = root / case["clip"]
    vision = clip_vision.load_openclip_vision(str(path), heads=tower_heads(path))
    text = manipulation.load_text_tower(read_state_dict(path),
                                        heads=clip_vision.read_sidecar_config(str(path)).get("text_heads"))
    return vision, text


def _groups(case: dict) -> list:
    p = case["parsed_manipulation_params"]
    return [manipulation.ManipulationGroup(t, a, c, s, e, tuple(ts)) for t, a, c, s, e, ts in zip(
        p["targets"], p["anchors"], p["controls"], p["target_scales"], p["enhances"], p["thresholds_list"])]


def _param(case: dict, ui_name: str):
    return next(p["value"] for p in case["parameters"] if p.get("ui_name") == ui_name)


def _apply(v, groups, text, prefix: str) -> tuple:
    got = {}
    for k, group in enumerate(groups):
        r = manipulation.local_group(v, group, text)
        for name in ("cur_target_scale", "dscale", "c_map", "n", "band", "pwm", "anchor_scale", "a_map"):
            if getattr(r, name) is not None:
                got[f"{prefix}{k}.{name}"] = getattr(r, name)
        got[f"{prefix}{k}.tokens_after"] = v = r.tokens
    return v, got


def run(case, inputs, case_dir, root):
    vision, text = _towers(Path(root), case)
    if "image" in inputs:
        return _local(case, inputs, vision, text)
    return _visualize(case, inputs, vision, text)


def _local(case, inputs, vision, text):
    v = clip_tokens.encode_reference(vision, inputs["image"], token_type="full")
    groups = _groups(case)
    manipulated, got = _apply(v, groups, text, "group.")
    prompts = case["prompts_encoded (rows of text.*)"]
    ids = manipulation.tokenize(prompts)
    with torch.no_grad():
        got["text.features_unnormalized"] = text.project(ids)
    got.update({"tokens_full": v, "tokens_manipulated": manipulated, "text.tokens": ids,
                "text.features": text.encode(prompts)})
    cls = v[:, :1]
    for group in groups:
        cls = manipulation.global_group(cls, group, text)
    got["global.tokens_manipulated"] = cls
    return got


def _visualize(case, inputs, vision, text):
    picture = inputs["reference_image"]
    v = clip_tokens.encode_reference(vision, picture.movedim(-1, 0)[None] * 2 - 1, token_type="full")
    groups = manipulation.parse_groups(_param(case, "Final prompt"))
    manipulated, got = _apply(v, groups, text, "manip.group.")
    thresholds = [_param(case, f"Threshold {k}") for k in range(4)]
    hm = manipulation.heat_map(manipulated, _param(case, "Control prompt"), thresholds, picture.shape[:2], text)
    u8 = (picture * 255).round().to(torch.uint8)
    mixed, colours = manipulation.overlay(u8, hm.labels[0])
    got.update({"tokens_full": v, "tokens_manipulated": manipulated, "scale_tokens": hm.scale_tokens[0, 0],
                "scale_pixels": hm.scale_pixels[0, 0], "n_pixels": hm.n_pixels[0, 0], "labels": hm.labels[0],
                "overlay": mixed.float() / 255, "debug.heatmap_rgb": colours.float() / 255,
                "debug.cv2_jet_lut_rgb": manipulation.jet_lut().float() / 255})
    got.update({f"heat.{k}": h[0, 0] for k, h in enumerate(hm.heat)})
    return got
