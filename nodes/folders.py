"""Model folders of the pack, registered with ComfyUI (relocatable through extra_model_paths.yaml)."""
from __future__ import annotations

import os

import folder_paths

CHECKPOINTS = "colorizediffusion"


def register(name: str, subdir: str, extensions=None) -> None:
    if name not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[name] = (
            [os.path.join(folder_paths.models_dir, subdir)], set(extensions or folder_paths.supported_pt_extensions))


register(CHECKPOINTS, "colorizediffusion")
