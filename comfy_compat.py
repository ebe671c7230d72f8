"""Every difference between the ComfyUI versions the pack runs on, each in one place.

The pack is tested on the pinned host (ComfyUI 0.3.75) and must work on current ComfyUI (0.38.x). Each
function below covers one host difference and says which ComfyUI brought it. "after 0.3.75" means the
change is absent from 0.3.75 and present in 0.38.1, the newest release read (docs/compatibility.md).
Nothing else in the pack checks a ComfyUI version or probes for one of these attributes.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

PINNED_HOST = "0.3.75"


# --------------------------------------------------------------------------------------------------------------
# Lazy layer weights (after 0.3.75, with dynamic VRAM): comfy/ops.py `disable_weight_init.Linear.__init__` leaves
# `weight` and `bias` as None until `_load_from_state_dict` assigns whatever tensor it is given (no shape check);
# `disable_weight_init.Embedding` keeps a meta-device placeholder of the right shape. A freshly built module's
# `state_dict()` therefore lists no key of a lazy Linear. The expected keys and shapes come from the module's
# structure instead.
# --------------------------------------------------------------------------------------------------------------

def _conv_weight_shape(m: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    if m.transposed:
        return (m.in_channels, m.out_channels // m.groups, *m.kernel_size)
    return (m.out_channels, m.in_channels // m.groups, *m.kernel_size)


def _unbuilt_parameters(m: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameters a host layer will create only when its weights are loaded (name → shape)."""
    if getattr(m, "weight", None) is not None or "weight" in m._parameters:
        return {}
    if isinstance(m, nn.Linear):
        shapes = {"weight": (m.out_features, m.in_features)}
        out = m.out_features
    elif isinstance(m, nn.modules.conv._ConvNd):
        shapes = {"weight": _conv_weight_shape(m)}
        out = m.out_channels
    elif isinstance(m, nn.Embedding):
        return {"weight": (m.num_embeddings, m.embedding_dim)}
    else:
        return {}
    if getattr(m, "comfy_need_lazy_init_bias", False) and getattr(m, "bias", None) is None:
        shapes["bias"] = (out,)
    return shapes


def expected_state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The state-dict keys `module` takes and their shapes, read from its structure: registered parameters and
    persistent buffers (meta placeholders included), plus the parameters of layers the host builds lazily."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path, m in module.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        for name, p in m._parameters.items():
            if p is not None:
                shapes[prefix + name] = tuple(p.shape)
        for name, b in m._buffers.items():
            if b is not None and name not in m._non_persistent_buffers_set:
                shapes[prefix + name] = tuple(b.shape)
        for name, shape in _unbuilt_parameters(m).items():
            shapes[prefix + name] = shape
    return shapes


# --------------------------------------------------------------------------------------------------------------
# Model patcher class (after 0.3.75): with dynamic VRAM, main.py sets `comfy.model_patcher.CoreModelPatcher` to
# `ModelPatcherDynamic` (which itself falls back to `ModelPatcher` for a CPU load device); core loaders build every
# model with `CoreModelPatcher`. 0.3.75 has only `ModelPatcher`.
# --------------------------------------------------------------------------------------------------------------

def model_patcher_class(disable_dynamic: bool = False):
    """The patcher class core models get on this host (`ModelPatcher` when `disable_dynamic`)."""
    import comfy.model_patcher

    if disable_dynamic:
        return comfy.model_patcher.ModelPatcher
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def new_model_patcher(model: nn.Module, load_device, offload_device, *, disable_dynamic: bool = False):
    return model_patcher_class(disable_dynamic)(model, load_device=load_device, offload_device=offload_device)


def unet_patcher(model: nn.Module, *, disable_dynamic: bool = False):
    """`model` under the host's patcher class on the diffusion model's devices (loaded beside the UNet, offloaded
    like it)."""
    import comfy.model_management

    return new_model_patcher(model, comfy.model_management.get_torch_device(),
                             comfy.model_management.unet_offload_device(), disable_dynamic=disable_dynamic)


def reloadable_unet_patcher(build, *args, disable_dynamic: bool = False):
    """`unet_patcher(build(*args))` with a reload recipe that builds it again the same way, so that the host can
    make multi-GPU clones and non-dynamic delegates of it (after 0.3.75; `args` name files, never tensors)."""
    patcher = unet_patcher(build(*args), disable_dynamic=disable_dynamic)
    set_reload_recipe(patcher, reloadable_unet_patcher, (build, *args))
    return patcher


