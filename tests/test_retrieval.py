"""Chapters: ColorFlow's retrieval through the pack's nodes (Reference Pool, Retrieve References) with the golden
set's tiny image encoder: the canvas equals the golden one, the pool is encoded once for any number of pages, and
bad input gets a clear message."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_patches.common import clip_tokens
from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

from chain_support import node
from shared_data import GOLDEN_RAP

RAP = GOLDEN_RAP
CASE = RAP / "rap_p2_512x800_pool3"


@pytest.fixture(scope="module")
def encoder():
    return load_vision_file(str(RAP / "tiny_clip_vision" / "model.safetensors"))


def _case():
    case = json.loads((CASE / "case.json").read_text())
    return case, load_file(str(CASE / "inputs.safetensors")), load_file(str(CASE / "expected.safetensors"))


def _pool_folder(tmp_path, inputs, n):
    folder = tmp_path / "pool"
    folder.mkdir(parents=True, exist_ok=True)
    for r in range(n):
        u8 = (inputs[f"reference.{r}"].double() * 255).round().to(torch.uint8).numpy()
        Image.fromarray(u8).save(folder / f"ref_{r}.png")
    return folder


def test_nodes_give_the_golden_canvas_and_encode_the_pool_once(encoder, tmp_path, monkeypatch):
    case, inputs, expected = _case()
    calls = []
    original = clip_tokens.encode_full
    monkeypatch.setattr(clip_tokens, "encode_full", lambda cv, px: calls.append(px.shape[0]) or original(cv, px))
    folder = _pool_folder(tmp_path, inputs, case["parameters"]["references"])
    (pool,) = node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800", folder=str(folder))
    assert calls == [15]                                   # 3 references x 5 patches, one batch
    page = inputs["query"][None]
    pages = torch.cat([page, page, page])                  # a chapter of three pages
    canvas, mask, reference, matches, preview = node("ColorizeDiffusionRetrieveReferences", pool=pool,
                                                     clip_vision=encoder, page=pages, top_k=3)
    assert calls == [15, 4, 4, 4], "the pool was encoded again for a page"
    u8 = (canvas[0] * 255).round().to(torch.uint8).numpy()
    assert hashlib.sha256(u8.tobytes()).digest() == bytes(expected["canvas.sha256"].tolist())
    m = (mask[0] * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(m, expected["mask.rows_unique"][expected["mask.row_index"]].numpy())
    assert json.loads(matches)[0]["indices"] == expected["topk_indices"].tolist()
    assert reference.shape == (3, 800, 512, 3) and preview.shape == canvas.shape
    assert not torch.equal(preview, canvas)               # the boxes and labels are drawn


def test_bad_pools_and_pages_are_named(encoder, tmp_path):
    case, inputs, _ = _case()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ColorizerInputError, match="the reference pool is empty"):
        node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800", folder=str(empty))
    broken = _pool_folder(tmp_path, inputs, 1)
    data = (broken / "ref_0.png").read_bytes()
    (broken / "ref_0.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ColorizerInputError, match="ref_0.png cannot be read"):
        node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800", folder=str(broken))
    with pytest.raises(ColorizerInputError, match="folder 'nowhere' not found"):
        node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800", folder="nowhere")
    grey = torch.rand(1, 60, 40, 1).expand(1, 60, 40, 3).contiguous()
    (grey_pool,) = node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800", images=grey)
    with pytest.raises(ColorizerInputError, match="every pool picture is grey"):
        node("ColorizeDiffusionRetrieveReferences", pool=grey_pool, clip_vision=encoder,
             page=torch.rand(1, 80, 50, 3), top_k=3)
    (pool,) = node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800",
                   folder=str(_pool_folder(tmp_path / "ok", inputs, 1)))
    with pytest.raises(ColorizerInputError, match="10x10 pixels: too small"):
        node("ColorizeDiffusionRetrieveReferences", pool=pool, clip_vision=encoder, page=torch.rand(1, 10, 10, 3),
             top_k=3)


def test_truncated_pool_picture_is_an_error_even_where_pil_fills_truncated_files(encoder, tmp_path, monkeypatch):
    """Another pack (or ComfyUI's retry) may leave PIL's LOAD_TRUNCATED_IMAGES on, which fills a truncated PNG
    with black: the pool still refuses the file, by name, and leaves the switch as it found it."""
    from PIL import ImageFile

    _, inputs, _ = _case()
    broken = _pool_folder(tmp_path, inputs, 2)
    data = (broken / "ref_1.png").read_bytes()
    (broken / "ref_1.png").write_bytes(data[: len(data) * 2 // 3])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ColorizerInputError, match="ref_1.png cannot be read as a whole picture"):
        node("ColorizeDiffusionReferencePool", clip_vision=encoder, resolution="512x800", folder=str(broken))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_a_changed_pool_folder_is_encoded_again_an_unchanged_one_stays_cached(tmp_path):
    """ComfyUI re-runs a node whose fingerprint changed: the Reference Pool's is its folder's pictures."""
    from colorize_diffusion.nodes.retrieval_nodes import ReferencePoolNode

    _, inputs, _ = _case()
    folder = _pool_folder(tmp_path, inputs, 2)

    def fingerprint():
        return ReferencePoolNode.fingerprint_inputs(clip_vision=None, resolution="512x800", folder=str(folder))
    first = fingerprint()
    assert fingerprint() == first
    (folder / "notes.txt").write_text("not a picture")
    assert fingerprint() == first
    Image.new("RGB", (40, 60), "red").save(folder / "ref_9.png")
    second = fingerprint()
    assert second != first
    (folder / "ref_0.png").write_bytes((folder / "ref_1.png").read_bytes())       # a picture replaced
    assert fingerprint() not in (first, second)


def test_the_retrieved_reference_puts_each_quarters_best_patch_at_its_quarter():
    """Below the node: quarter q (TL, TR, BL, BR) of the W x H reference is the pool patch ranked first for q."""
    from colorize_diffusion.preprocess import retrieval as rap
    from colorize_diffusion.preprocess.retrieval_pages import preview, retrieved_reference

    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250)]
    patches = [np.full((96, 64, 3), c, np.uint8) for c in colours]
    pool = rap.Pool(64, 96, patches, [(0, t) for t in range(5)], torch.zeros(5, 4), [])
    indices = [[4, 0], [2, 1], [0, 3], [1, 2]]
    out = retrieved_reference(pool, indices)
    assert out.shape == (96, 64, 3)
    for q, (y, x) in enumerate([(24, 16), (24, 48), (72, 16), (72, 48)]):
        assert tuple(out[y, x]) == colours[indices[q][0]], q
    canvas = np.full((192, 128, 3), 255, np.uint8)
    boxed = preview(canvas, pool, indices, [[0.9, 0.8]] * 4)
    assert boxed.shape == canvas.shape and (boxed != 255).any() and (canvas == 255).all()   # drawn on a copy
