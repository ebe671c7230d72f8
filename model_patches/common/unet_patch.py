"""UNet patch helpers both products use, on ComfyUI's ModelPatcher (patches on a clone, never on the given MODEL):

* `HeadAfter`: the UNet head (`diffusion_model.out`) preceded by a step of the patch (ColorizeDiffusion's style FiLM
  of the last decoder block, ColorFlow's last decoder residual), keeping the head's own layers and key paths;
* `call_with`: the diffusion-model wrapper's body — the call's own data published in a ContextVar for the patched
  modules, for the duration of that call only;
* `set_diffusion_model_wrapper`: the wrapper installed under the patch's key, replacing an earlier one of that key.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ...errors import ColorizerInputError


class HeadAfter(nn.Sequential):
    """The UNet head (`out`: GroupNorm, SiLU, conv) preceded by `before(h)`. It holds the head's own layers under their
    own names, so `out.0`/`out.2` keep their key paths for weight patches, backups and partial unloads; it is shared
    (not copied) by model clones. Subclasses give `before`."""

    def __init__(self, out: nn.Module, index: int):
        if not isinstance(out, nn.Sequential):
            raise ColorizerInputError(
                f"the UNet's output head is a {type(out).__name__}, not the Stable Diffusion head: another node "
                "replaced diffusion_model.out before this one; apply this pack's patch to the MODEL first")
        super().__init__(OrderedDict(out.named_children()))
        self.index = index

    def __deepcopy__(self, memo):
        return self

    def before(self, h):
        return h

    def forward(self, h):
        return super().forward(self.before(h))


def call_with(var, value, executor, *args, **kwargs):
    """`executor(*args, **kwargs)` with `var` (a ContextVar) set to `value`, reset afterwards whatever happens."""
    token = var.set(value)
    try:
        return executor(*args, **kwargs)
    finally:
        var.reset(token)


def set_diffusion_model_wrapper(patcher, key: str, wrapper) -> None:
    """Install `wrapper` as the DIFFUSION_MODEL wrapper of `key` on `patcher` (an earlier one of that key replaced)."""
    import comfy.patcher_extension

    patcher.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, key)
    patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, key, wrapper)
