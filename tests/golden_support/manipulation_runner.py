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


def _recorded_groups(p: dict) -> list:
    return [manipulation.ManipulationGroup(t, a, c, s, e, tuple(ts)) for t, a, c, s, e, ts in zip(
        p["targets"], p["anchors"], p["controls"], p["target_scales"], p["enhances"], p["thresholds_list"])]


def _groups(case: dict) -> list:
    """The groups generate() manipulates: the Final prompt through the pack's parser, then the current sliders' group
    (the app's parse_prompts); checked against the case's parsed record. A case without the UI fields gives only the
    parsed record."""
    recorded = _recorded_groups(case["parsed_manipulation_params"])
    if not any(p.get("ui_name") == "Final prompt" for p in case["parameters"]):
        return recorded
    groups = manipulation.parse_groups(_param(case, "Final prompt"))
    if _param(case, "Target prompt"):
        groups.append(manipulation.ManipulationGroup(
            _param(case, "Target prompt"), _param(case, "Anchor prompt"), _param(case, "Control prompt"),
            float(_param(case, "Target scale")), bool(_param(case, "Enhance manipulation")),
            tuple(float(_param(case, f"Threshold {k}")) for k in range(4))))
    assert _same_groups(groups, recorded), (groups, recorded)
    flag = "manipulation_applied_by_generate (check_manipulate: some target scale > 0)"
    if flag in case:
        assert bool(case[flag]) == any(g.scale > 0 for g in groups), case[flag]
    return groups


def _same_groups(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        (x.target, x.anchor, x.control, x.enhance) == (y.target, y.anchor, y.control, y.enhance)
        and abs(float(x.scale) - float(y.scale)) < 1e-9
        and all(abs(float(s) - float(t)) < 1e-9 for s, t in zip(x.thresholds, y.thresholds, strict=True))
        for x, y in zip(a, b))


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
    assert _same_groups(groups, _recorded_groups(case["parsed_manipulation_params (Final prompt only)"])), groups
    manipulated, got = _apply(v, groups, text, "manip.group.")
    thresholds = [_param(case, f"Threshold {k}") for k in range(4)]
    assert [float(t) for t in case["visualize_thresholds"]] == [float(t) for t in thresholds]
    assert case["visualize_control"] == _param(case, "Control prompt")
    hm = manipulation.heat_map(manipulated, _param(case, "Control prompt"), thresholds, picture.shape[:2], text)
    counts = torch.bincount(hm.labels[0].flatten().long(), minlength=len(case["label_pixel_counts"]))
    assert counts.tolist() == list(case["label_pixel_counts"]), counts
    u8 = (picture * 255).round().to(torch.uint8)
    mixed, colours = manipulation.overlay(u8, hm.labels[0])
    got.update({"tokens_full": v, "tokens_manipulated": manipulated, "scale_tokens": hm.scale_tokens[0, 0],
                "scale_pixels": hm.scale_pixels[0, 0], "n_pixels": hm.n_pixels[0, 0], "labels": hm.labels[0],
                "overlay": mixed.float() / 255, "debug.heatmap_rgb": colours.float() / 255,
                "debug.cv2_jet_lut_rgb": manipulation.jet_lut().float() / 255})
    got.update({f"heat.{k}": h[0, 0] for k, h in enumerate(hm.heat)})
    return got
