"""comfy/model_patcher.py of ComfyUI 0.38, the parts that clone and re-target models, on the pinned 0.3.75 patcher.

Each function reproduces the 0.38 method named in its docstring (read in Comfy-Org/ComfyUI, model_patcher.py
@ 08d0e51, samplers.py @ 311c014, sampler_helpers.py @ 5375777); `install()` puts them on `ModelPatcher`.
"""
from __future__ import annotations

import contextlib
import uuid

DEEPCLONE_EVENT = "on_deepclone_multigpu"
MATCH_EVENT = "on_match_multigpu_clones"
MULTIGPU = "multigpu"
NO_DELEGATE = "Cannot create non-dynamic delegate: cached_patcher_init is not initialized."


def deepcopy_list_dict(obj, memo=None):
    """`comfy.utils.deepcopy_list_dict`: copies dicts and lists (memoised), shares every other object."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, dict):
        out = memo[id(obj)] = {}
        out.update({k: deepcopy_list_dict(v, memo) for k, v in obj.items()})
    elif isinstance(obj, list):
        out = memo[id(obj)] = []
        out.extend(deepcopy_list_dict(v, memo) for v in obj)
    else:
        out = obj
    return out


def _init_wrapper(original):
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False, **kwargs):
        """`ModelPatcher.__init__`'s new fields: buffer backups, the reload recipe and the multi-GPU identity."""
        original(self, model, load_device, offload_device, size, weight_inplace_update)
        self.backup_buffers = {}
        self.cached_patcher_init = None
        self.is_multigpu_base_clone = False
        self.clone_base_uuid = uuid.uuid4()
    return __init__


def is_dynamic(self):
    """`ModelPatcher.is_dynamic`: False (`ModelPatcherDynamic` answers True)."""
    return False


def get_clone_model_override(self):
    """`ModelPatcher.get_clone_model_override`: the model and the four backup containers a clone shares."""
    return self.model, (self.backup, self.backup_buffers, self.object_patches_backup, self.pinned)


def clone(self, disable_dynamic=False, model_override=None, force_deepcopy=False):
    """`ModelPatcher.clone(disable_dynamic, model_override, force_deepcopy)`."""
    import comfy.model_patcher
    from comfy.model_patcher import CallbacksMP, create_hook_patches_clone

    class_ = self.__class__
    if self.is_dynamic() and disable_dynamic or force_deepcopy:
        if self.is_dynamic() and disable_dynamic:
            class_ = comfy.model_patcher.ModelPatcher
        if model_override is None:
            if self.cached_patcher_init is None:
                raise RuntimeError(NO_DELEGATE)
            temp = self.cached_patcher_init[0](*self.cached_patcher_init[1], disable_dynamic=True)
            if len(self.cached_patcher_init) > 2:
                temp = temp[self.cached_patcher_init[2]]
            model_override = temp.get_clone_model_override()
    if model_override is None:
        model_override = self.get_clone_model_override()
    n = class_(model_override[0], self.load_device, self.offload_device, self.model_size(),
               weight_inplace_update=self.weight_inplace_update)
    n.patches = {k: v[:] for k, v in self.patches.items()}
    n.patches_uuid = self.patches_uuid
    n.object_patches = self.object_patches.copy()
    n.weight_wrapper_patches = self.weight_wrapper_patches.copy()
    n.model_options = deepcopy_list_dict(self.model_options)
    n.backup, n.backup_buffers, n.object_patches_backup, n.pinned = model_override[1]
    n.parent = self
    n.force_cast_weights = self.force_cast_weights
    n.attachments = {k: a.on_model_patcher_clone() if hasattr(a, "on_model_patcher_clone") else a
                     for k, a in self.attachments.items()}
    n.additional_models = {k: [x.clone() for x in c] for k, c in self.additional_models.items()}
    n.callbacks = {k: {k1: c1.copy() for k1, c1 in c.items()} for k, c in self.callbacks.items()}
    n.wrappers = {k: {k1: w1.copy() for k1, w1 in w.items()} for k, w in self.wrappers.items()}
    n.is_injected, n.skip_injection = self.is_injected, self.skip_injection
    n.injections = {k: i.copy() for k, i in self.injections.items()}
    n.hook_patches = create_hook_patches_clone(self.hook_patches)
    n.hook_patches_backup = (create_hook_patches_clone(self.hook_patches_backup) if self.hook_patches_backup
                             else self.hook_patches_backup)
    n.cached_hook_patches = {g: dict(c) for g, c in self.cached_hook_patches.items()}
    n.hook_backup = self.hook_backup
    n.current_hooks = self.current_hooks.clone() if self.current_hooks else self.current_hooks
    n.forced_hooks = self.forced_hooks.clone() if self.forced_hooks else self.forced_hooks
    n.is_clip, n.hook_mode = self.is_clip, self.hook_mode
    n.cached_patcher_init = self.cached_patcher_init
    n.is_multigpu_base_clone = self.is_multigpu_base_clone
    n.clone_base_uuid = self.clone_base_uuid
    for callback in self.get_all_callbacks(CallbacksMP.ON_CLONE):
        callback(self, n)
    return n


