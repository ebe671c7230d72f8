"""ComfyUI 0.38's dynamic VRAM patcher (`comfy.model_patcher.ModelPatcherDynamic`, model_patcher.py @ 08d0e51)
and `comfy.model_management.archive_model_dtypes`, on the pinned 0.3.75 host.

`load()` places weights as the real one does: a `comfy.ops` layer whose state is over 16 KB is staged (its weights
stay on the offload device; each forward casts them through the dtype they are staged in, `<param>_comfy_model_dtype`
or the weight's own, then applies LoRA-style patches on the fly like `LowVramPatch`); smaller `comfy.ops` layers are
force-loaded in their stored dtype with a backup; parameters of other modules go to the device cast to their
recorded dtype; every buffer is backed up (`backup_buffers`) and moved. `comfy_cast_weights` is forced on. The
asserts of the real class are kept (no `full_load`, no `force_patch_weights`, `device_to == load_device`, no
`patch_model(load_weights=True)`). Unlike the real class (`__new__` returns a plain `ModelPatcher` for a CPU load
device) it stays dynamic on CPU, the only device of the test machine; there is no VRAM arena, so staged weights are
cast from the offload device at each forward.
"""
from __future__ import annotations

import collections

import torch

from . import patchers

STAGE_OVER_BYTES = 16 * 1024
Backup = collections.namedtuple("Dimension", ["weight", "inplace_update"])


def archive_model_dtypes(model) -> None:
    """`comfy.model_management.archive_model_dtypes`: each module records the dtype of its present parameters and
    buffers as `<name>_comfy_model_dtype` (what the dynamic patcher stages them in)."""
    for module in model.modules():
        for name, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            setattr(module, f"{name}_comfy_model_dtype", t.dtype)


def staged_dtype(module, name: str, tensor) -> torch.dtype:
    """`ModelPatcherDynamic.load`'s `setup_param`: `getattr(m, p + "_comfy_model_dtype", None) or weight.dtype`."""
    return getattr(module, f"{name}_comfy_model_dtype", None) or tensor.dtype


class _Staged:
    """The staged copy's rounding: the weight as it was cast into the dtype it is staged in."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __call__(self, weight):
        return weight.to(self.dtype).to(weight.dtype)


def dynamic_patcher_class():
    import comfy.model_management
    import comfy.model_patcher
    import comfy.utils
    from comfy.model_patcher import CallbacksMP, LowVramPatch

    class DynamicPatcher(comfy.model_patcher.ModelPatcher):
        non_dynamic_delegate_model = None
        get_non_dynamic_delegate = patchers.get_non_dynamic_delegate

        def is_dynamic(self):
            return True

        def restore_loaded_backups(self):
            """`ModelPatcherDynamic.restore_loaded_backups` (and the staged layers' cast functions dropped, as
            `unpatch_model`'s `move_weight_functions` does)."""
            for key in list(self.backup):
                comfy.utils.set_attr_param(self.model, key, self.backup.pop(key).weight)
            for key in list(self.backup_buffers):
                module, name = _resolve(self.model, key)
                module.register_buffer(name, self.backup_buffers.pop(key),
                                       persistent=name not in module._non_persistent_buffers_set)
            for m in getattr(self.model, "dynamic_staged", ()):
                m.weight_function, m.bias_function = [], []
            self.model.dynamic_staged = []
            previous, self.model.model_loaded_weight_memory = getattr(self.model, "model_loaded_weight_memory", 0), 0
            return previous

        def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False,
                 dirty=False):
            """`ModelPatcherDynamic.load`."""
            assert not force_patch_weights
            assert not full_load
            assert device_to == self.load_device
            self.restore_loaded_backups()
            loaded = 0
            for n, m in self.model.named_modules():
                own = list(m.named_parameters(recurse=False))
                keys = {p: f"{n}.{p}" if n else p for p, _ in own}
                if hasattr(m, "comfy_cast_weights"):
                    m.comfy_cast_weights = True
                    if comfy.model_management.module_size(m) > STAGE_OVER_BYTES:
                        for p in ("weight", "bias"):
                            if getattr(m, p, None) is not None:
                                functions = [_Staged(staged_dtype(m, p, getattr(m, p)))]
                                if keys[p] in self.patches:
                                    functions.append(LowVramPatch(keys[p], self.patches))
                                functions += self.weight_wrapper_patches.get(keys[p], [])
                                setattr(m, f"{p}_function", functions)
                        self.model.dynamic_staged.append(m)
                        own = [(p, w) for p, w in own if p not in ("weight", "bias")]
                    for p, w in own:        # force_load_param: stored dtype, patched in float32
                        loaded += self._force_load(keys[p], w, device_to, w.dtype)
                else:
                    for p, w in own:
                        loaded += self._force_load(keys[p], w, device_to, staged_dtype(m, p, w))
            for key, buf in list(self.model.named_buffers()):
                self.backup_buffers.setdefault(key, buf)
                module, name = _resolve(self.model, key)
                module.register_buffer(name, buf.to(device=device_to, dtype=staged_dtype(module, name, buf)),
                                       persistent=name not in module._non_persistent_buffers_set)
            self.model.device = device_to
            self.model.model_loaded_weight_memory = loaded
            self.model.current_weight_patches_uuid = self.patches_uuid
            for callback in self.get_all_callbacks(CallbacksMP.ON_LOAD):
                callback(self, device_to, lowvram_model_memory, force_patch_weights, full_load)
            self.apply_hooks(self.forced_hooks, force_apply=True)

        def _force_load(self, key, weight, device_to, dtype) -> int:
            import comfy.lora

            self.backup.setdefault(key, Backup(weight, False))
            new = weight
            if key in self.patches:
                new = comfy.lora.calculate_weight(self.patches[key], weight.to(torch.float32, copy=True), key)
            new = new.to(device=device_to, dtype=dtype)
            comfy.utils.set_attr_param(self.model, key, new)
            return new.nelement() * new.element_size()

        def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
            """`ModelPatcherDynamic.patch_model`: weights are only ever loaded through `load_models_gpu`."""
            assert not load_weights
            return super().patch_model(device_to, lowvram_model_memory, load_weights=False,
                                       force_patch_weights=force_patch_weights)

        def unpatch_model(self, device_to=None, unpatch_weights=True):
            super().unpatch_model(None, unpatch_weights=False)
            if unpatch_weights:
                self.restore_loaded_backups()

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            """`ModelPatcherDynamic.partially_load`: revert, re-apply this patcher's object patches, load; None."""
            assert not force_patch_weights
            with self.use_ejected(skip_and_inject_on_exit_only=True):
                current = getattr(self.model, "current_weight_patches_uuid", None)
                dirty = current is not None and current != self.patches_uuid
                self.unpatch_model(self.offload_device, unpatch_weights=False)
                self.patch_model(load_weights=False)
                self.load(device_to, dirty=dirty)

    return DynamicPatcher


def _resolve(model, key: str):
    path, _, name = key.rpartition(".")
    return (model.get_submodule(path) if path else model), name
