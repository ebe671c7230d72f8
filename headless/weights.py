"""Where the headless command finds its weight files, and what it says when one is missing.

Nothing is ever downloaded: a missing file is an error naming the file, the folder(s) searched and where the
file can be downloaded (text only). Call only after :func:`headless.host.setup` (uses ``folder_paths``).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..model_folders import CHECKPOINTS as CHECKPOINT_FOLDER, PREPROCESSORS as PREPROCESSOR_FOLDER
from .workflows import CHECKPOINTS, CLIP_VISION

HF_CHECKPOINTS = "https://huggingface.co/tellurion/ColorizeDiffusion"
OFFICIAL_CHECKPOINTS = ("v2-full.safetensors", "switch-eps.safetensors", "mult-eps-newft.safetensors",
                        "mult-eps-ft.safetensors")


class MissingWeights(RuntimeError):
    """One or more weight files are missing; the message says what to put where."""


def _folders(key: str) -> list[str]:
    import folder_paths
    try:
        return list(folder_paths.get_folder_paths(key))
    except KeyError:
        return []


def _shown(folders: list[str]) -> str:
    return ", ".join(folders) if folders else "(no folder registered)"


_PRIVATE: dict = {}     # key -> the private folder registered first for that key; (key, file) -> name


def _private_folder(key: str) -> Path:
    """A temporary folder of links to the files given by path, first in ComfyUI's list for `key`; removed at
    exit."""
    if key not in _PRIVATE:
        if "root" not in _PRIVATE:
            import atexit
            import shutil
            import tempfile
            _PRIVATE["root"] = Path(tempfile.mkdtemp(prefix="colorizediffusion-weights-"))
            atexit.register(shutil.rmtree, _PRIVATE["root"], True)
        d = _PRIVATE["root"] / key.replace(os.sep, "_")
        d.mkdir()
        _PRIVATE[key] = d
    import folder_paths
    folder_paths.add_model_folder_path(key, str(_PRIVATE[key]), is_default=True)   # (again) first
    return _PRIVATE[key]


def _use_file(key: str, path: Path) -> str:
    """The name under which ComfyUI's loaders find exactly `path` in `key`: a link to it, under its own file
    name (the official prediction rule reads the name), in a private folder searched before the model folders,
    so a same-named file there cannot win. Without links, the file's own folder is put first instead."""
    import folder_paths
    path = path.resolve()
    if (key, path) in _PRIVATE:
        name = _PRIVATE[(key, path)]
        _private_folder(key)
    else:
        folder = _private_folder(key)
        name, n = path.name, 0
        while (folder / name).exists() or (folder / name).is_symlink():   # another file of this name given
            n += 1
            name = f"{n}/{path.name}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            (folder / name).symlink_to(path)
        except OSError:
            try:
                os.link(path, folder / name)
            except OSError:
                folder_paths.add_model_folder_path(key, str(path.parent), is_default=True)
                name = path.name
        _PRIVATE[(key, path)] = name
    found = folder_paths.get_full_path(key, name)
    if found is None or not os.path.samefile(found, path):
        raise MissingWeights(f"{path} could not be made available to ComfyUI as {key}/{name} "
                             f"(found {found or 'nothing'}); copy it into {_first(key)}")
    return name


def resolve(key: str, name: str) -> str:
    """`name` in the model folder `key`, or an existing file path (that exact file is then used, even when a
    file of the same name is in the model folder). Returns the name ComfyUI's loader nodes take. Raises
    MissingWeights."""
    import folder_paths
    p = Path(name).expanduser()
    if (p.is_absolute() or os.sep in name or "/" in name) and p.is_file():
        return _use_file(key, p)
    if folder_paths.get_full_path(key, name) is None:
        raise MissingWeights(_missing_text(key, name))
    return name


