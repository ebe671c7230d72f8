"""Checking a picture before upload: a damaged file (a truncated PNG the server would fill with black) fails its own
job with a message naming it. Pillow when it is there; otherwise a check of the PNG/JPEG structure."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class PictureError(Exception):
    pass


def check(path: Path) -> None:
    if not path.is_file():
        raise PictureError(f"{path}: a folder, not a picture" if path.is_dir() else f"{path}: no such file")
    try:
        from PIL import Image
    except ImportError:
        return _check_without_pillow(path)
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a damaged picture
        raise PictureError(f"{path.name} cannot be read as a picture ({str(exc).splitlines()[0] or type(exc).__name__}):"
                           " a damaged or truncated file?") from None


def _check_without_pillow(path: Path) -> None:
    data = path.read_bytes()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        pos, idat, ended = 8, b"", False
        while pos + 8 <= len(data):
            n, kind = struct.unpack(">I4s", data[pos:pos + 8])
            chunk = data[pos + 8:pos + 8 + n]
            crc = data[pos + 8 + n:pos + 12 + n]
            if len(chunk) < n or len(crc) < 4 or zlib.crc32(kind + chunk) != struct.unpack(">I", crc)[0]:
                break
            if kind == b"IDAT":
                idat += chunk
            if kind == b"IEND":
                ended = True
                break
            pos += 12 + n
        try:
            zlib.decompress(idat)
        except zlib.error:
            ended = False
        if not ended:
            raise PictureError(f"{path.name} is a damaged or truncated PNG")
    elif data.startswith(b"\xff\xd8"):
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise PictureError(f"{path.name} is a damaged or truncated JPEG")
    elif not data:
        raise PictureError(f"{path.name} is empty")


def sketches_of(path: Path) -> list:
    """A picture, or every picture of a folder (sorted, not recursive)."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not found:
            raise PictureError(f"{path} holds no pictures ({', '.join(EXTENSIONS)})")
        return found
    if not path.exists():
        raise PictureError(f"{path}: no such file or folder")
    return [path]
