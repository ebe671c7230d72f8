"""Chapters: ColorFlow's retrieval of reference patches from a pool, per page (preprocess/retrieval.py), and the
colours put back under the original page (preprocess/composite.py).

Reference Pool encodes the pool's patches once (per pool and page size); Retrieve References gives, per page,
ColorFlow's canvas and inpaint mask, a retrieved reference for ColorizeDiffusion, the matches and a preview;
Colour Under Page combines the generated colours with the page at its own resolution.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..errors import ColorizerInputError
from ..picture_files import read_rgb
from ..model_patches.common import clip_tokens
from ..preprocess import composite, convert
from ..preprocess import retrieval as rap
from .io_types import CATEGORY, ColorizerSketch, ReferencePool

# ColorFlow's three page sizes first; then other sizes (a multiple of 8 on each side: the 2W x 2H canvas fits the
# PixArt patch grid), smaller for quick drafts and CPUs, larger for big pages
RESOLUTIONS = {"640x640": (640, 640), "512x800": (512, 800), "800x512": (800, 512), "256x256": (256, 256),
               "256x400": (256, 400), "400x256": (400, 256), "1024x1024": (1024, 1024), "768x1200": (768, 1200),
               "1200x768": (1200, 768)}


def _u8(image: torch.Tensor) -> list:
    return [np.ascontiguousarray(convert.to_uint8(im)) for im in convert.rgb(convert.check_image(image))]


def _embedder(clip_vision):
    def embed(pixels: torch.Tensor) -> torch.Tensor:
        return clip_tokens.encode_full(clip_vision, pixels)[:, 0]      # the projected CLS token (image_embeds)
    return embed


PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _folder_path(folder: str) -> str:
    import folder_paths

    return folder if os.path.isabs(folder) else os.path.join(folder_paths.get_input_directory(), folder)


def _folder_pictures(path: str) -> list:
    return [n for n in sorted(os.listdir(path)) if os.path.splitext(n)[1].lower() in PICTURE_EXTENSIONS]


def _read_folder(folder: str) -> list:
    path = _folder_path(folder)
    if not os.path.isdir(path):
        raise ColorizerInputError(f"reference pool folder {folder!r} not found (a folder of input/, or a full path)")
    return [read_rgb(os.path.join(path, name), "reference pool") for name in _folder_pictures(path)]


class ReferencePoolNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionReferencePool", display_name="ColorizeDiffusion Reference Pool",
            category=CATEGORY,
            description=("ColorFlow's reference pool: every reference cut into its whole picture and four overlapping "
                         "quarters at the page size, each encoded by the CLIP image encoder once for the whole "
                         "chapter (not once per page). Pictures of any sizes: a folder of input/, or an IMAGE "
                         "batch."),
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="ColorFlow's image_encoder (a CLIP vision tower)"),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="512x800",
                               tooltip="ColorFlow's page size (width x height) for the retrieval"),
                io.String.Input("folder", default="", tooltip="a folder of input/ (or a full path) with the references"),
                io.Image.Input("images", optional=True, tooltip="references as an IMAGE batch (added after the folder)"),
            ],
            outputs=[ReferencePool.Output(display_name="pool")],
        )

    @classmethod
    def fingerprint_inputs(cls, clip_vision=None, resolution="512x800", folder="", images=None):
        """The folder's pictures (names, sizes, times): a picture added to or changed in the pool re-encodes it;
        an unchanged pool stays cached for every page of the chapter."""
        path = _folder_path(folder) if folder.strip() else ""
        if not path or not os.path.isdir(path):
            return folder
        stats = [(n, os.stat(os.path.join(path, n))) for n in _folder_pictures(path)]
        return json.dumps([(n, st.st_size, st.st_mtime_ns) for n, st in stats])

    @classmethod
    def execute(cls, clip_vision, resolution="512x800", folder="", images=None):
        width, height = RESOLUTIONS[resolution]
        pictures = _read_folder(folder) if folder.strip() else []
        if images is not None:
            pictures += _u8(images)
        with torch.no_grad():
            pool = rap.encode_pool(pictures, width, height, _embedder(clip_vision))
        return io.NodeOutput(pool)


def retrieved_reference(pool: rap.Pool, indices) -> np.ndarray:
    """The best match of each quarter placed at its quarter (2x2, each W/2 x H/2): one W x H reference picture
    laid out like the page, for ColorizeDiffusion's Encode Reference."""
    from PIL import Image

    w, h = pool.width, pool.height
    out = Image.new("RGB", (w, h), "white")
    for q in range(4):
        patch = Image.fromarray(pool.patches[int(indices[q][0])]).resize((w // 2, h // 2), Image.BICUBIC)
        out.paste(patch, (w // 2 * (q % 2), h // 2 * (q // 2)))
    return np.asarray(out)


def preview(canvas: np.ndarray, pool: rap.Pool, indices, scores) -> np.ndarray:
    """The canvas with each pasted match boxed and labelled: reference number, patch (full/TL/TR/BL/BR), score."""
    import cv2

    out = np.ascontiguousarray(canvas.copy())
    names = ("full", "TL", "TR", "BL", "BR")
    boxes = rap.paste_boxes(pool.width, pool.height, len(indices[0]))
    for q in range(4):
        for rank, p in enumerate(indices[q]):
            left, top, right, bottom = (int(v) for v in boxes[q][rank])
            r, t = pool.sources[int(p)]
            cv2.rectangle(out, (left, top), (right - 1, bottom - 1), (255, 0, 0), 2)
            label = f"q{q} #{rank} ref{r + 1} {names[t]} {float(scores[q][rank]):.3f}"
            cv2.putText(out, label, (left + 4, top + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 0, 0), 1, cv2.LINE_AA)
    return out


class RetrieveReferences(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionRetrieveReferences", display_name="ColorizeDiffusion Retrieve References",
            category=CATEGORY,
            description=("ColorFlow's retrieval for each page: its four quarters compared with every pool patch "
                         "(cosine of the CLIP image embeddings), the top-k patches per quarter pasted around the page "
                         "on a 2W x 2H canvas (ColorFlow's cond_image and inpaint mask), a retrieved reference for "
                         "ColorizeDiffusion (each quarter's best patch at its quarter), the matches and a preview."),
            inputs=[
                ReferencePool.Input("pool"),
                io.ClipVision.Input("clip_vision", tooltip="the same image encoder as the pool's"),
                io.Image.Input("page", tooltip="the page(s): grey or line art, any size"),
                io.Int.Input("top_k", default=3, min=1, max=rap.MAX_TOP_K, tooltip="patches per quarter (ColorFlow: 3)"),
            ],
            outputs=[io.Image.Output(display_name="canvas"), io.Mask.Output(display_name="mask"),
                     io.Image.Output(display_name="reference"), io.String.Output(display_name="matches"),
                     io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(cls, pool, clip_vision, page, top_k=3):
        pages = _u8(page)
        if any(p.std(axis=2).max() > 0 for p in pages) and not any(
                patch.std(axis=2).max() > 0 for patch in pool.patches):
            raise ColorizerInputError("the pages are in colour but every pool picture is grey: the pool must hold "
                                      "coloured references")
        canvases, masks, refs, previews, matches = [], [], [], [], []
        embed = _embedder(clip_vision)
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
        to_image = lambda arrays: torch.from_numpy(np.stack(arrays)).float() / 255   # noqa: E731
        return io.NodeOutput(to_image(canvases), torch.from_numpy(np.stack(masks)).float() / 255, to_image(refs),
                             json.dumps(matches), to_image(previews))




class ColourUnderPage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionColourUnderPage", display_name="ColorizeDiffusion Colour Under Page",
            category=CATEGORY,
            description=("Puts the colours under the original page at the page's own resolution: the generated "
                         "picture is cut back to the drawing (Prepare Sketch's letterbox undone), resized to the page "
                         "and combined with the page's lines (multiply, or keep the page's luminance), so lettering, "
                         "screentone and fine lines stay as drawn; black stays exactly black. Also the flat colour and "
                         "the lines as RGBA layers for a paint program."),
            inputs=[
                io.Image.Input("colours", tooltip="the decoded picture of this sketch's sampling"),
                io.Image.Input("page", tooltip="the original page, as given to Prepare Sketch (same batch)"),
                ColorizerSketch.Input("sketch", tooltip="Prepare Sketch's colorizer_sketch (its crop box)"),
                io.Combo.Input("mode", options=list(composite.MODES), default="multiply",
                               tooltip="multiply: colour x page; luminance: the page's lightness, the model's hue"),
            ],
            outputs=[io.Image.Output(display_name="page"), io.Image.Output(display_name="colour_layer"),
                     io.Image.Output(display_name="line_layer")],
        )

    @classmethod
    def execute(cls, colours, page, sketch, mode="multiply"):
        colours = convert.rgb(convert.check_image(colours, "colours"))
        pages = convert.rgb(convert.check_image(page, "page"))
        if colours.shape[0] not in (1, pages.shape[0]) and pages.shape[0] != 1:
            raise ColorizerInputError(f"{colours.shape[0]} pictures for {pages.shape[0]} pages: give one, or one per "
                                      "page")
        n = max(colours.shape[0], pages.shape[0])
        outs, flats, lines = [], [], []
        for i in range(n):
            pg = pages[min(i, pages.shape[0] - 1)].float()
            colour = composite.colours_at_page(colours[min(i, colours.shape[0] - 1)], sketch.crop_box,
                                               tuple(pg.shape[:2]))
            outs.append(composite.combine(colour, pg, mode))
            flat, line = composite.layers(colour, pg)
            flats.append(flat)
            lines.append(line)
        return io.NodeOutput(torch.stack(outs), torch.stack(flats), torch.stack(lines))


NODES = [ReferencePoolNode, RetrieveReferences, ColourUnderPage]
