"""The one path of the pack's extra networks (the WD tagger, the CLIP text tower, the preprocessing networks,
ColorFlow's decolorize networks): each file's module in a ModelPatcher, kept between runs while its files are
unchanged, and put on the compute device by ComfyUI's `load_models_gpu` (which accounts for its memory, casts and
offloads it like its own models).

`patcher_for(kind, files, build)` is the cache (a few networks, least recently used dropped first); `loaded(patcher)`
the network on the device for one run.
"""
from __future__ import annotations

import atexit
import os
from collections import OrderedDict
from typing import Callable

from torch import nn

from ...comfy_compat import new_model_patcher

CACHE_SIZE = 4          # a line extractor, the two ISNets and a tagger or text tower of one workflow
_CACHE: "OrderedDict[tuple, object]" = OrderedDict()
atexit.register(_CACHE.clear)     # patchers released while ComfyUI's modules still exist (their __del__ needs them)


def file_key(path: str) -> tuple:
    """What identifies a file's contents cheaply: its real path, modification time and size (None, None when the
    file is missing: the builder names it)."""
    if not os.path.isfile(path):
        return os.path.abspath(path), None, None
    st = os.stat(path)
    return os.path.realpath(path), st.st_mtime_ns, st.st_size


def patcher_for(kind: str, files, build: Callable[[], nn.Module], *options):
    """The ModelPatcher holding `build()`, the network `kind` read from `files` (a path or several), with
    `options` (e.g. a head count) as part of its identity; built once while the files are unchanged. A failing
    `build` (a missing or wrong file, named by it) caches nothing."""
    import comfy.model_management as mm

    paths = (files,) if isinstance(files, (str, os.PathLike)) else tuple(files)
    key = (kind, *(file_key(os.fspath(p)) for p in paths), *options)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    patcher = new_model_patcher(build(), mm.get_torch_device(), mm.unet_offload_device())
    _CACHE[key] = patcher
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return patcher


def loaded(patcher, *, full: bool = False) -> nn.Module:
    """The network of `patcher`, on ComfyUI's compute device through its model management. `full` loads every
    weight (networks of plain torch layers, which ComfyUI's partial loading would not cast)."""
    import comfy.model_management as mm

    mm.load_models_gpu([patcher], force_full_load=full)
    return patcher.model


def clear() -> None:
    """Forget every cached network (ComfyUI frees them once nothing else holds them)."""
    _CACHE.clear()
