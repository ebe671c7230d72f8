"""ColorizeDiffusion Load Image, the shipped workflows' picture loader: ComfyUI's Load Image for a whole file, an
error naming the file for a damaged one (ComfyUI's own fills a truncated PNG with black)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from chain_support import node
from colorize_diffusion.errors import ColorizerInputError


def test_same_as_comfyui_for_a_whole_file_an_error_for_a_truncated_one(tmp_path, monkeypatch):
    import folder_paths
    import nodes as comfy_nodes
    from PIL import ImageFile

    monkeypatch.setattr(folder_paths, "input_directory", str(tmp_path))
    rgba = np.random.default_rng(0).integers(0, 256, (40, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "whole.png")
    image, mask = node("ColorizeDiffusionLoadImage", image="whole.png")
    want_image, want_mask = comfy_nodes.LoadImage().load_image("whole.png")
    assert torch.equal(image, want_image) and torch.equal(mask, want_mask) and image.shape == (1, 40, 30, 3)

    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cut, _ = comfy_nodes.LoadImage().load_image("cut.png")          # ComfyUI's: a picture, half of it black
    assert cut.shape == (1, 40, 30, 3) and ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ColorizerInputError, match="cut.png cannot be read as a whole picture"):
        node("ColorizeDiffusionLoadImage", image="cut.png")
    from colorize_diffusion.nodes.image_nodes import LoadImageStrict

    assert LoadImageStrict.validate_inputs(image="missing.png") == "Invalid image file: missing.png"
    assert LoadImageStrict.fingerprint_inputs(image="whole.png") != LoadImageStrict.fingerprint_inputs(image="cut.png")
