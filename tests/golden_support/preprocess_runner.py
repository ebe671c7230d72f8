"""Runs a preprocess golden case (format: ../shared/golden/preprocess/README.md) through the pack's own code.

Networks: the shared `fill.py` (loaded from `base/fill.py`) fills the manifest's keys, they are renamed to
the released layout (`file_key` column), written to a temporary file named like the released one and
loaded through the pack's weight loader (`preprocess.weights.load_network`), which picks the network from
that file name. Dispatch is on `case["kind"]` only.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from pathlib import Path

import torch

from colorize_diffusion.preprocess import convert, extractors, isnet, lineart, masks, reference, sketch
from colorize_diffusion.preprocess.weights import NETWORKS, load_network

_NETS: dict = {}


def _fill_module(base: Path):
    spec = importlib.util.spec_from_file_location("golden_preprocess_fill", base / "fill.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _network_for_file(file_name: str) -> str:
    for name, spec in NETWORKS.items():
        if file_name in spec.files:
            return name
    raise AssertionError(f"no pack network accepts a file named {file_name}")


def network(case: dict, base: Path):
    """The case's network, filled and loaded through the pack's loader (cached per file/seed/gain)."""
    w = case["weights"]
    key = (str(base), w["manifest"], w["file"], int(w["fill"]["seed"]), float(w["fill"]["gain"]))
    if key in _NETS:
        return _NETS[key]
    fill = _fill_module(base)
    manifest = base / w["manifest"]
    sd = fill.fill_state_dict(fill.read_manifest(str(manifest)), w["fill"]["seed"], w["fill"]["gain"])
    with open(manifest) as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("file_key")
        file_key = {r[0]: r[col] for r in (line.rstrip("\n").split("\t") for line in f if line.strip())}
    released = {file_key[k]: v for k, v in sd.items()}
    name = _network_for_file(w["file"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, w["file"])
        if path.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(released, path)
        else:
            torch.save(released, path)
        net = load_network(name, path)
    _NETS[key] = (name, net)
    return name, net


def _box(box) -> torch.Tensor:
    return torch.tensor(list(box), dtype=torch.int64)


def _c0(x: torch.Tensor) -> torch.Tensor:
    return x[:, :1].contiguous()


def _isnet_net(case, inputs, base):
    _, net = network(case, base)
    with torch.no_grad():
        return {"net_out": net(inputs["net_input"])}


@contextlib.contextmanager
def _network_io(net):
    """The input and output of every call of `net` while the block runs (a forward hook: the pack's functions
    are called as they are)."""
    calls = []
    hook = net.register_forward_hook(lambda module, args, out: calls.append((args[0], out.float())))
    try:
        yield calls
    finally:
        hook.remove()


def _isnet_sketch_mask(case, inputs, base):
    p = case["params"]
    _, net = network(case, base)
    prepared = sketch.prepare_sketch(inputs["image"], p["height"], p["width"], polarity="invert", monochrome="off")
    with _network_io(net) as calls:
        mask = isnet.sketch_mask(net, -prepared.sketch, p["height"], p["width"])
    return {"original_shape": _box(prepared.crop_box), "net_out": calls[0][1], "mask": mask,
            "proceed_input_c0": _c0(-prepared.sketch), "net_input_s8": calls[0][0][..., ::8, ::8],
            "mask_latent": masks.scaled_resize(mask, 0.125),
            "mask_preview_u8": torch.from_numpy(convert.mask_to_u8(masks.threshold_preview(mask, p["mask_ss"])))}


def _isnet_reference_mask(case, inputs, base):
    p = case["params"]
    _, net = network(case, base)
    ref = convert.to_model(reference.pad_image_with_margin(inputs["image"], p["pad_scale"]))
    with _network_io(net) as calls:
        mask = isnet.reference_mask(net, ref, dilate=True)
    _, (ph, pw, nh, nw) = isnet.reference_canvas(ref)
    p = case["params"]
    assert list(p["reference_size_hw"]) == list(ref.shape[-2:]), (p["reference_size_hw"], ref.shape)
    assert list(p["crop_box"]) == [ph, pw, nh, nw], (p["crop_box"], (ph, pw, nh, nw))     # top, left, h, w
    return {"net_out_crop": calls[0][1][:, :, ph:ph + nh, pw:pw + nw], "proceed_input": ref,
            "net_input_s8": calls[0][0][..., ::8, ::8],
            "mask_nodilate": isnet.reference_mask(net, ref, dilate=False), "mask": mask,
            "bleached_reference": masks.bleach(ref, mask, p["mask_ts"]),
            "mask_preview_u8": torch.from_numpy(convert.mask_to_u8(masks.threshold_preview(mask, p["mask_ts"])))}


def _first_picture(image):
    """The picture the sketch pipeline works on (RGB HWC in [0, 1]); the cases have no alpha."""
    return convert.rgb(convert.check_image(image, "sketch"))[0]


def _extract(case, inputs, base):
    p = case["params"]
    method, net = network(case, base)
    with _network_io(net) as calls:
        prepared = sketch.prepare_sketch(inputs["image"], p["height"], p["width"], polarity="keep", method=method,
                                         net=net)
    img = _first_picture(inputs["image"])
    small = extractors.squash(convert.to_uint8(img), extractors.EXTRACT_SIZE)
    proceed_out, _ = sketch.model_space(img, method, "keep", net=net)
    return {"original_shape": _box(prepared.crop_box), "net_out": calls[0][1],
            "proceed_out_c0": _c0(proceed_out), "sketch_c0": _c0(prepared.sketch),
            "pil512_u8": torch.from_numpy(small.copy()), "net_input": calls[0][0]}


def _lineart_standard(case, inputs, base):
    p = case["params"]
    prepared = sketch.prepare_sketch(inputs["image"], p["height"], p["width"], polarity="keep", method="standard")
    img = _first_picture(inputs["image"])
    stages = lineart.lineart_stages(convert.to_uint8(img))
    model_space, _ = sketch.model_space(img, "standard", "keep")
    return {"original_shape": _box(prepared.crop_box), "blurred": torch.from_numpy(stages.blurred),
            "intensity": torch.from_numpy(stages.intensity), "divisor": torch.tensor([float(stages.divisor)]),
            "lineart_u8": torch.from_numpy(stages.line_u8), "lineart_c0": _c0(model_space),
            "sketch_c0": _c0(prepared.sketch)}


def _sketch_modes(case, inputs, base):
    p = case["params"]
    none = sketch.prepare_sketch(inputs["image"], p["height"], p["width"], polarity="keep", monochrome="off")
    inv = sketch.prepare_sketch(inputs["image"], p["height"], p["width"], polarity="invert", monochrome="off")
    return {"original_shape": _box(inv.crop_box), "sketch_none_c0": _c0(none.sketch),
            "sketch_invert_c0": _c0(inv.sketch)}


def _stand_in(t: torch.Tensor):
    """The case's documented stand-in for BiRefNet: [None, 3 * mean over channels]."""
    return [None, 3 * t.mean(dim=1, keepdim=True)]


