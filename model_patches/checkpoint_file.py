"""The pack's one weight-file reader: ComfyUI's `comfy.utils.load_torch_file`, always in its weights-only mode
(a pickle that needs more than tensors, and so could run code, is refused), with errors that name the file."""
from __future__ import annotations

import os
import pickle

import torch

from ..errors import ColorizerLoadError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_state_dict(path, what: str = "weight file") -> dict[str, torch.Tensor]:
    """All tensors of a weight file on the CPU (`state_dict` wrappers unwrapped; other entries dropped)."""
    import comfy.utils

    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ColorizerLoadError(f"{what} not found: {path}")
    lower = path.lower()
    if not lower.endswith(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES):
        raise ColorizerLoadError(f"{name}: unsupported file type; use .safetensors (or .ckpt/.pt/.pth/.bin, "
                                 "which are read with weights-only loading)")
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except pickle.UnpicklingError as exc:
        raise ColorizerLoadError(
            f"{name} was refused: it is a pickle that needs more than plain tensors to load (it could run code). "
            "Convert it to .safetensors, or use the official release files. "
            f"Detail: {str(exc).splitlines()[0] if str(exc) else repr(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - truncated downloads, wrong formats: one clear message
        kind = "safetensors file" if lower.endswith(SAFETENSORS_SUFFIXES) else "PyTorch weight file"
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ColorizerLoadError(f"{name} is not a readable {kind} (truncated or damaged download?): {first}") \
            from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ColorizerLoadError(f"{name} does not hold a state dict of tensors")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
