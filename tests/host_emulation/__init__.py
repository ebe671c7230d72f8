"""Current ComfyUI (0.38.x) imitated on the pinned 0.3.75 host, for tests that must show the pack works there.

Each piece reproduces one host function, read in Comfy-Org/ComfyUI at 0.38.1 (docs/compatibility.md):

* `lazy_linear` (this module): comfy/ops.py `disable_weight_init.Linear.__init__` and `_lazy_load_from_state_dict`
  with dynamic VRAM on: `weight`/`bias` None (`comfy_need_lazy_init_bias`, `<param>_comfy_model_dtype` = the dtype
  argument) until the loader assigns whatever tensor it gets, no shape check; a subclass that overrides
  `_load_from_state_dict` stays eager. Form "meta": a meta-device placeholder of the right shape (the form of
  `disable_weight_init.Embedding`), loaded by the same function.
* `dynamic.py`: `ModelPatcherDynamic` (placement, dtype staging, buffer backups, asserts), made
  `comfy.model_patcher.CoreModelPatcher` as main.py does; `archive_model_dtypes`.
* `patchers.py`: `ModelPatcher.clone(disable_dynamic, model_override, force_deepcopy)`, `deepclone_multigpu`,
  `match_multigpu_clones` (`ON_MATCH_MULTIGPU_CLONES`), `get_non_dynamic_delegate`, `CFGGuider.inner_set_conds`,
  `sampler_helpers._prepare_sampling` (clone matching first).
* `comfy_attention` (this module): attention.py `CrossAttention.__init__` (a `ComfyAttention` first child) and
  `wrap_attn`'s `preferred_attention` (after `optimized_attention_override`).
* `read_only_safetensors` (this module): comfy/utils.py `load_torch_file` → `load_safetensors` under dynamic VRAM:
  read-only tensors over the file's memory map, metadata `{}`.
* `execution.py`: the RAM-pressure cache's sizing probe, `PromptModelTracker`, the executor's cache arguments.
* `clip_vision_model` (this module): `ClipVisionModel` with `CoreModelPatcher` and `load_sd(assign=is_dynamic())`.
* `clip_preprocess`: comfy/clip_model.py holds `clip_preprocess` (comfy/clip_vision.py keeps an alias).

`emulate()` switches them on, as a context manager; `emulate(dynamic_vram=False)` is current ComfyUI started with
dynamic VRAM off (`--disable-dynamic-vram`, or no NVIDIA card): no lazy layers, no dynamic patcher, no read-only
weights, everything else of 0.38. COLORIZEDIFFUSION_HOST=current (dynamic VRAM on) or current-static runs the whole
test session under it (conftest.py, and the test servers through current_host_server.py).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import warnings

import torch

from . import dynamic, patchers
from .execution import PromptModelTracker, executor_reads_ram_inactive, ram_release_sizing  # noqa: F401

ENV_VAR = "COLORIZEDIFFUSION_HOST"
MODES = {"current": True, "current-static": False}     # mode -> dynamic VRAM on


def session_emulated() -> bool:
    return os.environ.get(ENV_VAR, "") in MODES


def session_dynamic_vram() -> bool:
    """Whether this session's host has dynamic VRAM on (current ComfyUI's default)."""
    return MODES.get(os.environ.get(ENV_VAR, ""), False)


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


def _lazy_init(form: str, eager):
    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        if type(self)._load_from_state_dict is not _lazy_load:     # a subclass with its own loader stays eager
            return eager(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
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
    with _patched(cls, __init__=_lazy_init(form, cls.__init__), _load_from_state_dict=_lazy_load):
        yield


def host_layers(kind: str):
    """"eager" (the layers as the host in this session builds them), "lazy" or "lazy-meta"."""
    return {"eager": contextlib.nullcontext(), "lazy": lazy_linear("none"), "lazy-meta": lazy_linear("meta")}[kind]


# ------------------------------------------------------------------------------------------------ attention

class ComfyAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = None
        self.function = None


def _preferred_attention_wrapper(attention):
    """`wrap_attn` of 0.38 (attention.py @ 05080f6): `preferred_attention` is always popped; in the outermost call
    `transformer_options["optimized_attention_override"]` wins (the pinned `wrap_attn` underneath calls it), then
    `preferred_attention.function`, then the attention itself."""
    @functools.wraps(attention)
    def wrapper(*args, **kwargs):
        preferred = kwargs.pop("preferred_attention", None)
        options = kwargs.get("transformer_options") or {}
        if "_inside_attn_wrapper" not in kwargs and "optimized_attention_override" not in options \
                and preferred is not None and preferred.function is not None:
            kwargs["_inside_attn_wrapper"] = True
            return preferred.function(*args, **kwargs)
        return attention(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def comfy_attention():
    from comfy.ldm.modules import attention

    original_init = attention.CrossAttention.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        children = dict(self._modules)
        self._modules.clear()
        self.comfy_attention = ComfyAttention()     # the first child, as 0.38's __init__ makes it
        self._modules.update(children)

    with _patched(attention.CrossAttention, __init__=__init__), \
            _patched(attention, optimized_attention=_preferred_attention_wrapper(attention.optimized_attention),
                     optimized_attention_masked=_preferred_attention_wrapper(attention.optimized_attention_masked)):
        yield


# ------------------------------------------------------------------------------------------------ the rest

@contextlib.contextmanager
def read_only_safetensors():
    """comfy/utils.py `load_torch_file` with dynamic VRAM: `.safetensors` files go through `load_safetensors`, whose
    tensors are read-only views of the file's memory map (writing them in place faults) and whose metadata is `{}`."""
    import mmap

    import comfy.utils
    from safetensors import safe_open

    original = comfy.utils.load_torch_file

    def load_torch_file(ckpt, safe_load=False, device=None, return_metadata=False):
        if not str(ckpt).lower().endswith((".safetensors", ".sft")):
            return original(ckpt, safe_load=safe_load, device=device, return_metadata=return_metadata)
        with open(ckpt, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_size))
            view = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        with safe_open(ckpt, "pt") as probe:
            dtypes = {k: probe.get_slice(k).get_dtype() for k in probe.keys()}
        sd = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                start, end = (8 + header_size + o for o in info["data_offsets"])
                dtype = _SAFETENSORS_DTYPES[dtypes[key]]
                sd[key] = (torch.frombuffer(view[start:end], dtype=dtype).view(info["shape"]) if end > start
                           else torch.empty(info["shape"], dtype=dtype))
        return (sd, header.get("__metadata__", {})) if return_metadata else sd

    with _patched(comfy.utils, load_torch_file=load_torch_file):
        yield


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


