"""The pack's own example pictures (example_workflows/input/), read where the pack is installed: the shipped
workflows load them with these nodes, so importing the pack writes nothing into ComfyUI's input/ folder."""
from __future__ import annotations

import os

import comfy.model_management as mm
from comfy_api.v0_0_2 import io

from ..errors import ColorizerInputError
from ..model_folders import EXAMPLE_PICTURES
from ..preprocess import picture_files
from .io_types import CATEGORY


def _path(rel: str, options: list, what: str) -> str:
    if rel not in options:
        raise ColorizerInputError(f"{rel!r} is not one of the pack's example {what} ({', '.join(options) or 'none'})")
    return os.path.join(EXAMPLE_PICTURES, *rel.split("/"))


class ExamplePicture(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionExamplePicture", display_name="ColorizeDiffusion Example Picture",
            category=CATEGORY,
            description=("One of the pack's example pictures (a sketch, a reference, a background), read from the "
                         "pack's example_workflows/input/ folder, as Load Image gives a picture: the shipped workflows "
                         "start from it. Replace it with Load Image for your own pictures."),
            inputs=[io.Combo.Input("picture", options=picture_files.pictures_under(EXAMPLE_PICTURES))],
            outputs=[io.Image.Output(display_name="image"),
                     io.Mask.Output(display_name="mask", tooltip="1 where the picture is transparent")],
        )

    @classmethod
    def execute(cls, picture):
        image, mask = picture_files.read_image(
            _path(picture, picture_files.pictures_under(EXAMPLE_PICTURES), "pictures"))
        return io.NodeOutput(image.to(mm.intermediate_device()), mask.to(mm.intermediate_device()))


class ExamplePictureFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionExamplePictureFolder", display_name="ColorizeDiffusion Example Picture Folder",
            category=CATEGORY,
            description=("One of the pack's example picture folders (a chapter's pages, a reference pool), read from "
                         "the pack's example_workflows/input/ folder: its pictures one by one (as Load Image Dataset "
                         "from Folder gives them) and its full path (for Reference Pool's folder)."),
            inputs=[io.Combo.Input("folder", options=picture_files.folders_under(EXAMPLE_PICTURES))],
            outputs=[io.Image.Output(display_name="images", is_output_list=True,
                                     tooltip="each picture of the folder, in name order"),
                     io.String.Output(display_name="path", tooltip="the folder's full path")],
        )

    @classmethod
    def execute(cls, folder):
        path = _path(folder, picture_files.folders_under(EXAMPLE_PICTURES), "folders")
        images = [picture_files.read_image(os.path.join(path, n))[0].to(mm.intermediate_device())
                  for n in picture_files.picture_names(path)]
        return io.NodeOutput(images, path)


NODES = [ExamplePicture, ExamplePictureFolder]
