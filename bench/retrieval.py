"""Chapters: what ColorFlow's retrieval costs per page, and how often the pool is encoded.

1. Pool encodings per run, through ComfyUI's executor: the shipped chapter workflow (tiny golden models) over a
   folder of pages, then re-queued with a new noise seed. `preprocess.retrieval.encode_pool` and `retrieve` are
   counted: the pool must be encoded once for all the pages, and not again on the re-queue.
2. Time, full-size CLIP ViT-H/14 (random weights from the manifest), at ColorFlow's 512x800: the pool encoded
   (5 patches per reference), then the retrieval of each page (4 quarter patches encoded, cosine, top-3, canvas),
   reported against the UNet step time measured in the same run.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from . import encoders, models

PAGES = 4
REFERENCES = 4
WIDTH, HEIGHT = 512, 800


def _chapter_prompt(seed: int) -> dict:
    from colorize_diffusion.devtools import workflows as wf

    options = wf.Options(checkpoint="v2-tiny.safetensors", clip_vision="tiny-vit-openclip.safetensors", clip_heads=4,
                         vae=encoders.VAE, width=64, height=64, size_base=512, sampler="euler", steps=2, seed=seed,
                         filename_prefix="bench-chapter", sketch_folder="pages", pool_folder="pool")
    return wf.build("chapter_v2", options).to_api()


def _chapter_pictures(folder: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "pages").mkdir()
    (folder / "pool").mkdir()
    for i in range(PAGES):
        page = np.full((100, 70, 3), 255, np.uint8)
        page[10 + 3 * i:12 + 3 * i, 5:65] = 0
        page[10:90, 30 + i:32 + i] = 0
        Image.fromarray(page).save(folder / "pages" / f"page_{i}.png")
    for i in range(REFERENCES):
        h, w = (72 + 8 * i, 56 + 12 * i)
        Image.fromarray((rng.uniform(0, 1, (h, w, 3)) * 255).astype(np.uint8)).save(folder / "pool" / f"ref_{i}.png")


def count_pool_encodings(log=print) -> dict:
    from colorize_diffusion.preprocess import retrieval as rap

    calls = {"encode_pool": 0, "retrieve": 0}
    originals = {name: getattr(rap, name) for name in calls}

    def counted(name):
        def call(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)
        return call

    phases = {}
    with tempfile.TemporaryDirectory(prefix="cd-bench-chapter-") as d:
        runner = encoders._runner(Path(d))
        _chapter_pictures(Path(d) / "input")
        for name in calls:
            setattr(rap, name, counted(name))
        try:
            for phase, seed in (("first run", 0), ("re-queue, new noise seed", 1)):
                for k in calls:
                    calls[k] = 0
                runner.run(_chapter_prompt(seed))
                phases[phase] = dict(calls)
        finally:
            for name, f in originals.items():
                setattr(rap, name, f)
    for phase, c in phases.items():
        log(f"  {phase:26s} pool encodings {c['encode_pool']}, page retrievals {c['retrieve']} ({PAGES} pages)")
    return {"pool_encodings_per_run": phases["first run"]["encode_pool"],
            "pool_encodings_requeue": phases["re-queue, new noise seed"]["encode_pool"],
            "retrievals_per_run": phases["first run"]["retrieve"]}


def _vit_h(workdir: Path):
    from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

    path = workdir / "openclip-vit-h-bench-random.safetensors"
    gen = torch.Generator().manual_seed(3)
    if not path.is_file():
        visual = [(k, shape) for k, shape in models.read_manifest("openclip-ViT-H-14") if k.startswith("visual.")]
        models.write_safetensors(path, visual,
                                 lambda k, s: models.random_tensor(k, s, gen))
    return load_vision_file(str(path), heads=16)


def time_retrieval(workdir: Path, step_s: float | None, log=print) -> dict:
    from colorize_diffusion.model_patches.common.clip_tokens import image_embedder
    from colorize_diffusion.preprocess import retrieval as rap

    clip = _vit_h(workdir)
    embed = image_embedder(clip)
    rng = np.random.default_rng(1)
    refs = [(rng.uniform(0, 1, (700 + 40 * i, 500 + 30 * i, 3)) * 255).astype(np.uint8) for i in range(REFERENCES)]
    pages = [np.repeat((rng.uniform(0, 1, (1600, 1100, 1)) * 255).astype(np.uint8), 3, 2) for _ in range(3)]
    with torch.no_grad():
        t = time.perf_counter()
        pool = rap.encode_pool(refs, WIDTH, HEIGHT, embed)
        pool_s = time.perf_counter() - t
        per_page = []
        for page in pages:
            t = time.perf_counter()
            rap.retrieve(page, pool, embed, 3)
            per_page.append(time.perf_counter() - t)
    page_s = statistics.median(per_page)
    log(f"  pool of {REFERENCES} references ({5 * REFERENCES} patches) encoded once: {pool_s:.2f} s "
        f"({pool_s / REFERENCES:.2f} s per reference)")
    line = f"  retrieval per page (1100x1600 page, {WIDTH}x{HEIGHT}, top-3): {page_s:.2f} s (median of {len(pages)})"
    if step_s:
        line += f" = {page_s / step_s:.2f} UNet steps ({step_s:.2f} s, unpatched v2, this run)"
    log(line)
    return {"pool_encode_s": pool_s, "retrieval_page_s": page_s,
            "retrieval_page_over_step": page_s / step_s if step_s else None}