def set_reload_recipe(patcher, function, args: tuple, index: int | None = None) -> None:
    """Multi-GPU clones and non-dynamic delegates (after 0.3.75) rebuild a model from
    `patcher.cached_patcher_init = (function, args[, index])`: `function(*args, disable_dynamic=...)` returns a
    patcher, or a sequence indexed by `index`. 0.3.75 has no such attribute and needs none."""
    if hasattr(patcher, "cached_patcher_init"):
        patcher.cached_patcher_init = (function, args) if index is None else (function, args, index)


def on_model_replaced(patcher, key: str, callback) -> bool:
    """Register `callback(original, clone)` for every clone of `patcher` that gets a model of its own (after
    0.3.75): `ModelPatcher.deepclone_multigpu` (`ON_DEEPCLONE_MULTIGPU`), `match_multigpu_clones`, which rebuilds
    each per-GPU clone from the main patcher's patches on every sampling (`ON_MATCH_MULTIGPU_CLONES`), and
    `clone(model_override=...)` / the non-dynamic delegate of hooked conditioning (`ON_CLONE` with
    `clone.model is not original.model`). False where the host has no multi-GPU clones (0.3.75, whose clones
    always share the model)."""
    import comfy.patcher_extension

    events = comfy.patcher_extension.CallbacksMP
    patcher.add_callback_with_key(events.ON_CLONE, key, functools.partial(_if_model_replaced, callback))
    multigpu = [getattr(events, name, None) for name in ("ON_DEEPCLONE_MULTIGPU", "ON_MATCH_MULTIGPU_CLONES")]
    for event in filter(None, multigpu):
        patcher.add_callback_with_key(event, key, callback)
    return any(multigpu)


def _if_model_replaced(callback, original, clone) -> None:
    if clone.model is not original.model:
        callback(original, clone)


def cast_model(model: nn.Module, dtype) -> None:
    """`model.to(dtype)`, and the dtype the dynamic patcher stages each weight in (after 0.3.75):
    `ModelPatcherDynamic.load` stages a layer's weight in `<param>_comfy_model_dtype` (a lazy Linear records the dtype
    it was built with), not in the weight's present dtype; `comfy.model_management.archive_model_dtypes` records the
    present ones."""
    import comfy.model_management

    model.to(dtype=dtype)
    archive = getattr(comfy.model_management, "archive_model_dtypes", None)
    if archive is not None:
        archive(model)


# --------------------------------------------------------------------------------------------------------------
# Attention (after 0.3.75): `CrossAttention` carries a `comfy_attention` child (`ComfyAttention`, which a
# checkpoint may configure) and passes it to `optimized_attention(..., preferred_attention=...)`, which the
# `wrap_attn` decorator pops and honours. 0.3.75's `wrap_attn` knows no such argument.
# --------------------------------------------------------------------------------------------------------------

def attention_kwargs(attention_module) -> dict:
    """Extra keyword arguments the host's attention entry point expects for `attention_module`."""
    preferred = getattr(attention_module, "comfy_attention", None)
    return {"preferred_attention": preferred} if preferred is not None else {}


# --------------------------------------------------------------------------------------------------------------
# CLIP vision (after 0.3.75): `clip_preprocess` lives in `comfy.clip_model` (`comfy.clip_vision` keeps an alias);
# `ClipVisionModel.encode_image` also returns `image_sizes`, one (H, W) per image.
# --------------------------------------------------------------------------------------------------------------

def clip_preprocess(image, **kwargs):
    try:
        from comfy.clip_model import clip_preprocess as preprocess
    except ImportError:
        from comfy.clip_vision import clip_preprocess as preprocess
    return preprocess(image, **kwargs)


def image_sizes(pixel_values: torch.Tensor) -> list:
    """`encode_image`'s `image_sizes` field for preprocessed pixels [B, C, H, W]."""
    return [pixel_values.shape[1:]] * pixel_values.shape[0]


# --------------------------------------------------------------------------------------------------------------
# Executor (after 0.3.75): `execution.PromptExecutor` reads `cache_args["ram_inactive"]` besides "lru" and "ram".
# --------------------------------------------------------------------------------------------------------------

def executor_cache_args() -> dict:
    """`cache_args` for an in-process `PromptExecutor` that keeps no cache beyond its classic one."""
    return {"lru": 0, "ram": 0, "ram_inactive": 0}