def deepclone_multigpu(self, new_load_device=None, models_cache=None):
    """`ModelPatcher.deepclone_multigpu`: a fresh model from the reload recipe (called without `disable_dynamic`),
    empty backups, the additional models deep-cloned through a cache keyed by `clone_base_uuid`."""
    import comfy.model_management

    if self.cached_patcher_init is None:
        raise RuntimeError(
            f"Cannot create multigpu deepclone of {type(self.model).__name__}: the loader that produced this model "
            "does not support multigpu (cached_patcher_init is not initialized). Use a core loader "
            "(CheckpointLoaderSimple, UNETLoader, CLIPLoader/DualCLIPLoader, VAELoader), or have the custom loader "
            "register a cached_patcher_init factory.")
    comfy.model_management.unload_model_and_clones(self)
    temp = self.cached_patcher_init[0](*self.cached_patcher_init[1])
    if len(self.cached_patcher_init) > 2:
        temp = temp[self.cached_patcher_init[2]]
    n = self.clone(model_override=(temp.model, ({}, {}, {}, set())))
    n.hook_backup = {}
    if new_load_device is not None:
        n.load_device = new_load_device
    n.remove_additional_models(MULTIGPU)
    cache = {} if models_cache is None else models_cache
    for key, models in n.additional_models.items():
        for i, m in enumerate(models):
            if m.clone_base_uuid not in cache:
                cache[m.clone_base_uuid] = m.deepclone_multigpu(new_load_device=new_load_device, models_cache=cache)
            models[i] = cache[m.clone_base_uuid]
    for callback in self.get_all_callbacks(DEEPCLONE_EVENT):
        callback(self, n)
    return n


def match_multigpu_clones(self):
    """`ModelPatcher.match_multigpu_clones`: each per-device clone rebuilt from this patcher (its patches, object
    patches, model options, callbacks) on the clone's own model, then `ON_MATCH_MULTIGPU_CLONES`."""
    matched = []
    for mm in self.get_additional_models_with_key(MULTIGPU):
        n = self.clone(model_override=mm.get_clone_model_override())
        n.load_device = mm.load_device
        n.hook_backup = mm.hook_backup
        n.is_multigpu_base_clone = mm.is_multigpu_base_clone
        n.remove_additional_models(MULTIGPU)
        mine = {m.clone_base_uuid: m for ms in n.additional_models.values() for m in ms}
        theirs = {k: list(v) for k, v in mm.additional_models.items()}
        have = {m.clone_base_uuid for ms in theirs.values() for m in ms}
        for key, models in n.additional_models.items():
            kept = [m for m in theirs.get(key, []) if m.clone_base_uuid in mine]
            kept += [m.deepclone_multigpu(new_load_device=n.load_device) for m in models
                     if m.clone_base_uuid not in have]
            theirs[key] = kept
        n.additional_models = {k: v for k, v in theirs.items() if v}
        for callback in self.get_all_callbacks(MATCH_EVENT):
            callback(self, n)
        matched.append(n)
    if matched:
        self.set_additional_models(MULTIGPU, matched)


