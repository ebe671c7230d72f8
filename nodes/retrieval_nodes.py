"""Chapters: ColorFlow's retrieval of reference patches from a pool, per page (preprocess/retrieval.py), and the
colours put back under the original page (preprocess/composite.py).

Reference Pool encodes the pool's patches once (per pool and page size); Retrieve References gives, per page,
ColorFlow's canvas and inpaint mask, a retrieved reference for ColorizeDiffusion, the matches and a preview;
Colour Under Page combines the generated colours with the page at its own resolution.
"""
from __future__ import annotations

import os

import numpy as np
import torch

import folder_paths
from comfy_api.v0_0_2 import io

from ..errors import ColorizerInputError
from ..model_folders import EXAMPLE_PICTURES
from ..model_patches.common import clip_tokens
from ..preprocess import composite, convert
from ..preprocess import retrieval as rap
from ..preprocess import picture_files, retrieval_pages
from .io_types import CATEGORY, ColorizerSketch, ReferencePool

# ColorFlow's three page sizes first; then other sizes (a multiple of 8 on each side: the 2W x 2H canvas fits the
# PixArt patch grid), smaller for quick drafts and CPUs, larger for big pages
RESOLUTIONS = {"640x640": (640, 640), "512x800": (512, 800), "800x512": (800, 512), "256x256": (256, 256),
               "256x400": (256, 400), "400x256": (400, 256), "1024x1024": (1024, 1024), "768x1200": (768, 1200),
               "1200x768": (1200, 768)}


def _u8(image: torch.Tensor) -> list:
    return [np.ascontiguousarray(convert.to_uint8(im)) for im in convert.rgb(convert.check_image(image))]


def _folder_path(folder: str) -> str:
    """A full path; else a folder of input/; else one of the pack's example folders (the shipped chapter workflows'
    pool, read in place)."""
    if os.path.isabs(folder):
        return folder
    path = os.path.join(folder_paths.get_input_directory(), folder)
    example = os.path.join(EXAMPLE_PICTURES, folder)
    return example if not os.path.isdir(path) and os.path.isdir(example) else path


class ReferencePoolNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionReferencePool", display_name="ColorizeDiffusion Reference Pool",
            category=CATEGORY,
            description=("ColorFlow's reference pool: every reference cut into its whole picture and four overlapping "
                         "quarters at the page size, each encoded by the CLIP image encoder once for the whole "
                         "chapter (not once per page). Pictures of any sizes: a folder of input/, one of the pack's "
                         "example folders or a full path (such as Example Picture Folder's), or an IMAGE batch."),
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="ColorFlow's image_encoder (a CLIP vision tower)"),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="512x800",
                               tooltip="ColorFlow's page size (width x height) for the retrieval"),
                io.String.Input("folder", default="", tooltip=("a folder of input/ (or a full path, or one of the "
                                                                "pack's example folders) with the references")),
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
        return picture_files.folder_fingerprint(path)

    @classmethod
    def execute(cls, clip_vision, resolution="512x800", folder="", images=None):
        width, height = RESOLUTIONS[resolution]
        pictures = picture_files.read_folder_u8(_folder_path(folder), folder) if folder.strip() else []
        if images is not None:
            pictures += _u8(images)
        with torch.no_grad():
            pool = rap.encode_pool(pictures, width, height, clip_tokens.image_embedder(clip_vision))
        return io.NodeOutput(pool)


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
        res = retrieval_pages.retrieve_pages(_u8(page), pool, clip_tokens.image_embedder(clip_vision), int(top_k))
        return io.NodeOutput(res.canvases, res.masks, res.references, res.matches, res.previews)


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
