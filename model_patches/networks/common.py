"""State-dict helpers shared by the network builders: hyper-parameters come from tensor shapes only,
loading is strict, assigns the given tensors (no copy when dtypes agree) and pops every consumed key."""
from __future__ import annotations

import re

import comfy.ops
from torch import nn

from ..errors import ColorizerLoadError


def take_prefix(sd: dict, prefix: str) -> dict:
    """Pop every key under `prefix` out of `sd`, returned without the prefix."""
    keys = [k for k in sd if k.startswith(prefix)]
    return {k[len(prefix):]: sd.pop(k) for k in keys}


def operations_or_default(operations):
    return operations if operations is not None else comfy.ops.disable_weight_init


def state_shape(sd: dict, key: str, what: str = "") -> tuple[int, ...]:
    """Shape of `sd[key]`; a ColorizerLoadError naming the key when it is missing."""
    t = sd.get(key)
    if t is None:
        raise ColorizerLoadError(f"checkpoint has no key {key!r}{' (' + what + ')' if what else ''}")
    return tuple(t.shape)


def count_indexed(sd: dict, prefix: str, suffix: str = "") -> int:
    """Number of consecutive indices i = 0, 1, ... for which some key starts with `prefix{i}.{suffix}`."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\." + re.escape(suffix))
    found = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    n = 0
    while n in found:
        n += 1
    return n


def load_prefixed(module: nn.Module, sd: dict, prefix: str, *, dtype=None, device=None) -> nn.Module:
    """Load every `prefix*` tensor of `sd` into `module` (strict, assign) and pop those keys from `sd`.

    The module may have been built on the meta device: its parameters are replaced by the given tensors
    (moved to `device` and cast to `dtype` when those are given). Missing, unexpected or mis-shaped keys
    raise ColorizerLoadError naming the full checkpoint key and both shapes.
    """
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    want = module.state_dict()
    missing = [prefix + k for k in want if k not in own]
    unexpected = [prefix + k for k in own if k not in want]
    if missing:
        raise ColorizerLoadError(f"checkpoint lacks {len(missing)} key(s) of {prefix!r}, e.g. {missing[:5]}")
    if unexpected:
        raise ColorizerLoadError(f"checkpoint has {len(unexpected)} unexpected key(s) under {prefix!r}, "
                                 f"e.g. {unexpected[:5]}")
    for k, t in want.items():
        if tuple(own[k].shape) != tuple(t.shape):
            raise ColorizerLoadError(f"{prefix + k}: expected shape {tuple(t.shape)}, "
                                     f"found {tuple(own[k].shape)} in the checkpoint")
    tensors = {}
    for k, t in own.items():
        kw = {}
        if device is not None:
            kw["device"] = device
        if dtype is not None and t.is_floating_point():
            kw["dtype"] = dtype
        tensors[k] = t.to(**kw) if kw else t
    module.load_state_dict(tensors, strict=True, assign=True)
    for k in own:
        del sd[prefix + k]
    module.eval().requires_grad_(False)
    return module
