"""ColorFlow retrieval cases (a golden root laid out like ../shared/golden_rap: index.json, the case folders, the
tiny image encoder folder): the page and the pool through the pack's retrieval (preprocess/retrieval.py) and the
image encoder loaded by the pack's CLIP vision loader; checked by the rules of the set's README §5 (pictures and
canvas exact by sha256/probes, embeddings and cosine within the case's tolerances, top-k exact up to ties)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch


def _u8(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((x.double() * 255).round().clamp(0, 255).to(torch.uint8).numpy())


def _sha(a: np.ndarray) -> torch.Tensor:
    return torch.frombuffer(bytearray(hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest()), dtype=torch.uint8)


def encoder(case_dir: Path, case: dict):
    from colorize_diffusion.model_patches.common import clip_tokens
    from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

    folder = (Path(case_dir) / case.get("model", "../tiny_clip_vision")).resolve()
    cv = load_vision_file(str(folder / "model.safetensors"))

    def embed(pixels: torch.Tensor) -> torch.Tensor:
        return clip_tokens.encode_full(cv, pixels)[:, 0]          # the projected CLS token = image_embeds
    return embed


def run(case: dict, inputs: dict, case_dir: Path, root: Path) -> dict:
    from colorize_diffusion.preprocess import retrieval as rap

    p = case["parameters"]
    width, height, k = int(p["W"]), int(p["H"]), int(p["top_k"])
    embed = encoder(case_dir, case)
    refs = [_u8(inputs[f"reference.{r}"]) for r in range(int(p["references"]))]
    with torch.no_grad():
        pool = rap.encode_pool(refs, width, height, embed)
        result = rap.retrieve(_u8(inputs["query"]), pool, embed, k)
    got = {"query_image.sha256": _sha(result.page), "query_image.probe": torch.from_numpy(result.page[::16, ::16].copy()),
           "query_input_box": torch.tensor(result.page_box),
           "reference_image.sha256": torch.stack([_sha(pool.patches[5 * r]) for r in range(len(refs))]),
           "reference_image.probe": torch.from_numpy(np.stack([pool.patches[5 * r][::16, ::16] for r in range(len(refs))])),
           "reference_input_box": torch.tensor(pool.boxes),
           "query_patch_box": torch.tensor(rap.patch_boxes(width, height)),
           "query_patch.sha256": torch.stack([_sha(q) for q in result.query_patches]),
           "reference_patch_box": torch.tensor([(0, 0, width, height)] + rap.patch_boxes(width, height)),
           "reference_patch.sha256": torch.stack([_sha(x) for x in pool.patches]),
           "reference_patch_source": torch.tensor(pool.sources)}
    q_u8 = [rap.clip_u8(x) for x in result.query_patches]
    r_u8 = [rap.clip_u8(x) for x in pool.patches]
    got.update({"query_clip_u8.sha256": torch.stack([_sha(x) for x in q_u8]),
                "query_clip_u8.probe": torch.from_numpy(np.stack([x[::8, ::8] for x in q_u8])),
                "reference_clip_u8.sha256": torch.stack([_sha(x) for x in r_u8]),
                "reference_clip_u8.probe": torch.from_numpy(np.stack([x[::8, ::8] for x in r_u8])),
                "query_embeds": result.query_embeds, "reference_embeds": pool.embeds,
                "query_embeds_fp64": result.query_embeds, "reference_embeds_fp64": pool.embeds,
                "cosine_similarity": result.similarity, "cosine_similarity_fp64": result.similarity,
                "topk_indices": result.indices, "topk_values": result.scores,
                "paste_box": torch.from_numpy(rap.paste_boxes(width, height, k)),
                "paste_cell": torch.tensor([rap.CELLS[q][:k] for q in range(4)]),
                "canvas": result.canvas, "mask": result.mask})
    check_layout(case, inputs, result, pool, refs, q_u8)
    return got


def check_layout(case: dict, inputs: dict, result, pool, refs: list, q_u8: list) -> None:
    """The case's record of the app's layout agrees with what the pack's retrieval did: the resolution, the fitted
    region and branch of every picture, the pool, the patch crop and stride, the CLIP input size, the canvas and its
    cells, and top-k against the app's fixed 3 (a variant case replaced that constant)."""
    from colorize_diffusion.preprocess import retrieval as rap

    p = case["parameters"]
    width, height, k = int(p["W"]), int(p["H"]), int(p["top_k"])
    assert p["resolution"] == f"{width}x{height}", p["resolution"]
    assert int(p["pool_size"]) == len(pool.patches) == 5 * len(refs)
    assert bool(p["variant"]) == (k != int(p["official_top_k"])) and int(p["official_top_k"]) == rap.MAX_TOP_K
    left, top, right, bottom = rap.patch_boxes(width, height)[3]
    crop = p["patch_crop"]
    assert (right - left, bottom - top, left, top) == (crop["width"], crop["height"], crop["stride_x"], crop["stride_y"])
    # the CLIP processor's short-side resize of a patch (then the centre crop the pack's clip_u8 returns)
    ph, pw = bottom - top, right - left
    short = rap.CLIP_SIZE
    size = (short, int(short * pw / ph)) if ph <= pw else (int(short * ph / pw), short)
    assert size == (p["clip_resize_of_every_patch"]["height"], p["clip_resize_of_every_patch"]["width"]), size
    assert tuple(q_u8[0].shape[:2]) == (short, short)
    canvas = p["canvas"]
    assert tuple(result.canvas.shape[:2]) == (canvas["height"], canvas["width"])
    box = rap.paste_boxes(width, height, 1)[0, 0]
    row, col = rap.CELLS[0][0]
    assert [box[0] - 1 - canvas["cell"][0] * col, box[1] - 1 - canvas["cell"][1] * row] == [0, 0], canvas["cell"]
    assert [box[2] - box[0], box[3] - box[1]] == list(canvas["pasted_patch_size"])
    pictures = [(case["query"], inputs["query"], result.page_box)]
    pictures += [(r, inputs[f"reference.{i}"], pool.boxes[i]) for i, r in enumerate(case["references"])]
    for record, picture, box in pictures:
        h, w = picture.shape[:2]
        assert list(record["hw"]) == [h, w], record
        assert tuple(record["box"]) == tuple(box) == rap.fit_box(h, w, width, height)[0], record
        assert record["branch"] == rap.fit_box(h, w, width, height)[1], record
        ratio = abs(w / h - width / height) / (width / height)
        assert abs(float(record["ratio_error"]) - ratio) < 1e-12, record


