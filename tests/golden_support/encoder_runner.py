"""Level-A encoder cases: sketch encoder (input `sketch`), v2 bg/style encoders (input `z`), v1.5 threshold
embedder + ClusterTransformer (input `tokens`). Dispatch is on the input keys, never on the case name."""
from __future__ import annotations

from pathlib import Path

import torch

from colorize_diffusion.model_patches.colorize_diffusion.networks import v2_encoders

from .model_eval import loaded


def _networks(path: str, prediction: str):
    """The checkpoint's extra networks, through the pack's own loader (absent ones are None)."""
    return loaded(path, prediction).colorizer.encoders


def _param(case: dict, internal_prefix: str, ui_name: str | None = None):
    for p in case.get("parameters", []):
        if p.get("internal_name", "").startswith(internal_prefix) or (ui_name and p.get("ui_name") == ui_name):
            return p["value"]
    raise KeyError(f"case {case['name']} has no parameter {internal_prefix!r}")


def _sketch(case, inputs, nets) -> dict:
    strength = float(_param(case, "ctl_scale", "Sketch strength"))
    cond, blank = nets.sketch_encoder.encode_with_blank(inputs["sketch"], strength)
    out = {f"control.{k}": t for k, t in enumerate(cond)}
    out.update({f"blank_control.{k}": t for k, t in enumerate(blank)})
    return out


def _v2(case, inputs, nets) -> dict:
    z, context = inputs["z"], inputs["context"]
    gen_hw = (int(_param(case, "height", "Height")), int(_param(case, "width", "Width")))
    assert (z.shape[2] * 8, z.shape[3] * 8) == gen_hw, "latent and generation size disagree"
    sizes = case["reference_pixel_sizes_hw"]
    y = torch.cat([v2_encoders.size_embedding(hw, gen_hw) for hw in sizes])
    t = float(case.get("timestep", 0))
    out = {"size_emb": y}
    out.update({f"hs_bg.{j}": h for j, h in enumerate(nets.bg_encoder(z, context, y, timestep=t))})
    out.update({f"style.{j}": s for j, s in enumerate(nets.style_encoder(z, context, y, timestep=t))})
    return out


def _v15(case, inputs, nets) -> dict:
    thresholds = [float(_param(case, "mask_ts", "Reference mask threshold")),
                  float(_param(case, "mask_ss", "Sketch mask threshold"))]
    return {"thresh_emb": nets.threshold_embedder(thresholds),
            "cluster_out": nets.cluster_transformer(inputs["tokens"])}


def run(case: dict, inputs: dict, case_dir: Path, root: Path) -> dict:
    nets = _networks(str(Path(root) / case["checkpoint"]), case["prediction_type"])
    with torch.no_grad():
        if "sketch" in inputs:
            return _sketch(case, inputs, nets)
        if "z" in inputs:
            return _v2(case, inputs, nets)
        if "tokens" in inputs:
            return _v15(case, inputs, nets)
    raise AssertionError(f"encoder_runner: no encoder for inputs {sorted(inputs)}")
