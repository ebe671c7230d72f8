"""Current ComfyUI (0.38.x) imitated on the pinned 0.3.75 host, for tests that must show the pack works there.

Each piece imitates one host file and function, read from Comfy-Org/ComfyUI (docs/compatibility.md):

* `lazy_linear`: comfy/ops.py, `disable_weight_init.Linear.__init__` with dynamic VRAM on: `weight` and `bias`
  stay None (`comfy_need_lazy_init_bias` remembers the bias) and `_load_from_state_dict` goes to
  `disable_weight_init._lazy_load_from_state_dict`, which assigns whatever tensor it gets, with no shape check.
  Form "meta" imitates the other lazy form of that file's history (`disable_weight_init.Embedding.__init__`): a
  meta-device placeholder of the right shape, loaded by the same function.
* `DynamicPatcher`: comfy/model_patcher.py, `ModelPatcherDynamic` where it walks key paths: `load()` starts with
  `restore_loaded_backups()` (each backup put back by `comfy.utils.set_attr_param` on its key path) and then
  backs up and re-sets the parameters of every module it loads under the key paths `named_modules()` gives for
  the tree as it is then (object patches applied), patched with `calculate_weight` (the `force_load_param`
  branch, which the tiny test models take for every module); `unpatch_model()` reverts the object patches (their
  backups are shared by all clones of a model) and leaves the weights for the next `load()` to restore;
  `partially_load()` (what `load_models_gpu` calls) always reverts, re-applies its own object patches and loads.
  Unlike the real class it keeps this behaviour on a CPU load device.
  main.py makes it `comfy.model_patcher.CoreModelPatcher`; `cached_patcher_init` is every patcher's attribute.
* `deepclone_multigpu`: comfy/model_patcher.py `ModelPatcher.deepclone_multigpu`: a fresh model from
  `cached_patcher_init`, the clone's backups emptied, additional models deep-cloned the same way, then the
  `CallbacksMP.ON_DEEPCLONE_MULTIGPU` callbacks.
* `comfy_attention`: comfy/ldm/modules/attention.py, `CrossAttention.__init__` adds a `ComfyAttention` child
  (`config`/`function` None) and passes it as `preferred_attention`; `wrap_attn` pops that argument and calls
  its `function` when set.
* `clip_preprocess`: comfy/clip_model.py holds `clip_preprocess` (comfy/clip_vision.py keeps an alias).
* `executor`: execution.py `PromptExecutor` reads `cache_args["ram_inactive"]` (main.py `prompt_worker` passes
  "lru", "ram" and "ram_inactive").

`emulate()` switches everything on, as a context manager; with COLORIZEDIFFUSION_HOST=current the whole test
session runs under it (conftest.py), which `make test` does for the in-process suites after the pinned run.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import os

import torch

from . import patchers
from .execution import PromptModelTracker, executor_reads_ram_inactive, ram_release_sizing  # noqa: F401

ENV_VAR = "COLORIZEDIFFUSION_HOST"
Backup = collections.namedtuple("Dimension", ["weight", "inplace_update"])


def session_emulated() -> bool:
    return os.environ.get(ENV_VAR, "") == "current"


# ------------------------------------------------------------------------------------------------ lazy Linear

def _lazy_load(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    assign = local_metadata.get("assign_to_params_buffers", False)
    for k, v in state_dict.items():
        key = k[len(prefix):]
        if key == "weight":
            module.weight = torch.nn.Parameter(v if assign else v.clone(), requires_grad=False)
        elif key == "bias" and v is not None:
            module.bias = torch.nn.Parameter(v if assign else v.clone(), requires_grad=False)
        else:
            unexpected_keys.append(k)
    if module.weight is None:
        module.weight = torch.nn.Parameter(torch.zeros((module.in_features, module.out_features)), requires_grad=False)
        missing_keys.append(prefix + "weight")
    if module.bias is None and getattr(module, "comfy_need_lazy_init_bias", False):
        module.bias = torch.nn.Parameter(torch.zeros((module.out_features,)), requires_grad=False)
        missing_keys.append(prefix + "bias")


def _lazy_init(form: str):
    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        torch.nn.Module.__init__(self)
        self.in_features = in_features
        self.out_features = out_features
        self.weight_comfy_model_dtype = dtype
        self.bias_comfy_model_dtype = dtype
        if form == "meta":
            dt = dtype or torch.get_default_dtype()
            self.weight = torch.nn.Parameter(torch.empty((out_features, in_features), device="meta", dtype=dt),
                                             requires_grad=False)
            self.bias = (torch.nn.Parameter(torch.empty((out_features,), device="meta", dtype=dt),
                                            requires_grad=False) if bias else None)
        else:
            self.weight = None
            self.bias = None
            self.comfy_need_lazy_init_bias = bias
    return __init__


@contextlib.contextmanager
def lazy_linear(form: str = "none"):
    """Layers of `comfy.ops` Linear classes built lazily, weight None ("none") or a meta placeholder ("meta")."""
    import comfy.ops

    cls = comfy.ops.disable_weight_init.Linear
    with _patched(cls, __init__=_lazy_init(form), _load_from_state_dict=_lazy_load):
        yield


def host_layers(kind: str):
    """"eager" (the layers as the host in this session builds them), "lazy" or "lazy-meta"."""
    return {"eager": contextlib.nullcontext(), "lazy": lazy_linear("none"), "lazy-meta": lazy_linear("meta")}[kind]


# ------------------------------------------------------------------------------------------------ patchers

def dynamic_patcher_class():
    import comfy.lora
    import comfy.model_patcher
    import comfy.utils

    class DynamicPatcher(comfy.model_patcher.ModelPatcher):
        non_dynamic_delegate_model = None
        get_non_dynamic_delegate = patchers.get_non_dynamic_delegate

        def is_dynamic(self):
            return True

        def restore_loaded_backups(self):
            for key in list(self.backup):
                comfy.utils.set_attr_param(self.model, key, self.backup.pop(key).weight)

        def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
            self.restore_loaded_backups()
            for n, m in self.model.named_modules():
                for param, weight in list(m.named_parameters(recurse=False)):
                    key = f"{n}.{param}" if n else param
                    self.backup.setdefault(key, Backup(weight, False))
                    new = weight
                    if key in self.patches:
                        new = comfy.lora.calculate_weight(self.patches[key], weight.to(torch.float32, copy=True),
                                                          key).to(weight.dtype)
                    comfy.utils.set_attr_param(self.model, key, new.to(device_to) if device_to else new)
            self.model.device = device_to
            self.model.model_loaded_weight_memory = self.model_size()
            self.model.current_weight_patches_uuid = self.patches_uuid

        def unpatch_model(self, device_to=None, unpatch_weights=True):
            super().unpatch_model(None, unpatch_weights=False)
            if unpatch_weights:
                self.restore_loaded_backups()

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            with self.use_ejected(skip_and_inject_on_exit_only=True):
                self.unpatch_model(self.offload_device, unpatch_weights=False)
                self.patch_model(load_weights=False)
                self.load(device_to)

    return DynamicPatcher


# ------------------------------------------------------------------------------------------------ attention

class ComfyAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = None
        self.function = None


def _preferred_attention_wrapper(attention):
    @functools.wraps(attention)
    def wrapper(*args, **kwargs):
        preferred = kwargs.pop("preferred_attention", None)
        if preferred is not None and preferred.function is not None:
            return preferred.function(*args, **kwargs)
        return attention(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def comfy_attention():
    from comfy.ldm.modules import attention

    original_init = attention.CrossAttention.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.comfy_attention = ComfyAttention()

    with _patched(attention.CrossAttention, __init__=__init__), \
            _patched(attention, optimized_attention=_preferred_attention_wrapper(attention.optimized_attention)):
        yield


# ------------------------------------------------------------------------------------------------ the rest

@contextlib.contextmanager
def emulate(lazy: str = "none", executor: bool = True):
    """Everything above at once (the executor piece only where `executor`: a test server's main.py builds its own
    executor, with its own version's arguments)."""
    import comfy.clip_model
    import comfy.clip_vision
    import comfy.model_patcher
    import comfy.patcher_extension

    with contextlib.ExitStack() as stack:
        stack.enter_context(lazy_linear(lazy))
        stack.enter_context(comfy_attention())
        if executor:
            stack.enter_context(executor_reads_ram_inactive())
        stack.enter_context(_patched(comfy.model_patcher, CoreModelPatcher=dynamic_patcher_class()))
        stack.enter_context(patchers.install())
        stack.enter_context(_patched(comfy.clip_model, clip_preprocess=comfy.clip_vision.clip_preprocess))
        yield


@contextlib.contextmanager
def _patched(target, **attributes):
    missing = object()
    saved = {name: target.__dict__.get(name, missing) if isinstance(target, type) else getattr(target, name, missing)
             for name in attributes}
    for name, value in attributes.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(target, name)
            else:
                setattr(target, name, value)
