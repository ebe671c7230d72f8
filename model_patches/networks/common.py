"""State-dict helpers shared by the network builders and the UNet loader: hyper-parameters come from tensor shapes
only; the one strict loader assigns the given tensors (no copy when dtypes agree) and pops every consumed key."""
from __future__ import annotations

import re

import comfy.ops
from torch import nn

from ...comfy_compat import expected_state_shapes
from ...errors import ColorizerLoadError


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


def load_strict(module: nn.Module, tensors: dict, *, key_prefix: str = "", what: str = "", dtype=None,
                device=None) -> nn.Module:
    """Load `tensors` into `module`: every key it takes, no other, each of the shape it expects; the tensors are
    assigned (cast to `dtype`, moved to `device` when given), so a module built on the meta device, or with the
    lazy layers of a newer ComfyUI, ends up holding them. Errors name the checkpoint key (`key_prefix` + key).

    Expected keys and shapes come from the module's structure (`comfy_compat.expected_state_shapes`), never from a
    fresh module's `state_dict()`, which lists no key of a layer the host builds lazily."""
    name = what or type(module).__name__
    want = expected_state_shapes(module)
    missing = sorted(key_prefix + k for k in want if k not in tensors)
    unexpected = sorted(key_prefix + k for k in tensors if k not in want)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} key(s) of the {name}, e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"has {len(unexpected)} key(s) the {name} does not take, e.g. {unexpected[:5]}")
        raise ColorizerLoadError("the file " + " and ".join(parts))
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            raise ColorizerLoadError(f"{key_prefix + k}: the {name} expects shape {list(shape)}, "
                                     f"the file has {list(tensors[k].shape)}")
    cast = {}
    for k, t in tensors.items():
        kw = {}
        if device is not None:
            kw["device"] = device
        if dtype is not None and t.is_floating_point():
            kw["dtype"] = dtype
        cast[k] = t.to(**kw) if kw else t
    module.load_state_dict(cast, strict=True, assign=True)
    loaded = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if loaded != want:
        wrong = sorted(set(loaded.items()) ^ set(want.items()))
        raise ColorizerLoadError(f"the {name} did not take its weights as expected (host layer layout changed?): "
                                 f"{wrong[:5]}")
    return module


def load_prefixed(module: nn.Module, sd: dict, prefix: str, *, dtype=None, device=None) -> nn.Module:
    """Load every `prefix*` tensor of `sd` into `module` (`load_strict`), pop those keys from `sd`, set eval mode."""
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    load_strict(module, own, key_prefix=prefix, what=f"{prefix.rstrip('.')} network", dtype=dtype, device=device)
    for k in own:
        del sd[prefix + k]
    module.eval().requires_grad_(False)
    return module
