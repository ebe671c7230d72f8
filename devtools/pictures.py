"""The pictures of a workflow's Inputs group: the pack's own example pictures (example_workflows/input/), read in place
by the Example Picture nodes, so that a shipped workflow runs without anything copied into ComfyUI's input/; any other
picture from ComfyUI's input/ through the pack's Load Image (a damaged file is an error naming it)."""
from __future__ import annotations

import os

EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows", "input")
EXAMPLE_PICTURE = "ColorizeDiffusionExamplePicture"
EXAMPLE_FOLDER = "ColorizeDiffusionExamplePictureFolder"
IMAGE_LOADER = "ColorizeDiffusionLoadImage"
FOLDER_LOADER = "LoadImageDataSetFromFolder"


def picture_node(g, name: str, title: str, color: str) -> int:
    """A picture (IMAGE, MASK) added to graph `g` in the Inputs column: one of the pack's examples in place, else a
    file of input/."""
    if os.path.isfile(os.path.join(EXAMPLE_DIR, name)):
        return g.add(EXAMPLE_PICTURE, 0, {"picture": name}, title=title, color=color)
    return g.add(IMAGE_LOADER, 0, {"image": name}, title=title, color=color)


def folder_node(g, name: str, title: str, color: str) -> int:
    """A folder of pictures (a list of IMAGE) added to graph `g`: one of the pack's example folders in place, else a
    folder of input/."""
    if os.path.isdir(os.path.join(EXAMPLE_DIR, name)):
        return g.add(EXAMPLE_FOLDER, 0, {"folder": name}, title=title, color=color)
    return g.add(FOLDER_LOADER, 0, {"folder": name}, title=title, color=color)