def check(case: dict, got: dict, expected: dict) -> dict:
    """The README's rules; returns {key: error} and raises AssertionError listing every failure."""
    tol = case["tolerance"]
    report, failures = {}, []

    def close(key, rule):
        e, r = expected[key].double(), got[key].double()
        err = (r - e).abs().max().item()
        rms = e.pow(2).mean().sqrt().item()
        report[key] = err / rms if rms else err
        if not err <= rule["rtol_rms"] * rms + rule["atol"]:
            failures.append(f"{key}: max|R-E| {err:.3e} > {rule['rtol_rms']} * rms {rms:.3e}")

    for key in ("query_embeds", "reference_embeds", "query_embeds_fp64", "reference_embeds_fp64"):
        close(key, tol["embeddings"])
    for key in ("cosine_similarity", "cosine_similarity_fp64"):
        close(key, tol["cosine_similarity"])
    exact = [k for k in expected if (k.endswith((".sha256", ".probe")) and "pixel_values" not in k
                                     and not k.startswith(("canvas", "mask")))
             or k.endswith("_box") or k in ("reference_patch_source", "paste_cell")]
    for key in exact:
        report[key] = 0.0
        if not torch.equal(got[key].to(expected[key].dtype), expected[key]):
            failures.append(f"{key}: differs")
    # top-k: exact, except at tied ranks where any pool index of equal (expected) similarity is accepted
    sim = expected["cosine_similarity"]
    ties = {(int(t["query_patch"]), int(r)) for t in case.get("ties_in_topk", []) for r in t["ranks"]}
    want, mine = expected["topk_indices"], got["topk_indices"]
    for q in range(want.shape[0]):
        for r in range(want.shape[1]):
            if int(mine[q, r]) == int(want[q, r]):
                continue
            if (q, r) in ties and torch.equal(sim[q, int(mine[q, r])], expected["topk_values"][q, r]):
                continue
            failures.append(f"topk_indices[{q},{r}] = {int(mine[q, r])}, expected {int(want[q, r])}")
    canvas, mask = got["canvas"], got["mask"]
    report["canvas"] = report["mask"] = 0.0
    if not torch.equal(_sha(canvas), expected["canvas.sha256"]):
        rows = expected["canvas.row_y"].tolist()
        diff = [y for y, row in zip(rows, expected["canvas.rows"]) if not np.array_equal(canvas[y], row.numpy())]
        failures.append(f"canvas differs (e.g. rows {diff[:4]})")
    if not torch.equal(_sha(mask), expected["mask.sha256"]):
        failures.append("mask differs")
    if failures:
        raise AssertionError("; ".join(failures))
    return report