def unload_model_and_clones(model, unload_additional_models=True, all_devices=False):
    """`comfy.model_management.unload_model_and_clones`: every loaded model with `model`'s `clone_base_uuid`."""
    import comfy.model_management as mm

    for i in reversed(range(len(mm.current_loaded_models))):
        loaded = mm.current_loaded_models[i]
        if getattr(loaded.model, "clone_base_uuid", None) == model.clone_base_uuid:
            mm.current_loaded_models.pop(i).model_unload(unpatch_weights=True)


def get_non_dynamic_delegate(self):
    """`ModelPatcherDynamic.get_non_dynamic_delegate`: a plain `ModelPatcher` on a model the reload recipe builds
    with `disable_dynamic=True` (once per patcher object; later calls reuse it)."""
    patcher = self.clone(disable_dynamic=True, model_override=self.non_dynamic_delegate_model)
    self.non_dynamic_delegate_model = patcher.get_clone_model_override()
    return patcher


def cond_has_hooks(cond):
    """`comfy.sampler_helpers.cond_has_hooks`."""
    for c in cond:
        options = c[1]
        if "hooks" in options:
            return True
        control = options.get("control")
        if control is not None and control.get_extra_hooks():
            return True
    return False


def inner_set_conds(self, conds):
    """`CFGGuider.inner_set_conds`: a dynamic patcher is swapped for its non-dynamic delegate when a cond carries
    hooks (`self.model_options` stays the dynamic patcher's dict)."""
    import comfy.sampler_helpers

    for k in conds:
        if self.model_patcher.is_dynamic() and cond_has_hooks(conds[k]):
            self.model_patcher = self.model_patcher.get_non_dynamic_delegate()
        self.original_conds[k] = comfy.sampler_helpers.convert_cond(conds[k])


def _prepare_sampling_wrapper(original):
    def _prepare_sampling(model, noise_shape, conds, model_options=None, *args, **kwargs):
        """`sampler_helpers._prepare_sampling` starts with `model.match_multigpu_clones()`."""
        model.match_multigpu_clones()
        return original(model, noise_shape, conds, model_options, *args, **kwargs)
    return _prepare_sampling


@contextlib.contextmanager
def install():
    """The methods above on the pinned host's `ModelPatcher`, `CFGGuider` and `sampler_helpers`."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.patcher_extension
    import comfy.sampler_helpers
    import comfy.samplers

    from . import _patched

    mp = comfy.model_patcher.ModelPatcher
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(mp, __init__=_init_wrapper(mp.__init__), clone=clone, is_dynamic=is_dynamic,
                                     get_clone_model_override=get_clone_model_override,
                                     deepclone_multigpu=deepclone_multigpu,
                                     match_multigpu_clones=match_multigpu_clones))
        stack.enter_context(_patched(comfy.patcher_extension.CallbacksMP, ON_DEEPCLONE_MULTIGPU=DEEPCLONE_EVENT,
                                     ON_MATCH_MULTIGPU_CLONES=MATCH_EVENT))
        stack.enter_context(_patched(comfy.model_management, unload_model_and_clones=unload_model_and_clones))
        stack.enter_context(_patched(comfy.sampler_helpers, cond_has_hooks=cond_has_hooks,
                                     _prepare_sampling=_prepare_sampling_wrapper(
                                         comfy.sampler_helpers._prepare_sampling)))
        stack.enter_context(_patched(comfy.samplers.CFGGuider, inner_set_conds=inner_set_conds))
        yield