def _rmbg_io(case, inputs, base):
    x = convert.to_model(inputs["image"])
    seen = []

    def stand_in(t):
        seen.append(t)
        return _stand_in(t)

    return {"mask": masks.rmbg_proceed(stand_in, x, dilate_mask=True),
            "mask_nodilate": masks.rmbg_proceed(_stand_in, x, dilate_mask=False), "proceed_input": x,
            "net_input_s8": seen[0][..., ::8, ::8]}


def _mask_postprocess(case, inputs, base):
    p = case["params"]
    ts, ss = p["mask_ts"], p["mask_ss"]
    ref = convert.to_model(inputs["reference_image"])
    bg = convert.to_model(inputs["background_image"])
    rmask, bgmask, smask = inputs["rmask"], inputs["bgmask"], inputs["smask"]
    assert list(p["size"]) == list(smask.shape[-2:]) and list(p["ref_size"]) == list(ref.shape[-2:]), p
    out = {
        "rmask_dilated": masks.dilate(rmask),
        "smask_latent": masks.scaled_resize(smask, 0.125),
        "bleached_reference": masks.bleach(ref, rmask, ts),
        "filtered_background": masks.bleach(bg, bgmask, ts),
        "rmbg_result": masks.keep_foreground(inputs["result"], inputs["result_mask"], ts),
    }
    a = reference.gallery(inputs["result"], inputs["sketch"], ref, bg, crop=True, crop_box=p["crop_box"],
                          mask_guided=True, smask=smask, rmask=rmask, mask_ts=ts, mask_ss=ss)
    b = reference.gallery(inputs["result"], inputs["sketch"], ref, bg, crop=False, mask_guided=True,
                          smask=smask, bgmask=bgmask, mask_ts=ts, mask_ss=ss)
    gal = {"galleryA_result_cropped_u8": a["results"][0], "galleryA_sketch_u8": a["sketch"],
           "galleryA_reference_u8": a["reference"], "galleryA_background_u8": a["background"],
           "galleryA_smask_preview_u8": a["smask_preview"], "galleryA_rmask_preview_u8": a["rmask_preview"],
           "galleryA_reference_fg_only_u8": a["reference_fg_only"],
           "galleryA_reference_bg_only_u8": a["reference_bg_only"],
           "galleryB_background_fg_only_u8": b["background_fg_only"],
           "galleryB_background_bg_only_u8": b["background_bg_only"]}
    out.update({k: torch.from_numpy(v.copy()) for k, v in gal.items()})
    out["smask_after_postprocess"] = a["smask_thresholded"]
    return out


def _reference_pad(case, inputs, base):
    padded = reference.pad_image_with_margin(inputs["image"], case["params"]["pad_scale"])
    return {"padded_u8": torch.from_numpy(convert.to_uint8(padded[0])), "reference": convert.to_model(padded)}


KINDS = {
    "isnet_net": _isnet_net,
    "isnet_sketch_mask": _isnet_sketch_mask,
    "isnet_reference_mask": _isnet_reference_mask,
    "extract": _extract,
    "lineart_standard": _lineart_standard,
    "sketch_modes": _sketch_modes,
    "rmbg_io": _rmbg_io,
    "mask_postprocess": _mask_postprocess,
    "reference_pad": _reference_pad,
}


def run(case: dict, inputs: dict, case_dir: Path, base: Path) -> dict:
    p = case["params"]
    if "image_size_hw" in p:
        picture = inputs["image"]
        assert list(p["image_size_hw"]) == list(picture.shape[-3:-1] if picture.shape[-1] in (1, 3, 4)
                                                else picture.shape[-2:]), (p["image_size_hw"], picture.shape)
    weights = case.get("weights")         # None: a case without a network
    if "seed" in p and isinstance(weights, dict):
        assert int(p["seed"]) == int(weights["fill"]["seed"]), "params.seed and the weights' fill seed"
    kind = case["kind"]
    if kind not in KINDS:
        raise AssertionError(f"preprocess case kind {kind!r} has no runner (known: {sorted(KINDS)})")
    return KINDS[kind](case, inputs, Path(base))
