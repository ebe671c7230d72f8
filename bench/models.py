"""Full-size random-weight checkpoints in the official layout, built from the golden manifests.

`write_v2_file` writes every key of `manifests/v2.tsv` (UNet + LoRA + warp/style modules, sketch/bg/style
encoders, VAE, DDPM buffers) with the manifest shapes; `write_plain_sd2_file` writes the same UNet without the
ColorizeDiffusion extras, in the stock SD2.1 layout (linear proj_in/proj_out) plus the same VAE, for ComfyUI's
own loader. Tensors are generated and written one at a time (a streaming safetensors writer), so building a
7 GB file needs no more than one tensor of memory.

Weights: N(0, 1/fan_in) for matrices and convolutions (unit-variance activations), ones for 1-D norm weights,
N(0, 0.01²) for biases, so activations stay finite through the whole UNet.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import torch

from . import env

MANIFESTS = env.GOLDEN / "manifests"
UNET = "model.diffusion_model."
DDPM_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                "posterior_mean_coef1", "posterior_mean_coef2")


def xl_manifest_available() -> bool:
    return (env.GOLDEN.parent / "golden_xl" / "manifests" / "xlv2.tsv").is_file()


XL_MANIFESTS = env.GOLDEN.parent / "golden_xl" / "manifests"


def read_manifest(family: str = "v2", folder: Path | None = None) -> list[tuple[str, tuple]]:
    """(key, shape) of every row of `<folder>/<family>.tsv` (default: the golden set's, or golden_xl's for XL)."""
    rows = []
    folder = folder or (XL_MANIFESTS if family in ("sdxl", "xlv2") else MANIFESTS)
    with open(folder / f"{family}.tsv") as f:
        next(f)
        for line in f:
            key, shape, dtype = line.rstrip("\n").split("\t")
            assert dtype == "float32", (key, dtype)
            rows.append((key, tuple(json.loads(shape))))
    return rows


def _is_extra(key: str) -> bool:
    """ColorizeDiffusion-only keys inside the UNet prefix (LoRA pairs, v2 warp and style modules)."""
    return ".lora_" in key or key.startswith(UNET + "warp_modules.") or key.startswith(UNET + "style_modules.")


def random_tensor(key: str, shape: tuple, gen: torch.Generator) -> torch.Tensor:
    if key in DDPM_BUFFERS:
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, shape[0], dtype=torch.float64) ** 2
        return (betas if key == "betas" else torch.cumprod(1 - betas, 0)).float()
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    if key.endswith(".weight"):          # GroupNorm / LayerNorm scale
        return torch.ones(shape)
    return torch.randn(shape, generator=gen) * 0.01


def write_safetensors(path: Path, specs: list[tuple[str, tuple]], make) -> int:
    """Stream `make(key, shape)` for every spec into a float32 safetensors file; returns its size in bytes."""
    header, offset = {}, 0
    for key, shape in specs:
        n = math.prod(shape) * 4
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = Path(str(path) + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key, shape in specs:
            t = make(key, shape).to(torch.float32).contiguous()
            assert tuple(t.shape) == tuple(shape), (key, t.shape, shape)
            f.write(t.numpy().tobytes())
    os.replace(tmp, path)
    return path.stat().st_size


def _reuse(path: Path, specs) -> bool:
    """An existing file with exactly the expected size (from an earlier run with --workdir) is reused."""
    want = sum(math.prod(s) * 4 for _, s in specs)
    return path.is_file() and want < path.stat().st_size <= want + 8 + 64 * len(specs) + 4096 * 64


def _write_family(directory: Path, family: str, name: str, seed: int) -> Path:
    """Every key of the family's manifest as a full-size random file (reused when an earlier run left it)."""
    path = Path(directory) / name
    specs = read_manifest(family)
    if not _reuse(path, specs):
        gen = torch.Generator().manual_seed(seed)
        write_safetensors(path, specs, lambda k, s: random_tensor(k, s, gen))
    return path


def write_v2_file(directory: Path, seed: int = 0) -> Path:
    """The full-size v2 checkpoint (every manifest key). The name has no 'eps': v-prediction, as released."""
    return _write_family(directory, "v2", "v2-bench-random.safetensors", seed)


def write_xl_file(directory: Path, seed: int = 2) -> Path:
    """The full-size xlv2 checkpoint (every manifest key: UNet, LoRA, conv_fg, sketch encoder, projection,
    ReferenceNet, VAE, DDPM buffers)."""
    return _write_family(directory, "xlv2", "xlv2-bench-random.safetensors", seed)


def plain_sd2_specs() -> list[tuple[str, tuple]]:
    specs = []
    for key, shape in read_manifest("v2"):
        if key.startswith(UNET) and not _is_extra(key):
            if (".proj_in.weight" in key or ".proj_out.weight" in key) and len(shape) == 4:
                shape = shape[:2]            # stock SD2.1 layout: linear projections
            specs.append((key, shape))
        elif key.startswith("first_stage_model.") or key in DDPM_BUFFERS:
            specs.append((key, shape))
    return specs


def write_plain_sd2_file(directory: Path, seed: int = 1) -> Path:
    """A stock-layout SD2.x (768-v) file of the same UNet + VAE, for ComfyUI's loader."""
    path = Path(directory) / "sd2-plain-bench-random-v.safetensors"
    specs = plain_sd2_specs()
    if not _reuse(path, specs):
        gen = torch.Generator().manual_seed(seed)
        write_safetensors(path, specs, lambda k, s: random_tensor(k, s, gen))
    return path


def file_params(path: Path) -> int:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
