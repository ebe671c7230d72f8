"""Reading a picture file strictly: a damaged or truncated file is an error naming it, never a picture filled in.

PIL completes a truncated file with black when `ImageFile.LOAD_TRUNCATED_IMAGES` is on, a process-wide switch that
ComfyUI turns on for one retry and other node packs leave on for good; the pack's own picture loaders read with it
off.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from .errors import ColorizerInputError

_LOCK = threading.Lock()


def read_rgb(path, what: str = "picture") -> np.ndarray:
    """The picture at `path` as RGB uint8 [H, W, 3]; a ColorizerInputError naming the file when it cannot be read
    whole."""
    from PIL import Image, ImageFile

    name = os.path.basename(os.fspath(path))
    with _LOCK:
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(path) as im:
                im.load()
                return np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - one message naming the file, whatever PIL raised
            raise ColorizerInputError(f"{what}: {name} cannot be read as a whole picture (a damaged or truncated "
                                      f"file? {exc})") from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before
