"""ColorizeDiffusion Load Image: ComfyUI's Load Image after a strict read of the file, so that a damaged or truncated
picture stops the run with its name (ComfyUI's own loader fills a truncated PNG with black and goes on)."""
from __future__ import annotations

import hashlib
import os

import folder_paths
from comfy_api.v0_0_2 import io

from ..preprocess.picture_files import read_rgb
from .io_types import CATEGORY


def _input_pictures() -> list:
    root = folder_paths.get_input_directory()
    if not os.path.isdir(root):         # not made yet (ComfyUI's main makes it at start)
        return []
    files = [f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f))]
    return sorted(folder_paths.filter_files_content_types(files, ["image"]))


class LoadImageStrict(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ColorizeDiffusionLoadImage", display_name="ColorizeDiffusion Load Image", category=CATEGORY,
            description=("ComfyUI's Load Image (the same IMAGE and MASK), except that a damaged or truncated picture "
                         "is an error naming the file instead of a picture filled in with black."),
            inputs=[io.Combo.Input("image", options=_input_pictures(), upload=io.UploadType.image,
                                   image_folder=io.FolderType.input)],
            outputs=[io.Image.Output(display_name="IMAGE"), io.Mask.Output(display_name="MASK")],
        )

    @classmethod
    def execute(cls, image):
        import nodes as comfy_nodes     # ComfyUI's own nodes.py: its Load Image gives the tensors

        read_rgb(folder_paths.get_annotated_filepath(image), "Load Image")
        return io.NodeOutput(*comfy_nodes.LoadImage().load_image(image))

    @classmethod
    def fingerprint_inputs(cls, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def validate_inputs(cls, image):
        if not folder_paths.exists_annotated_filepath(image):
            return f"Invalid image file: {image}"
        return True


NODES = [LoadImageStrict]
