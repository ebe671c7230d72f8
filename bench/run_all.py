"""ColorizeDiffusion speed and memory benchmark (CPU, fp32): one command, one run, ratios against baselines
measured side by side. See docs/performance.md for the figures and what they mean.

    .venv/bin/python bench/run_all.py [--size 512] [--quick] [--rounds N] [--attention sdpa|comfy-cpu]
                                      [--flops] [--workdir DIR] [--skip load,encoders,steps]

1. loading memory: the pack's loader on a full-size random v2 file vs ComfyUI's loader on a plain SD2 file of
   the same UNet (each in its own subprocess);
2. encoder runs per prompt / per re-queue through ComfyUI's executor (tiny golden models);
3. per-step UNet time, patched vs unpatched, for vanilla / background / style / full at size² px, an A/A pair
   (the run's resolution), and dual guidance as one 3-way batch vs three passes;
4. the same ratios estimated from the patched parts timed one by one (bench/components.py): low noise;
5.-6. XL step time and loading memory;
7. chapters: pool encodings per run through the executor, retrieval time per page against the step time;
8. ColorFlow: the patched PixArt / SD1.5 step and peak memory against the plain base (full size, random weights).

The full-size files (7.0 GB + 3.8 GB) are written to a temporary folder and removed afterwards, unless
--workdir names a folder to keep (and reuse) them in. The last line printed is machine-readable (RESULT ...).
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):                       # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from bench import env  # noqa: E402


def log(msg: str = "") -> None:
    print(msg, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=None, help="image side in px for the step timings (default 512)")
    ap.add_argument("--quick", action="store_true", help="fast sanity run: 256 px, fewer rounds")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds for the per-mode step times")
    ap.add_argument("--dual-rounds", type=int, default=None, help="rounds for batched vs separate guidance")
    ap.add_argument("--flops", action="store_true",
                    help="also count each variant's matmul/conv/attention FLOPs (one extra step per variant)")
    ap.add_argument("--attention", default="sdpa", choices=sorted(env.ATTENTION),
                    help="attention backend of both sides: sdpa (default) or comfy-cpu (sub-quadratic)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated full-size files here")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: load, encoders, steps, xl, xl-load, chapter, colorflow")
    ap.add_argument("--colorflow-size", type=int, default=512,
                    help="canvas side for the ColorFlow step timings (512: ComfyUI's own PixArt needs >= 512)")
    ap.add_argument("--xl-size", type=int, default=None,
                    help="image side for the XL step timings (default 512 on CPU; the XL app works at 1024)")
    a = ap.parse_args(argv)
    size = a.size or (256 if a.quick else 512)
    rounds = a.rounds or (4 if a.quick else 5)
    dual_rounds = a.dual_rounds or 2
    skip = {s for s in a.skip.split(",") if s}

    t_start = time.perf_counter()
    env.setup(a.attention)
    import torch

    # Random weights can drive activations into denormal floats, which cost 10-100x per operation on x86 CPUs
    # and would measure an artefact of the random weights, not the code: flush them to zero (both sides alike).
    torch.set_flush_denormal(True)
    log(f"machine: {platform.processor() or platform.machine()}, {env.THREADS} torch threads, torch "
        f"{torch.__version__}, fp32, attention {env.attention_backend()}")

    from bench import models

    workdir = a.workdir
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="cd-bench-")
        workdir = Path(tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    result, estimates = {}, {}
    unpatched_step_s = None
    try:
        t = time.perf_counter()
        v2_file = models.write_v2_file(workdir) if {"load", "steps"} - skip else None
        plain_file = models.write_plain_sd2_file(workdir) if "load" not in skip else None
        if v2_file is not None:
            log(f"full-size random files ready in {time.perf_counter() - t:.0f} s: {v2_file.name} "
                f"({v2_file.stat().st_size / 1024 ** 3:.2f} GiB)"
                + (f", {plain_file.name} ({plain_file.stat().st_size / 1024 ** 3:.2f} GiB)" if plain_file else ""))

        if "load" not in skip:
            from bench import load_memory

            log("\n[1] peak memory while loading (increase over the process after its imports)")
            r = load_memory.run(v2_file, plain_file, log)
            result["load_peak_anon_over_file"] = r["load_peak_anon_over_file"]
            result["load_peak_rss_over_comfy"] = r["load_peak_rss_over_comfy"]

        if "encoders" not in skip:
            from bench import encoders

            log(f"\n[2] encoder runs, v2 full mode, dual guidance, {encoders.STEPS} steps, through the executor")
            r = encoders.run(log)
            result["encoder_runs_per_prompt"] = r["encoder_runs_per_prompt"]
            result["encoder_runs_requeue"] = r["encoder_runs_requeue"]

        if "steps" not in skip:
            from bench import step_time
            from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint

            log(f"\n[3] per-step UNet time, full-size v2 UNet, {size}x{size} px")
            ckpt = load_checkpoint(str(v2_file), dtype=torch.float32)
            r = step_time.run(ckpt, size, rounds, dual_rounds, log, flops=a.flops)
            for mode in step_time.MODES:
                result[mode] = r["steps"][mode]["ratio"]
            result["dualcfg_batched_vs_separate"] = r["dual"]["ratio"]
            result["injection_over_vanilla"] = r["injection"]["ratio"]
            unpatched_step_s = min(r["fastest_unpatched_s"].values())     # the vanilla context (256 tokens)

            from bench import components

            log("\n[4] the same ratios estimated part by part: the pack's parts and what they replace, each timed "
                "on its real inputs (fastest of 5)")
            estimates = components.run(ckpt, size, baseline_s=r["fastest_unpatched_s"], log=log)
        if "xl-load" not in skip and models.xl_manifest_available():
            from bench import load_memory

            t = time.perf_counter()
            xl_file = models.write_xl_file(workdir)
            log(f"\n[6] XL loading: full-size random xlv2 file {xl_file.stat().st_size / 1024 ** 3:.2f} GiB written in "
                f"{time.perf_counter() - t:.0f} s")
            r = load_memory.measure("pack", xl_file)
            gib = 1024 ** 3
            log(f"  pack loader, xlv2 file: load {r['seconds']:.1f} s, peak anon +{r['anon_delta'] / gib:.2f} GiB "
                f"({r['anon_over_file']:.3f}x file), peak RSS +{r['rss_delta'] / gib:.2f} GiB "
                f"({r['rss_over_file']:.3f}x file)")
            result["xl_load_peak_anon_over_file"] = r["anon_over_file"]

        if "xl" not in skip and models.xl_manifest_available():
            from bench import xl_step

            xl_size = a.xl_size or (256 if a.quick else 512)
            log(f"\n[5] XL per-step UNet time, full-size xlv2 UNet (random weights in RAM), {xl_size}x{xl_size} px")
            r = xl_step.run(xl_size, rounds, log)
            result["xl_vanilla"], result["xl_bg"] = r["vanilla"]["ratio"], r["bg"]["ratio"]
        if "chapter" not in skip:
            from bench import retrieval

            log(f"\n[7] chapters: ColorFlow's retrieval, the chapter workflow over {retrieval.PAGES} pages through the "
                "executor (tiny models)")
            result.update(retrieval.count_pool_encodings(log))
            log("  full-size CLIP ViT-H/14 (random weights), ColorFlow's 512x800")
            r = retrieval.time_retrieval(workdir, unpatched_step_s, log)
            result["retrieval_page_over_step"] = r["retrieval_page_over_step"]
        if "colorflow" not in skip:
            from bench import colorflow

            rounds_cf = 1 if a.quick else 3
            log(f"\n[8] ColorFlow at full size (random weights): one CFG step of the patched base against the plain "
                f"base, and peak memory, each in a fresh process ({a.colorflow_size} px canvas, {rounds_cf} rounds)")
            result.update(colorflow.run(workdir, a.colorflow_size, rounds_cf, log))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    log(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    fmt = lambda k: f"{result[k]:.3f}" if isinstance(result.get(k), float) else str(result.get(k, "na"))  # noqa: E731
    keys = ["vanilla", "bg", "style", "full", "xl_vanilla", "xl_bg", "dualcfg_batched_vs_separate",
            "injection_over_vanilla",
            "encoder_runs_per_prompt",
            "encoder_runs_requeue", "load_peak_anon_over_file", "load_peak_rss_over_comfy", "xl_load_peak_anon_over_file",
            "pool_encodings_per_run", "pool_encodings_requeue", "retrieval_page_over_step",
            "colorflow_pixart_step_over_plain", "colorflow_pixart_peak_over_plain", "colorflow_sd15_step_over_plain",
            "colorflow_sd15_peak_over_plain"]
    if estimates:
        log("ESTIMATE " + " ".join(f"{k}={v['estimate']:.3f}" for k, v in estimates.items()))
    log("RESULT " + " ".join(f"{k}={fmt(k)}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
