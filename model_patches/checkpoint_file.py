"""Reading checkpoint files safely: safetensors directly, pickles only through weights-only loading."""
from __future__ import annotations

import os
import pickle

import torch

from .errors import ColorizerLoadError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file on the CPU, each read once (no second copy is kept)."""
    if not os.path.isfile(path):
        raise ColorizerLoadError(f"checkpoint file not found: {path}")
    lower = path.lower()
    if lower.endswith(SAFETENSORS_SUFFIXES):
        return _read_safetensors(path)
    if lower.endswith(PICKLE_SUFFIXES):
        return _read_pickle(path)
    raise ColorizerLoadError(
        f"{os.path.basename(path)}: unsupported file type; use .safetensors (or .ckpt/.pt/.pth, "
        "which are read with weights-only loading)")


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ColorizerLoadError(
            f"{os.path.basename(path)} is not a readable safetensors file (truncated or damaged "
            f"download?): {exc}") from None


def _read_pickle(path: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise ColorizerLoadError(
            f"{os.path.basename(path)} was refused: it is a pickle that needs more than plain tensors "
            "to load (it could run code). Convert it to .safetensors, or use the official release files. "
            f"Detail: {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ColorizerLoadError(f"{os.path.basename(path)} could not be read as a checkpoint: {exc}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ColorizerLoadError(f"{os.path.basename(path)} does not hold a state dict of tensors")
    return obj