@contextlib.contextmanager
def archived_model_dtypes():
    """`comfy.model_management.archive_model_dtypes`, which 0.38's `BaseModel.__init__` runs on its diffusion model."""
    import comfy.model_base
    import comfy.model_management

    original = comfy.model_base.BaseModel.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        dynamic.archive_model_dtypes(self.diffusion_model)

    with _patched(comfy.model_management, archive_model_dtypes=dynamic.archive_model_dtypes), \
            _patched(comfy.model_base.BaseModel, __init__=__init__):
        yield


@contextlib.contextmanager
def clip_vision_model():
    """comfy/clip_vision.py `ClipVisionModel`: its patcher is `CoreModelPatcher` (dynamic with dynamic VRAM on), and
    `load_sd` loads with `assign=self.patcher.is_dynamic()` (the file's tensors as they are)."""
    import comfy.clip_vision
    import comfy.model_patcher

    cls = comfy.clip_vision.ClipVisionModel
    original = cls.__init__

    def __init__(self, json_config, fast_disk=False):
        original(self, json_config)
        p = self.patcher
        self.patcher = comfy.model_patcher.CoreModelPatcher(self.model, load_device=p.load_device,
                                                            offload_device=p.offload_device)

    def load_sd(self, sd):
        return self.model.load_state_dict(sd, strict=False, assign=self.patcher.is_dynamic())

    with _patched(cls, __init__=__init__, load_sd=load_sd):
        yield


@contextlib.contextmanager
def emulate(lazy: str = "none", executor: bool = True, dynamic_vram: bool = True):
    """Everything above at once; without `dynamic_vram`, neither lazy layers nor the dynamic patcher nor read-only
    weights (the executor piece only where `executor`: a test server's main.py builds its own executor, with its
    own version's arguments)."""
    import comfy.clip_model
    import comfy.clip_vision
    import comfy.model_patcher

    with contextlib.ExitStack() as stack:
        if dynamic_vram:
            stack.enter_context(lazy_linear(lazy))
            stack.enter_context(read_only_safetensors())
        core = dynamic.dynamic_patcher_class() if dynamic_vram else comfy.model_patcher.ModelPatcher
        stack.enter_context(_patched(comfy.model_patcher, CoreModelPatcher=core))   # main.py / model_patcher.py
        stack.enter_context(comfy_attention())
        if executor:
            stack.enter_context(executor_reads_ram_inactive())
        stack.enter_context(patchers.install())
        stack.enter_context(archived_model_dtypes())
        stack.enter_context(clip_vision_model())
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
