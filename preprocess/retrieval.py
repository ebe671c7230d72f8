"""ColorFlow's Retrieval-Augmented Pipeline (RAP): for a page, the reference patches most like each quarter of it,
composed around the page on a 2W×2H canvas (ColorFlow `colorize_image` up to its diffusion call; golden_rap
README §2–3). Pictures are uint8 HWC numpy arrays; every resize is Pillow's, as the official code does.

1. `fit(picture, W, H)`: whole-picture bicubic resize when the aspect ratio is within 15 % (float64, strict), else a
   centred crop to W:H first (`int()` truncation), then the resize.
2. Query patches: 4 crops of (3W/4, 3H/4), stride (W/4, H/4), TL TR BL BR. Pool: per reference the whole W×H
   picture then its 4 crops: pool index p = 5·r + t.
3. CLIP input of a patch: CLIPImageProcessor defaults done with Pillow — short side to 224 (bicubic, long side
   `int(224·long/short)`), centre crop 224, /255, CLIP mean/std. Embedding = the projected CLS (`image_embeds`).
4. Cosine similarity of every query patch with every pool patch; top-k per quarter (stable order among ties).
5. Canvas: white 2W×2H, the page at (W/2, H/2), match (q, rank) resized to (W/2−2, H/2−2) at its cell + (1, 1); the
   inpaint mask: ColorFlow's 512² mask (white centre square) resized to (2W, 2H).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ColorizerInputError

RATIO_TOLERANCE = 0.15
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_TOP_K = 3
# (row, col) of the 4x4 canvas grid for each query quarter and rank (rank 0 beside it, 1 above/below, 2 corner)
CELLS = {0: [(1, 0), (0, 1), (0, 0)], 1: [(1, 3), (0, 2), (0, 3)], 2: [(2, 0), (3, 1), (3, 0)],
         3: [(2, 3), (3, 2), (3, 3)]}
MIN_SIDE = 16


def _pil(u8: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(u8))


def _bicubic(u8: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(_pil(u8).resize((int(width), int(height)), Image.BICUBIC))


def fit_box(h: int, w: int, width: int, height: int) -> tuple:
    """(left, top, right, bottom) of the input region `fit` resizes, and the branch taken."""
    img_ratio, target = w / h, width / height
    if abs(img_ratio - target) / target < RATIO_TOLERANCE:
        return (0, 0, w, h), "resize"
    if img_ratio > target:
        new_w = int(h * target)
        left = int((w - new_w) / 2)
        return (left, 0, left + new_w, h), "crop_width"
    new_h = int(w / target)
    top = int((h - new_h) / 2)
    return (0, top, w, top + new_h), "crop_height"


def fit(u8: np.ndarray, width: int, height: int) -> tuple:
    """ColorFlow's `process_image`: (W×H picture, input box)."""
    h, w = u8.shape[:2]
    (left, top, right, bottom), _ = fit_box(h, w, width, height)
    return _bicubic(u8[top:bottom, left:right], width, height), (left, top, right, bottom)


def patch_boxes(width: int, height: int) -> list:
    """The 4 overlapping quarter crops (left, top, right, bottom): TL, TR, BL, BR."""
    cw, ch, sx, sy = width // 4 * 3, height // 4 * 3, width // 4, height // 4
    return [(x, y, x + cw, y + ch) for y in (0, sy) for x in (0, sx)]


def crop(u8: np.ndarray, box) -> np.ndarray:
    left, top, right, bottom = box
    return u8[top:bottom, left:right]


def clip_u8(u8: np.ndarray) -> np.ndarray:
    """The CLIPImageProcessor defaults with Pillow: short side 224 (bicubic), centre crop 224×224 (uint8)."""
    h, w = u8.shape[:2]
    if h <= w:
        size = (int(CLIP_SIZE * w / h), CLIP_SIZE)
    else:
        size = (CLIP_SIZE, int(CLIP_SIZE * h / w))
    out = _bicubic(u8, *size)
    top, left = (out.shape[0] - CLIP_SIZE) // 2, (out.shape[1] - CLIP_SIZE) // 2
    return out[top:top + CLIP_SIZE, left:left + CLIP_SIZE]