def _missing_text(key: str, name: str) -> str:
    where = _shown(_folders(key))
    if key == CHECKPOINT_FOLDER:
        return (f"checkpoint {name} not found in {where}.\n"
                f"  Download the official ColorizeDiffusion checkpoints from Hugging Face {HF_CHECKPOINTS} "
                f"(v2-full.safetensors, switch-eps.safetensors, mult-eps-newft.safetensors, "
                f"mult-eps-ft.safetensors), keep the file names, and put them in {_first(key)} "
                f"(or pass --checkpoint /path/to/file.safetensors).")
    if key == "clip_vision":
        return (f"CLIP vision model {name} not found in {where}.\n"
                f"  ColorizeDiffusion needs the OpenCLIP ViT-H/14 laion2B image encoder, the same "
                f"{CLIP_VISION} ComfyUI uses for IP-Adapter and Wan 2.1 (on Hugging Face e.g. "
                f"Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/clip_vision/{CLIP_VISION}); put it in "
                f"{_first(key)} (or pass --clip-vision /path/to/file).")
    if key == "vae":
        return (f"VAE {name} not found in {where}: put it in {_first(key)} (or pass --vae /path/to/file); the "
                f"official checkpoints contain their VAE, so --vae is only needed for files without one.")
    return f"{name} not found in {where}"


def _first(key: str) -> str:
    f = _folders(key)
    return f[0] if f else f"models/{key}"


def default_checkpoint(family_preference: tuple) -> str:
    """The first official checkpoint present, in the order of `family_preference` (families)."""
    import folder_paths
    by_family = {"v2": ("v2-full.safetensors",), "v1.5": ("switch-eps.safetensors",),
                 "v1": ("mult-eps-newft.safetensors", "mult-eps-ft.safetensors")}
    for fam in family_preference:
        for name in by_family[fam]:
            if folder_paths.get_full_path(CHECKPOINT_FOLDER, name) is not None:
                return name
    wanted = [n for fam in family_preference for n in by_family[fam]]
    raise MissingWeights(
        f"no ColorizeDiffusion checkpoint given and none of the official files ({', '.join(wanted)}) is in "
        f"{_shown(_folders(CHECKPOINT_FOLDER))}.\n  Pass --checkpoint NAME (a file in that folder) or a path, or "
        f"download the checkpoints from Hugging Face {HF_CHECKPOINTS} into {_first(CHECKPOINT_FOLDER)}.")


class _LazyShapes:
    """The keys of a safetensors file with .shape per key, without reading the tensors."""

    class _T:
        def __init__(self, shape):
            self.shape = tuple(shape)

    def __init__(self, path: str):
        from safetensors import safe_open
        self._shapes = {}
        with safe_open(path, framework="pt") as f:
            for k in f.keys():
                self._shapes[k] = f.get_slice(k).get_shape()

    def keys(self):
        return self._shapes.keys()

    def __contains__(self, k):
        return k in self._shapes

    def __getitem__(self, k):
        return self._T(self._shapes[k])

    def items(self):
        return ((k, self._T(v)) for k, v in self._shapes.items())


def inspect_checkpoint(name: str) -> dict:
    """{"family": "v1"|"v1.5"|"v2"|None, "has_vae": bool|None} from the file header (safetensors only)."""
    import folder_paths
    path = folder_paths.get_full_path(CHECKPOINT_FOLDER, name)
    if path is None or not path.lower().endswith((".safetensors", ".sft")):
        return {"family": None, "has_vae": None}
    from ..model_patches.detection import detect_family
    from ..errors import ColorizerLoadError
    try:
        shapes = _LazyShapes(path)
    except Exception as exc:  # noqa: BLE001 - not a readable safetensors file
        raise MissingWeights(f"{path} is not a readable safetensors file ({exc}); re-download it") from exc
    try:
        family = detect_family(shapes)
    except ColorizerLoadError as exc:
        raise MissingWeights(f"{path}: {exc}") from exc
    return {"family": family, "has_vae": any(k.startswith("first_stage_model.") for k in shapes.keys())}


def check_preprocessors(networks: list[str]) -> None:
    """Raise MissingWeights naming every missing preprocessor file (e.g. ['isnet_sketch', 'isnet'])."""
    from ..errors import ColorizerLoadError
    from ..preprocess.weights import find_weight_file
    problems = []
    for net in networks:
        try:
            find_weight_file(net, _folders(PREPROCESSOR_FOLDER))
        except ColorizerLoadError as exc:
            problems.append(str(exc))
    if problems:
        raise MissingWeights("\n".join(problems) + "\n  (or give the masks as pictures: --sketch-mask FILE "
                                                  "--reference-mask FILE)")


__all__ = ["MissingWeights", "resolve", "default_checkpoint", "inspect_checkpoint", "check_preprocessors",
           "CHECKPOINTS", "OFFICIAL_CHECKPOINTS"]
