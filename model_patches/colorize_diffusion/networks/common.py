"""State-dict helpers shared by the network builders and the UNet loader: hyper-parameters come from tensor shapes
only; `load_prefixed` hands a prefix's tensors to the one strict loader (`weight_files.load_strict`) and pops them."""
from __future__ import annotations

import re

import comfy.ops
from torch import nn

from ....errors import ColorizerLoadError
from ....weight_files import load_strict


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
    """Load every `prefix*` tensor of `sd` into `module` (`load_strict`), pop those keys from `sd`, set eval mode."""
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    load_strict(module, own, key_prefix=prefix, what=f"{prefix.rstrip('.')} network", dtype=dtype, device=device)
    for k in own:
        del sd[prefix + k]
    module.eval().requires_grad_(False)
    return module
