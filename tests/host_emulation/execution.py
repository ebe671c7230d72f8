"""What ComfyUI 0.38's executor does with node outputs, on the pinned host: the RAM-pressure cache's sizing probe
(the default cache of 0.38's main.py) and the prompt's model tracker, and the cache arguments its executor reads.

Read in Comfy-Org/ComfyUI: comfy_execution/caching.py @ 0c5058b (`RAMPressureCache.ram_release`),
comfy/model_patcher.py @ 08d0e51 (`is_model_patcher_output`, `PromptModelTracker`), execution.py @ 04e2a91.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import torch

DEFAULT_RAM_USAGE = 0.1     # caching.py RAM_CACHE_DEFAULT_RAM_USAGE


def is_model_patcher_output(output) -> bool:
    """`comfy.model_patcher.is_model_patcher_output`: a ModelPatcher, or an object whose `.patcher` is one (an
    AttributeError from the probe reads as "no patcher"; any other exception goes to the caller)."""
    from comfy.model_patcher import ModelPatcher

    return isinstance(output, ModelPatcher) or isinstance(getattr(output, "patcher", None), ModelPatcher)


def ram_release_sizing(outputs, old_generation: bool = True) -> tuple[float, bool]:
    """The per-entry scan of `RAMPressureCache.ram_release`: (RAM use, sizing failed). CPU tensors count by
    storage, an old entry holding a model patcher is evicted first (1e30); an exception anywhere in the scan logs
    "Could not size cache entry" with its traceback and evicts the entry first as well."""
    usage, seen = DEFAULT_RAM_USAGE, set()

    def scan(items):
        nonlocal usage
        for output in items:
            if isinstance(output, Mapping):
                scan(output.values())
            elif isinstance(output, (list, tuple)):
                scan(output)
            elif isinstance(output, torch.Tensor) and output.device.type == "cpu":
                storage = output.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    usage += storage.nbytes()
            elif is_model_patcher_output(output) and old_generation:
                usage = 1e30

    try:
        scan(outputs)
    except Exception:
        logging.warning("Could not size cache entry %s; evicting it first", outputs, exc_info=True)
        return 1e30, True
    return usage, False


class PromptModelTracker:
    """`comfy.model_patcher.PromptModelTracker`: the dynamic patchers a prompt's outputs hold (ModelPatcher outputs
    with their nested models, `.patcher`, `get_models()`), flagged as in use by the prompt. No try: a probe that
    raises anything but AttributeError fails the prompt."""

    def __init__(self):
        self.models = {}

    def add(self, outputs):
        from comfy.model_patcher import ModelPatcher

        outputs = outputs.values() if isinstance(outputs, Mapping) else \
            outputs if isinstance(outputs, (list, tuple)) else (outputs,)
        for output in outputs:
            if isinstance(output, (Mapping, list, tuple)):
                self.add(output)
                continue
            models = []
            if isinstance(output, ModelPatcher):
                models += [output, *output.model_patches_models(), *output.get_nested_additional_models()]
            else:
                patcher = getattr(output, "patcher", None)
                if isinstance(patcher, ModelPatcher):
                    models.append(patcher)
                get_models = getattr(output, "get_models", None)
                if callable(get_models):
                    models.extend(get_models())
            for model in models:
                if isinstance(model, ModelPatcher) and model.is_dynamic():
                    self.models[(id(model.model), model.load_device)] = model


@contextlib.contextmanager
def executor_reads_ram_inactive():
    """execution.py `PromptExecutor.execute_async` reads `cache_args["ram"]` and `cache_args["ram_inactive"]`
    (main.py `prompt_worker` passes "lru", "ram" and "ram_inactive"); here the constructor checks them."""
    import execution

    from . import _patched

    original = execution.PromptExecutor.__init__

    def __init__(self, server, cache_type=False, cache_args=None, *args, **kwargs):
        cache_args["ram"], cache_args["ram_inactive"]   # KeyError, as current ComfyUI raises
        original(self, server, cache_type, cache_args, *args, **kwargs)

    with _patched(execution.PromptExecutor, __init__=__init__):
        yield
