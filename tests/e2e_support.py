"""Shared by the workflow tests: tiny stand-in files and the test variant of every example workflow.

The shipped workflows use the official files (checkpoints with their own VAE, clip_vision_h, ISNet weights).
Tests run the same graphs (devtools.workflows.build) with :func:`variant_options`:

* the tiny golden checkpoint of the workflow's family, the tiny OpenCLIP tower (heads 4);
* ``vae``: a tiny random TAESD-layout VAE file (:func:`write_tiny_vae`) through the core ``Load VAE`` node, because
  the tiny checkpoints have no VAE (the only structural substitution: a VAELoader node replaces the loader's VAE
  output);
* ``masks="images"``: the masks are ``Convert Image to Mask`` of the prepared sketch and of the reference picture
  instead of the ISNet nodes (the ISNet path itself runs once with random ISNet weights, see
  test_workflows_e2e.py);
* 64×64, 2 steps.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from colorize_diffusion.devtools import workflows as wf
from conftest import GOLDEN

TINY_CHECKPOINTS = {"v1": "mult-eps-tiny.safetensors", "v1.5": "switch-tiny.safetensors", "v2": "v2-tiny.safetensors",
                    "sdxl": "sdxl-tiny.safetensors", "xlv2": "xlv2-tiny.safetensors"}
TINY_CLIP = "tiny-vit-openclip.safetensors"
TINY_CLIP_XL = "tiny-clip-vision-g.safetensors"     # with tiny-clip-vision-g.json (its heads)
TINY_TAGGER = "tiny-wd-swinv2-tagger.safetensors"
TINY_TEXT_TOWER = "tiny-openclip-full.safetensors"   # with tiny-openclip-full.json (its heads)
TINY_VAE = "tiny-taesd.safetensors"
SIZE = 64
BATCH_FOLDER = "e2e_sketches"     # not the pack's own example folder, which the server also has
POOL_FOLDER = "e2e_pool"


GOLDEN_COLORFLOW = GOLDEN.parent / "golden_colorflow"
GOLDEN_COLORFLOW_DECOLORIZE = GOLDEN.parent / "golden_colorflow_decolorize"   # Decolorize's LE/, ScreenStyle/
COLORFLOW_BASES = {"pixart": ("pixart_base", None), "sd15": ("sd15_base", "pixart_base")}   # base, text encoder


def variant_options(stem: str, **changes) -> wf.Options:
    spec = wf.WORKFLOWS[stem]
    if spec.family in COLORFLOW_BASES:
        # the tiny diffusers bases; the tiny SD1.5 base has no text encoder: the tiny T5 (32-d, like the tiny
        # UNet's context) encodes its prompt
        base, text = COLORFLOW_BASES[spec.family]
        opts = dict(colorflow_base=base, colorflow_text=text, clip_vision=TINY_CLIP, clip_heads=4,
                    pool_resolution="256x256", steps=2, seed=1234, seed_control="fixed",
                    filename_prefix=f"test/{stem}", sketch_folder=BATCH_FOLDER, pool_folder=POOL_FOLDER)
        opts.update(changes)
        return wf.Options(**opts)
    xl = spec.family in wf.XL_FAMILIES
    base = dict(checkpoint=TINY_CHECKPOINTS[spec.family], clip_vision=TINY_CLIP_XL if xl else TINY_CLIP,
                clip_heads=0 if xl else 4, tagger=TINY_TAGGER, vae=TINY_VAE,
                masks="images", width=SIZE, height=SIZE, steps=2, seed=1234, seed_control="fixed",
                filename_prefix=f"test/{stem}", sketch="sketch.png", reference="reference.png",
                text_tower=TINY_TEXT_TOWER,
                sketch_folder=BATCH_FOLDER, pool_folder=POOL_FOLDER)
    base.update(changes)
    if base.get("background") is None and spec.background:      # the test's own background picture
        base["background"] = "background.png"
    return wf.Options(**base)


def write_tiny_vae(path: Path, seed: int = 0) -> Path:
    """A random VAE in ComfyUI's TAESD layout (taesd_encoder.* / taesd_decoder.* / vae_scale / vae_shift), which
    comfy.sd.VAE detects (``taesd_decoder.1.weight``): 8x down/up-sampling, 4 latent channels, ~10 MB."""
    import torch
    from safetensors.torch import save_file

    import comfy.taesd.taesd as taesd

    if path.is_file():
        return path
    model = taesd.TAESD(latent_channels=4)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k in ("vae_scale", "vae_shift"):
            continue
        if v.ndim >= 2:
            fan_in = math.prod(v.shape[1:])
            sd[k] = torch.randn(v.shape, generator=g) * math.sqrt(1.0 / fan_in)   # no blow-up through the blocks
        else:
            sd[k] = 0.02 * torch.randn(v.shape, generator=g)
    # the decoder's last conv centred on mid-grey, so the pictures are not saturated and every change of the
    # latent shows in the 8-bit output
    last = max((k for k in sd if k.startswith("taesd_decoder.") and k.endswith(".weight") and sd[k].shape[0] == 3),
               key=lambda k: int(k.split(".")[1]))
    sd[last.replace(".weight", ".bias")] = torch.full((3,), 0.5)
    sd["vae_scale"] = torch.tensor(0.18215)
    sd["vae_shift"] = torch.tensor(0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: t.contiguous() for k, t in sd.items()}, str(tmp))
    tmp.replace(path)
    return path


def sketch_picture(h: int = 80, w: int = 64, shift: int = 0) -> Image.Image:
    """Black line art on white paper: a box, a cross and a circle."""
    a = np.full((h, w, 3), 255, np.uint8)
    a[10 + shift:12 + shift, 6:w - 6] = 0
    a[h - 12:h - 10, 6:w - 6] = 0
    a[10:h - 10, 6:8] = 0
    a[10:h - 10, w - 8:w - 6] = 0
    a[h // 2 - 1:h // 2 + 1, 12:w - 12] = 0
    yy, xx = np.mgrid[:h, :w]
    ring = np.abs(np.hypot(yy - h / 2, xx - w / 2) - min(h, w) / 5) < 1.2
    a[ring] = 0
    return Image.fromarray(a)


def reference_picture(h: int = 72, w: int = 56, seed: int = 0) -> Image.Image:
    """Smooth colours: a character-like blob on a coloured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    c = rng.uniform(0, 1, (3, 3))
    a = np.stack([c[i, 0] + c[i, 1] * yy + c[i, 2] * xx for i in range(3)], -1)
    blob = np.hypot(yy - 0.5, xx - 0.4) < 0.25
    a[blob] = rng.uniform(0, 1, 3)
    return Image.fromarray((np.clip(a / a.max(), 0, 1) * 255).astype(np.uint8))


def write_inputs(folder: Path) -> dict[str, Path]:
    """sketch.png, reference.png, background.png, two more sketches in colorizediffusion_sketches/."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"sketch": folder / "sketch.png", "reference": folder / "reference.png",
             "background": folder / "background.png"}
    sketch_picture().save(files["sketch"])
    reference_picture().save(files["reference"])
    reference_picture(60, 90, seed=5).save(files["background"])
    pool = folder / POOL_FOLDER
    pool.mkdir(exist_ok=True)
    reference_picture().save(pool / "a.png")
    reference_picture(60, 90, seed=7).save(pool / "b.png")
    batch = folder / BATCH_FOLDER
    batch.mkdir(exist_ok=True)
    sketch_picture(64, 64, shift=0).save(batch / "a.png")
    sketch_picture(96, 64, shift=8).save(batch / "b.png")
    return files


def load_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def prepare_server(server) -> None:
    """The tiny VAE in <base>/models/vae and the test pictures in <base>/input of a running test server
    (ComfyUI re-lists model folders when they change)."""
    base = server.base_dir
    write_tiny_vae(base / "models" / "vae" / TINY_VAE)
    if not (base / "input" / "sketch.png").is_file():
        write_inputs(base / "input")