def pixel_values(u8_batch: list) -> torch.Tensor:
    """[N, 3, 224, 224] float32: (u8/255 − mean)/std of the 224² uint8 CLIP inputs."""
    x = torch.from_numpy(np.stack(u8_batch).astype(np.float64) * (1 / 255)).float().permute(0, 3, 1, 2)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def cosine(query: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """[4, P]: torch's cosine_similarity of every query embedding with every pool embedding."""
    return F.cosine_similarity(query.unsqueeze(1), pool.unsqueeze(0), dim=-1)


def top_k(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """[4, k] pool indices, best first; ties in increasing pool index (a stable sort)."""
    if not 1 <= k <= MAX_TOP_K:
        raise ColorizerInputError(f"top_k must be 1 to {MAX_TOP_K} (ColorFlow's canvas has {MAX_TOP_K} cells per "
                                  f"quarter), got {k}")
    if similarity.shape[1] < k:
        raise ColorizerInputError(f"the reference pool has {similarity.shape[1]} patches, fewer than top_k = {k}")
    return torch.argsort(similarity, dim=1, descending=True, stable=True)[:, :k]


def paste_boxes(width: int, height: int, k: int) -> np.ndarray:
    """[4, k, 4] (left, top, right, bottom) of each pasted match on the canvas."""
    cw, ch = width // 2, height // 2
    return np.array([[(cw * c + 1, ch * r + 1, cw * c + 1 + cw - 2, ch * r + 1 + ch - 2) for r, c in CELLS[q][:k]]
                     for q in range(4)], dtype=np.int64)


def canvas(page: np.ndarray, pool: list, indices, width: int, height: int) -> np.ndarray:
    """ColorFlow's cond_image: white 2W×2H, the page in the centre, the matches around it."""
    from PIL import Image

    out = Image.new("RGB", (2 * width, 2 * height), "white")
    out.paste(_pil(page).resize((width, height)), (width // 2, height // 2))
    for q in range(4):
        for rank, p in enumerate(indices[q]):
            r, c = CELLS[q][rank]
            out.paste(_pil(pool[int(p)]).resize((width // 2 - 2, height // 2 - 2)), (width // 2 * c + 1,
                                                                                       height // 2 * r + 1))
    return np.asarray(out)


def inpaint_mask(width: int, height: int) -> np.ndarray:
    """ColorFlow's assets/mask.png (512² black, white [128,384)²) resized to (2W, 2H) with Pillow's bicubic."""
    base = np.zeros((512, 512, 3), dtype=np.uint8)
    base[128:384, 128:384] = 255
    return _bicubic(base, 2 * width, 2 * height)


@dataclass
class Pool:
    """The patches of a reference pool at one page size, with their embeddings (computed once per pool)."""
    width: int
    height: int
    patches: list                  # 5R uint8 pictures
    sources: list                  # (reference r, patch t)
    embeds: torch.Tensor           # [5R, D]
    boxes: list                    # input boxes of the references


@dataclass
class Retrieval:
    page: np.ndarray
    page_box: tuple
    query_patches: list
    query_embeds: torch.Tensor
    similarity: torch.Tensor
    indices: torch.Tensor
    scores: torch.Tensor
    canvas: np.ndarray
    mask: np.ndarray


def check_picture(u8: np.ndarray, what: str) -> None:
    if u8.ndim != 3 or u8.shape[2] != 3:
        raise ColorizerInputError(f"{what} must be an RGB picture [H, W, 3], got {tuple(u8.shape)}")
    if min(u8.shape[:2]) < MIN_SIDE:
        raise ColorizerInputError(f"{what} is {u8.shape[1]}x{u8.shape[0]} pixels: too small to retrieve references "
                                  f"for (at least {MIN_SIDE} px per side)")


def encode_pool(references: list, width: int, height: int, embed) -> Pool:
    """`embed([N,3,224,224]) -> [N, D]` runs the image encoder; the pool is encoded once."""
    if not references:
        raise ColorizerInputError("the reference pool is empty: give at least one coloured reference")
    patches, sources, boxes = [], [], []
    for r, ref in enumerate(references):
        check_picture(ref, f"reference {r + 1} of the pool")
        full, box = fit(ref, width, height)
        boxes.append(box)
        for t, patch in enumerate([full] + [crop(full, b) for b in patch_boxes(width, height)]):
            patches.append(patch)
            sources.append((r, t))
    embeds = embed(pixel_values([clip_u8(p) for p in patches]))
    return Pool(width, height, patches, sources, embeds, boxes)


def retrieve(page_u8: np.ndarray, pool: Pool, embed, k: int = MAX_TOP_K) -> Retrieval:
    check_picture(page_u8, "the page")
    width, height = pool.width, pool.height
    page, box = fit(page_u8, width, height)
    queries = [crop(page, b) for b in patch_boxes(width, height)]
    q = embed(pixel_values([clip_u8(p) for p in queries]))
    sim = cosine(q.float(), pool.embeds.float())
    idx = top_k(sim, k)
    scores = sim.gather(1, idx)
    return Retrieval(page, box, queries, q, sim, idx, scores, canvas(page, pool.patches, idx.tolist(), width, height),
                     inpaint_mask(width, height))
