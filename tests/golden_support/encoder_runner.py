"""Level-A encoder cases: sketch encoder (input `sketch`), v2 bg/style encoders (input `z`), v1.5 threshold
embedder + ClusterTransformer (input `tokens`). Dispatch is on the input keys, never on the case name."""
from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import torch

from colorize_diffusion.model_patches.networks import sketch_encoder, v15_context, v2_encoders


@functools.lru_cache(maxsize=4)
def _networks(path: str) -> SimpleNamespace:
    """The five extra networks of a checkpoint (absent ones None), as `.colorizer` of the loader will hold them.

    To go through the pack's loader instead: `return load_checkpoint(path).colorizer`.
    """
    from safetensors.torch import load_file

    sd = load_file(path)
    nets = SimpleNamespace(sketch_encoder=None, bg_encoder=None, style_encoder=None,
                           threshold_embedder=None, cluster_transformer=None)
    if any(k.startswith(sketch_encoder.DEFAULT_PREFIX) for k in sd):
        nets.sketch_encoder = sketch_encoder.build_from_state_dict(sd, sketch_encoder.DEFAULT_PREFIX)
    if any(k.startswith(v2_encoders.BG_PREFIX) for k in sd):
        nets.bg_encoder = v2_encoders.build_from_state_dict(sd, v2_encoders.BG_PREFIX)
    if any(k.startswith(v2_encoders.STYLE_PREFIX) for k in sd):
        nets.style_encoder = v2_encoders.build_from_state_dict(sd, v2_encoders.STYLE_PREFIX)
    if any(k.startswith(v15_context.THRESH_PREFIX) for k in sd):
        nets.threshold_embedder = v15_context.build_threshold_embedder(sd, v15_context.THRESH_PREFIX)
    if any(k.startswith(v15_context.CLUSTER_PREFIX) for k in sd):
        nets.cluster_transformer = v15_context.build_cluster_transformer(sd, v15_context.CLUSTER_PREFIX)
    return nets


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
    nets = _networks(str(Path(root) / case["checkpoint"]))
    with torch.no_grad():
        if "sketch" in inputs:
            return _sketch(case, inputs, nets)
        if "z" in inputs:
            return _v2(case, inputs, nets)
        if "tokens" in inputs:
            return _v15(case, inputs, nets)
    raise AssertionError(f"encoder_runner: no encoder for inputs {sorted(inputs)}")
