"""Helpers shared by the network builders: taking keys out of a state dict and checking shapes."""
from __future__ import annotations

import torch

from ..errors import ColorizerLoadError


def default_operations():
    import comfy.ops

    return comfy.ops.manual_cast


def take_prefix(sd: dict, prefix: str) -> dict:
    """Pop every key under `prefix` out of `sd`, returned without the prefix."""
    keys = [k for k in sd if k.startswith(prefix)]
    return {k[len(prefix):]: sd.pop(k) for k in keys}


def load_into(module: torch.nn.Module, sub: dict, prefix: str, dtype=None) -> torch.nn.Module:
    """Strict, shape-checked load that takes the given tensors over (no copy when dtypes agree)."""
    own = module.state_dict(keep_vars=True)
    missing = sorted(set(own) - set(sub))
    unexpected = sorted(set(sub) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(prefix + k for k in missing[:6])}" + (" …" if len(missing) > 6 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(prefix + k for k in unexpected[:6])}" + (" …" if len(unexpected) > 6 else ""))
        raise ColorizerLoadError(f"checkpoint does not match the {type(module).__name__} layout: " + "; ".join(parts))
    for k, want in own.items():
        got = sub[k]
        if tuple(got.shape) != tuple(want.shape):
            raise ColorizerLoadError(
                f"{prefix}{k} has shape {list(got.shape)} but the architecture derived from the file expects "
                f"{list(want.shape)}")
        if dtype is not None and got.is_floating_point() and got.dtype != dtype:
            sub[k] = got.to(dtype)
    module.load_state_dict(sub, strict=True, assign=True)
    return module
