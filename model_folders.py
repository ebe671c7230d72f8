"""The pack's model folders, registered with ComfyUI in one place (relocatable through extra_model_paths.yaml).

`register()` runs when the nodes are imported and when the headless command prepares the host before that.
"""
from __future__ import annotations

import os

CHECKPOINTS = "colorizediffusion"                          # models/colorizediffusion/
PREPROCESSORS = "colorizediffusion_preprocessors"          # models/colorizediffusion/preprocessors/
FOLDERS = {CHECKPOINTS: "colorizediffusion", PREPROCESSORS: os.path.join("colorizediffusion", "preprocessors")}


def register() -> None:
    """Each folder under ComfyUI's models directory, after any the user listed in extra_model_paths.yaml under
    the same key; checkpoint-like extensions unless that file chose otherwise. Idempotent."""
    import folder_paths

    for key, sub in FOLDERS.items():
        if key not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[key] = ([], set(folder_paths.supported_pt_extensions))
        folder_paths.add_model_folder_path(key, os.path.join(folder_paths.models_dir, sub))
