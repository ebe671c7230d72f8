"""Around ColorFlow's retrieval (retrieval.py): for each page what Retrieve References gives: the canvas and its
inpaint mask, a retrieved reference for ColorizeDiffusion, a preview of the matches and the matches themselves. Pictures are uint8 HWC numpy arrays; pictures out are float [0, 1]."""
from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from ..errors import ColorizerInputError
from . import retrieval as rap

PATCH_NAMES = ("full", "TL", "TR", "BL", "BR")


def retrieved_reference(pool: rap.Pool, indices) -> np.ndarray:
    """The best match of each quarter placed at its quarter (2x2, each W/2 x H/2): one W x H reference picture
    laid out like the page, for ColorizeDiffusion's Encode Reference."""
    w, h = pool.width, pool.height
    out = Image.new("RGB", (w, h), "white")
    for q in range(4):
        patch = Image.fromarray(pool.patches[int(indices[q][0])]).resize((w // 2, h // 2), Image.BICUBIC)
        out.paste(patch, (w // 2 * (q % 2), h // 2 * (q // 2)))
    return np.asarray(out)


def preview(canvas: np.ndarray, pool: rap.Pool, indices, scores) -> np.ndarray:
    """The canvas with each pasted match boxed and labelled: reference number, patch (full/TL/TR/BL/BR), score."""
    out = np.ascontiguousarray(canvas.copy())
    boxes = rap.paste_boxes(pool.width, pool.height, len(indices[0]))
    for q in range(4):
        for rank, p in enumerate(indices[q]):
            left, top, right, bottom = (int(v) for v in boxes[q][rank])
            r, t = pool.sources[int(p)]
            cv2.rectangle(out, (left, top), (right - 1, bottom - 1), (255, 0, 0), 2)
            label = f"q{q} #{rank} ref{r + 1} {PATCH_NAMES[t]} {float(scores[q][rank]):.3f}"
            cv2.putText(out, label, (left + 4, top + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 0, 0), 1, cv2.LINE_AA)
    return out


@dataclass
class PageRetrievals:
    canvases: torch.Tensor         # [B, 2H, 2W, 3] in [0, 1]: ColorFlow's cond_image
    masks: torch.Tensor            # [B, 2H, 2W] in [0, 1]: its inpaint mask
    references: torch.Tensor       # [B, H, W, 3]: each quarter's best patch at its quarter
    previews: torch.Tensor         # [B, 2H, 2W, 3]: the canvas with the matches boxed and labelled
    matches: str                   # JSON: per page the indices, scores and (reference, patch) of each match


def _unit(arrays: list) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).float() / 255


def retrieve_pages(pages: list, pool: rap.Pool, embed, top_k: int) -> PageRetrievals:
    """The retrieval of every page (uint8 RGB) from `pool`; `embed` as for `retrieval.retrieve`."""
    if any(p.std(axis=2).max() > 0 for p in pages) and not any(
            patch.std(axis=2).max() > 0 for patch in pool.patches):
        raise ColorizerInputError("the pages are in colour but every pool picture is grey: the pool must hold "
                                  "coloured references")
    canvases, masks, refs, previews, matches = [], [], [], [], []
    for i, u8 in enumerate(pages):
        with torch.no_grad():
            res = rap.retrieve(u8, pool, embed, int(top_k))
        idx, sc = res.indices.tolist(), res.scores.tolist()
        canvases.append(res.canvas)
        masks.append(res.mask[..., 0])
        refs.append(retrieved_reference(pool, idx))
        previews.append(preview(res.canvas, pool, idx, sc))
        matches.append({"page": i, "indices": idx, "scores": sc,
                        "sources": [[list(pool.sources[p]) for p in row] for row in idx]})
    return PageRetrievals(_unit(canvases), _unit(masks), _unit(refs), _unit(previews), json.dumps(matches))
