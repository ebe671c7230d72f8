"""What made a result. Each result PNG carries a record in a text chunk (`colorize-client`, readable with any PNG
tool): the workflow's name, the API prompt the client sent with every picture named by its content and the output
prefix left out (so every setting that changes pixels: workflow, seed, steps, size, strengths, model files,
reference, pool), and the digest of the sketch's content. A re-run counts a result as done only when both match;
results made otherwise are refused before any job, naming the difference, unless --overwrite."""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

from .server import pool_folder, upload_name
from .workflow import fill

KEY = b"colorize-client"
SKETCH = "<the sketch>"
PNG = b"\x89PNG\r\n\x1a\n"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings(workflow: str, prompt: dict, pictures: dict, models: dict, values: dict, pool: list) -> dict:
    """The record's part shared by every sketch of a run."""
    images = {"Sketch": SKETCH, **{t: upload_name(p.read_bytes(), p.suffix) for t, p in pictures.items()}}
    sent = fill(prompt, images=images, models=models, settings=values, prefix="", pool=pool_folder(pool))
    for node in sent.values():
        if node["class_type"] == "SaveImage":
            node["inputs"].pop("filename_prefix", None)
    untitled = {k: {"class_type": n["class_type"], "inputs": n["inputs"]} for k, n in sent.items()}
    return {"workflow": workflow, "settings": _digest(untitled), "prompt": sent}


def record(shared: dict, sketch: Path) -> dict:
    return {**shared, "sketch": file_digest(sketch)}


# ---------------------------------------------------------------------------------------------------- PNG chunk
def embed(png: bytes, rec: dict) -> bytes:
    """`png` with the record as a tEXt chunk right after IHDR. ValueError if `png` is no PNG."""
    if not png.startswith(PNG) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG picture")
    end = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    body = KEY + b"\0" + json.dumps(rec, sort_keys=True).encode("ascii")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:end] + chunk + png[end:]


def read(path: Path) -> dict | None:
    """The record of a result; None when it has none (made by hand or by an earlier client)."""
    data = path.read_bytes()
    pos = 8 if data.startswith(PNG) else len(data)
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"tEXt" and data[pos + 8:pos + 8 + n].startswith(KEY + b"\0"):
            try:
                return json.loads(data[pos + 8 + len(KEY) + 1:pos + 8 + n])
            except ValueError:
                return None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + n
    return None


# ---------------------------------------------------------------------------------------------------- comparing
def verdict(path: Path, rec: dict) -> str:
    """same | settings (other settings) | sketch (another sketch content) | unknown (no record)."""
    old = read(path)
    if not old or "settings" not in old:
        return "unknown"
    if old["settings"] != rec["settings"]:
        return "settings"
    return "same" if old.get("sketch") == rec["sketch"] else "sketch"


def differences(path: Path, rec: dict, most: int = 3) -> str:
    """What differs between the settings of a result and `rec`, in the user's terms."""
    old = read(path) or {}
    if old.get("workflow") != rec["workflow"]:
        return f"workflow was {old.get('workflow')}, now {rec['workflow']}"
    a, b = old.get("prompt") or {}, rec["prompt"]
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: (len(k), k)):
        na, nb = a.get(key), b.get(key)
        title = (nb or na).get("_meta", {}).get("title") or (nb or na)["class_type"]
        if na is None or nb is None or na["class_type"] != nb["class_type"]:
            out.append(f"node {title} {'added' if na is None else 'removed' if nb is None else 'replaced'}")
            continue
        for name in sorted(set(na["inputs"]) | set(nb["inputs"])):
            va, vb = na["inputs"].get(name), nb["inputs"].get(name)
            if va == vb:
                continue
            if name in ("image", "folder"):
                out.append(f"another {title.lower()} picture" if name == "image" else "another pool")
            else:
                out.append(f"{title} {name} was {va}, now {vb}")
    shown = ", ".join(out[:most]) or "the workflow's nodes"
    return shown + (f" and {len(out) - most} more" if len(out) > most else "")
