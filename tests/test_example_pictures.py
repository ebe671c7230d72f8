"""The pack's example pictures: read in place by the example-picture nodes; importing the pack writes nothing into
ComfyUI's input folder."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_folders import EXAMPLE_PICTURES
from colorize_diffusion.nodes import example_nodes
from conftest import COMFYUI_DIR, PKG_LINK_DIR


def test_importing_the_pack_leaves_the_input_folder_untouched(tmp_path):
    script = (f"import sys; sys.path[:0] = [{str(COMFYUI_DIR)!r}, {str(PKG_LINK_DIR)!r}]\n"
              "from comfy.cli_args import args; args.cpu = True\n"
              "import utils.extra_config, folder_paths\n"
              f"folder_paths.set_input_directory({str(tmp_path / 'input')!r})\n"
              "import colorize_diffusion\n"
              "from colorize_diffusion.nodes import node_classes\n"
              "print(len(node_classes()))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) > 0                                # the pack did load its nodes
    assert not (tmp_path / "input").exists() or not any((tmp_path / "input").iterdir())


def test_an_example_picture_is_read_in_place_like_load_image(tmp_path, monkeypatch):
    rgba = np.zeros((12, 10, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[:4, :, 3] = 0                                                     # the top rows transparent
    (tmp_path / "pages").mkdir()
    Image.fromarray(rgba).save(tmp_path / "drawing.png")
    Image.new("RGB", (8, 6), (0, 0, 255)).save(tmp_path / "pages" / "b.png")
    Image.new("RGB", (6, 8), (0, 255, 0)).save(tmp_path / "pages" / "a.png")
    (tmp_path / "pages" / "notes.txt").write_text("not a picture")
    monkeypatch.setattr(example_nodes, "EXAMPLE_PICTURES", str(tmp_path))
    image, mask = example_nodes.ExamplePicture.execute("drawing.png")
    assert image.shape == (1, 12, 10, 3) and mask.shape == (1, 12, 10)
    assert torch.allclose(image[0, 5, 5], torch.tensor([200 / 255, 0, 0]))
    assert mask[0, :4].eq(1).all() and mask[0, 4:].eq(0).all()
    images, path = example_nodes.ExamplePictureFolder.execute("pages")
    assert path == str(tmp_path / "pages")
    assert [tuple(i.shape) for i in images] == [(1, 8, 6, 3), (1, 6, 8, 3)]          # in name order: a, b
    with pytest.raises(ColorizerInputError, match="not one of the pack's example pictures"):
        example_nodes.ExamplePicture.execute("../secret.png")


def test_the_shipped_example_pictures_are_offered():
    schema = example_nodes.ExamplePicture.GET_SCHEMA()
    offered = schema.inputs[0].options
    assert "colorizediffusion_sketch.png" in offered
    assert all(os.path.isfile(os.path.join(EXAMPLE_PICTURES, *p.split("/"))) for p in offered)
    folders = example_nodes.ExamplePictureFolder.GET_SCHEMA().inputs[0].options
    assert {"colorizediffusion_pool", "colorizediffusion_sketches"} <= set(folders)
