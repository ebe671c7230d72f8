"""The pack's model folders, registered with ComfyUI in one place (relocatable through extra_model_paths.yaml).

`register()` runs when the nodes are imported.
"""
from __future__ import annotations

import os

from .errors import ColorizerLoadError

CHECKPOINTS = "colorizediffusion"                          # models/colorizediffusion/
PREPROCESSORS = "colorizediffusion_preprocessors"          # models/colorizediffusion/preprocessors/
TAGGERS = "colorizediffusion_tagger"                       # models/colorizediffusion/tagger/ (XL: WD tagger)
COLORFLOW = "colorflow"                                    # models/colorflow/: ColorFlow's sketch/, shading/, GraySD/
DIFFUSERS = "diffusers"                                    # ComfyUI's models/diffusers/ (diffusers-layout bases)
FOLDERS = {CHECKPOINTS: "colorizediffusion", PREPROCESSORS: os.path.join("colorizediffusion", "preprocessors"),
           TAGGERS: os.path.join("colorizediffusion", "tagger"), COLORFLOW: "colorflow"}


def subfolders(key: str, marker) -> list[str]:
    """Folders (relative names, up to two levels deep) under the model folders of `key` for which `marker(path)`
    holds, sorted."""
    import folder_paths

    found = set()
    for root in folder_paths.get_folder_paths(key):
        if not os.path.isdir(root):
            continue
        for first in sorted(os.listdir(root)):
            p1 = os.path.join(root, first)
            if not os.path.isdir(p1):
                continue
            if marker(p1):
                found.add(first)
            for second in sorted(os.listdir(p1)):
                p2 = os.path.join(p1, second)
                if os.path.isdir(p2) and marker(p2):
                    found.add(f"{first}/{second}")
    return sorted(found)


def checkpoint_names() -> list[str]:
    """The checkpoint loader's list: the files of models/colorizediffusion/ less those in the extra-network folders
    inside it (tagger/, preprocessors/, or wherever extra_model_paths.yaml puts them under a checkpoint folder)."""
    import folder_paths

    networks = [os.path.abspath(p) + os.sep for key in (TAGGERS, PREPROCESSORS)
                for p in folder_paths.get_folder_paths(key)]
    names = []
    for name in folder_paths.get_filename_list(CHECKPOINTS):
        path = folder_paths.get_full_path(CHECKPOINTS, name)
        if path is None or not any(os.path.abspath(path).startswith(root) for root in networks):
            names.append(name)
    return names


def subfolder_path(key: str, name: str) -> str | None:
    import folder_paths

    for root in folder_paths.get_folder_paths(key):
        path = os.path.join(root, *name.split("/"))
        if os.path.isdir(path):
            return path
    return None


def file_path(key: str, name: str) -> str:
    """The file `name` of the pack's model folder `key`; a ColorizerLoadError naming the folders searched."""
    import folder_paths

    path = folder_paths.get_full_path(key, name)
    if path is None:
        raise ColorizerLoadError(f"{name} not found in models/{FOLDERS[key].replace(os.sep, '/')} "
                                 f"(searched: {', '.join(folder_paths.get_folder_paths(key))})")
    return path


def register() -> None:
    """Each folder under ComfyUI's models directory, after any the user listed in extra_model_paths.yaml under
    the same key; checkpoint-like extensions unless that file chose otherwise. Idempotent."""
    import folder_paths

    for key, sub in FOLDERS.items():
        if key not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[key] = ([], set(folder_paths.supported_pt_extensions))
        folder_paths.add_model_folder_path(key, os.path.join(folder_paths.models_dir, sub))


EXAMPLE_PICTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_workflows", "input")
"""The pack's own example pictures, read in place by the example-picture nodes (nothing is copied anywhere)."""
