"""Pictures read from files: a folder's picture files, a cheap fingerprint of them, and their contents (uint8 RGB
for the retrieval's pool, IMAGE and MASK for the example-picture nodes).

Every read is strict: a damaged or truncated file is an error naming it, never a picture filled in. PIL completes a
truncated file with black when `ImageFile.LOAD_TRUNCATED_IMAGES` is on, a process-wide switch that ComfyUI turns on
for one retry and other node packs leave on for good; the pack reads with it off."""
from __future__ import annotations

import json
import os
import threading

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from ..errors import ColorizerInputError

PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_STRICT = threading.Lock()     # the truncated-file switch is process-wide


def picture_names(path: str) -> list[str]:
    """The picture files of the folder `path`, sorted by name."""
    return [n for n in sorted(os.listdir(path)) if os.path.splitext(n)[1].lower() in PICTURE_EXTENSIONS]


def pictures_under(root: str) -> list[str]:
    """Every picture file under `root`, as '/'-separated paths relative to it, sorted."""
    found = []
    for dirpath, _, _ in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        found += [n if rel == "." else f"{rel.replace(os.sep, '/')}/{n}" for n in picture_names(dirpath)]
    return sorted(found)


def folders_under(root: str) -> list[str]:
    """Every folder under `root` that holds pictures, as '/'-separated paths relative to it, sorted."""
    return sorted(os.path.relpath(d, root).replace(os.sep, "/") for d, _, _ in os.walk(root)
                  if d != root and picture_names(d))


def folder_fingerprint(path: str) -> str:
    """The names, sizes and modification times of the folder's pictures: changes when a picture is added or
    changed."""
    stats = [(n, os.stat(os.path.join(path, n))) for n in picture_names(path)]
    return json.dumps([(n, st.st_size, st.st_mtime_ns) for n, st in stats])


def _open(path: str, what: str) -> Image.Image:
    with _STRICT:
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(path) as im:
                im.load()
                return im.copy()
        except Exception as exc:  # noqa: BLE001 - one message naming the file, whatever PIL raised
            raise ColorizerInputError(f"{what}: {os.path.basename(os.fspath(path))} cannot be read as a whole "
                                      f"picture (a damaged or truncated file? {exc})") from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before


def read_rgb(path, what: str = "picture") -> np.ndarray:
    """The picture at `path` as RGB uint8 [H, W, 3], read strictly (`what` names it in errors)."""
    return np.asarray(_open(path, what).convert("RGB"))


def read_folder_u8(path: str, shown: str) -> list[np.ndarray]:
    """Every picture of the folder `path` (named `shown` in errors) as uint8 RGB."""
    if not os.path.isdir(path):
        raise ColorizerInputError(f"reference pool folder {shown!r} not found (a folder of input/, or a full path)")
    return [read_rgb(os.path.join(path, n), "reference pool") for n in picture_names(path)]


def read_image(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The picture `path` as Load Image gives it: IMAGE [1, H, W, 3] in [0, 1] and MASK [1, H, W] (1 where the
    picture is transparent, 0 without an alpha channel)."""
    im = ImageOps.exif_transpose(_open(path, "picture"))          # as Load Image turns it
    rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255)
    if "A" in im.getbands():
        mask = 1 - torch.from_numpy(np.asarray(im.getchannel("A"), dtype=np.float32) / 255)
    else:
        mask = torch.zeros(rgb.shape[:2])
    return rgb[None], mask[None]
