"""The GPU check: what docs/performance.md's GPU section reports, measured in one run (bash scripts/gpu_check.sh).

    .venv/bin/python scripts/gpu_check.py [--dry-run] [--out DIR] [--workdir DIR] [--rounds N]

Under current ComfyUI with dynamic VRAM on and off (the host emulation of tests/host_emulation, one child process
per mode, COLORIZEDIFFUSION_HOST=current / current-static):

1. precision: every ColorizeDiffusion golden case of level B and C (one UNet step, plain and guided) with the
   checkpoint in fp16 and in bf16 against the same case in fp32 on the same device; the bound found is the largest
   max|x - x_fp32| / rms(x_fp32) over the case's outputs. The fp32 run is also checked against the case's expected
   numbers with the case's tolerance.
2. steps: peak VRAM (torch.cuda.max_memory_allocated, weights included) and the median step time of the patched
   model against the plain UNet: v2 full mode at 768² (fp16), xlv2 background at 1024² (fp32), a 1024x1600
   ColorFlow (PixArt) page; full-size random checkpoints written by bench/ (models.write_v2_file,
   xl_step.build, colorflow.write_release) into --workdir.

--dry-run runs every code path on the CPU with the tiny golden models at 64 px (the XL manifest taken from the tiny
xlv2 file): the numbers mean nothing, the records' shape is what tests/test_gpu_check.py checks.

Output in --out: results.json (machine-readable) and performance-lines.md (the lines for docs/performance.md).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOSTS = {"current": "dynamic VRAM on", "current-static": "dynamic VRAM off"}
PARTS = ("precision", "steps")
DTYPES = ("float16", "bfloat16")
FULL = {"v2": 768, "xlv2": 1024, "colorflow": (1600, 1024)}      # px: side, side, (height, width)
DRY = {"v2": 64, "xlv2": 64, "colorflow": (768, 512)}      # ComfyUI's PixArt needs >= 512 px


# ------------------------------------------------------------------------------------------ child set-up
def setup(dry_run: bool, host: str) -> None:
    """Host tree, the pack and bench importable; CPU only in a dry run; the host mode switched on."""
    comfy_dir = Path(os.environ.get("COMFYUI_DIR") or REPO / ".host" / "ComfyUI").resolve()
    for p in (str(comfy_dir), str(REPO / ".host" / "pkgs"), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)
    sys.path.append(str(REPO))        # `bench`, after ComfyUI's own top-level modules (its `nodes`)
    from comfy.cli_args import args

    args.cpu = dry_run
    args.use_pytorch_cross_attention = True
    import utils.extra_config  # noqa: F401  (before comfy/ lands on sys.path, see comfyui-host.md §6.2)

    import host_emulation

    host_emulation.emulate(dynamic_vram=host_emulation.MODES[host]).__enter__()


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_bytes():
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


# ------------------------------------------------------------------------------------------ precision
def _rel_error(got, ref) -> float:
    import torch

    got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
    rms = ref.pow(2).mean().sqrt().item() or 1.0
    if not torch.isfinite(got).all():
        return math.inf
    return (got - ref).abs().max().item() / rms


def precision(dry_run: bool, max_cases: int = 0) -> dict:
    import torch
    from golden_support import unet_runner
    from golden_support.compare import check_model_case
    from golden_support.discovery import discover_cases

    from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint

    cache = {}

    def loader(dtype):
        def loaded(path, prediction):
            key = (path, prediction, dtype)
            if key not in cache:
                cache[key] = load_checkpoint(path, prediction=prediction, dtype=dtype)
            return cache[key]
        return loaded

    cases = [c for c in discover_cases() if not c.preprocess]
    out = {"cases": {}, "bound": {}}
    levels_seen = set()
    for golden in cases:
        case, inputs, expected = golden.load()
        if case.get("level") not in ("B", "C") or "tagger" in case or case.get("family") not in ("v1", "v1.5", "v2"):
            continue
        if max_cases and (len(out["cases"]) >= max_cases or (case["level"] in levels_seen and
                                                              len(levels_seen) < 2)):
            continue                   # a short run: the first case of each level first
        levels_seen.add(case["level"])
        rec = {}
        unet_runner.loaded = loader(torch.float32)
        ref = unet_runner.run(case, inputs, golden.case_dir, golden.base)
        try:
            check_model_case(case, {k: v.float().cpu() for k, v in ref.items()}, expected)
            rec["fp32_matches_expected"] = True
        except AssertionError as e:
            rec["fp32_matches_expected"] = False
            rec["fp32_error"] = str(e)[:300]
        for name in DTYPES:
            unet_runner.loaded = loader(getattr(torch, name))
            got = unet_runner.run(case, inputs, golden.case_dir, golden.base)
            rec[name] = max(_rel_error(got[k], ref[k]) for k in ref)
            out["bound"][name] = max(out["bound"].get(name, 0.0), rec[name])
        out["cases"][golden.test_id] = rec
        cache.clear()
    return out


# ------------------------------------------------------------------------------------------ steps
def timed(step, rounds: int) -> dict:
    """One untimed warm-up step (loads the weights), then `rounds` synchronised steps; the peak over them."""
    step(0)
    reset_peak()
    times = []
    for r in range(rounds):
        sync()
        t = time.perf_counter()
        step(r + 1)
        sync()
        times.append(time.perf_counter() - t)
    return {"step_s": statistics.median(times), "steps_s": times, "peak_vram_bytes": peak_bytes()}


def _free() -> None:
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()


def compare(name: str, plain_step, patched_step, rounds: int, extra: dict) -> dict:
    plain = timed(plain_step, rounds)
    patched = timed(patched_step, rounds)
    rec = {"plain": plain, "patched": patched, "step_ratio": patched["step_s"] / plain["step_s"], **extra}
    if plain["peak_vram_bytes"]:
        rec["peak_ratio"] = patched["peak_vram_bytes"] / plain["peak_vram_bytes"]
    _free()
    return rec


def v2_full(dry_run: bool, workdir: Path, rounds: int) -> dict:
    import torch
    from bench import models, step_time
    from golden_support.discovery import golden_roots

    from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import apply_colorizer

    size = DRY["v2"] if dry_run else FULL["v2"]
    path = golden_roots()[0] / "models" / "v2-tiny.safetensors" if dry_run else models.write_v2_file(workdir)
    dtype = torch.float32 if dry_run else torch.float16
    ckpt = load_checkpoint(str(path), prediction="v", dtype=dtype)
    col = ckpt.colorizer
    inp = step_time.build_inputs(ckpt, size)
    patched = step_time.Variant("full", apply_colorizer(ckpt.model, col),
                                *step_time.mode_conditionings(col, "full", inp))
    plain = step_time.Variant("plain", ckpt.model, *step_time.plain_conditionings(512, col.context_dim))
    return compare("v2", lambda s: plain.step(inp["latent"], s), lambda s: patched.step(inp["latent"], s), rounds,
                   {"size": [size, size], "dtype": str(dtype).replace("torch.", ""), "mode": "full",
                    "checkpoint": path.name})


def tiny_xl_manifest(workdir: Path) -> Path:
    """The tiny xlv2 file's keys and shapes as a manifest (the dry run's stand-in for the full-size one)."""
    from golden_support.discovery import golden_roots

    from colorize_diffusion.weight_files import read_state_dict

    sd = read_state_dict(str(golden_roots()[0].parent / "golden_xl" / "models" / "xlv2-tiny.safetensors"))
    path = workdir / "xlv2-tiny.tsv"
    path.write_text("key\tshape\tdtype\n" + "".join(f"{k}\t{json.dumps(list(v.shape))}\tfloat32\n"
                                                    for k, v in sd.items()))
    return path


def xlv2_background(dry_run: bool, workdir: Path, rounds: int) -> dict:
    from bench import xl_step

    heads = None
    if dry_run:
        from golden_support.xl_runner import head_sizes
        from golden_support.discovery import golden_roots

        xl_step.XL_MANIFEST = tiny_xl_manifest(workdir)
        heads = head_sizes(golden_roots()[0].parent / "golden_xl", "models/xlv2-tiny.safetensors")
    size = DRY["xlv2"] if dry_run else FULL["xlv2"]
    pairs, latent = xl_step.variants(size, log=lambda *_: None, heads=heads)
    patched, plain = pairs["bg"]
    return compare("xlv2", lambda s: plain.step(latent, s), lambda s: patched.step(latent, s), rounds,
                   {"size": [size, size], "dtype": "float32", "mode": "background enhance"})


def colorflow_page(dry_run: bool, workdir: Path, rounds: int) -> dict:
    import torch
    from bench import colorflow

    import comfy.samplers

    height, width = DRY["colorflow"] if dry_run else FULL["colorflow"]
    if dry_run:
        paths = {"base": colorflow.TINY / "pixart_base" / "transformer", "colorflow": colorflow.TINY / "colorflow" / "sketch"}
        config = json.loads((paths["base"] / "config.json").read_text())
        context = (config["caption_channels"], 2)
    else:
        paths, context = colorflow.write_release(workdir, "pixart"), None
    steps = {}
    for variant in ("plain", "colorflow"):
        guider, (h, w), g = colorflow.step_guider("pixart", variant, paths, height, width, context)

        def step(seed, guider=guider, h=h, w=w):
            noise = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed))
            sampler = comfy.samplers.KSAMPLER(lambda model_k, x, sigmas, extra_args=None, callback=None,
                                              disable=None: model_k(x, sigmas[0] * x.new_ones([1]), **extra_args))
            return guider.sample(noise, torch.zeros(1, 4, h, w), sampler, torch.tensor([2.0, 0.0]), seed=seed,
                                 disable_pbar=True)
        steps[variant] = step
    return compare("colorflow", steps["plain"], steps["colorflow"], rounds,
                   {"size": [height, width], "dtype": "ComfyUI's choice for the device", "mode": "pixart, CFG 4.5"})


def steps(dry_run: bool, workdir: Path, rounds: int) -> dict:
    out = {}
    for name, fn in (("v2_full_768", v2_full), ("xlv2_background_1024", xlv2_background),
                     ("colorflow_page_1024x1600", colorflow_page)):
        try:
            out[name] = fn(dry_run, workdir, rounds)
        except Exception as e:        # one failing target must not hide the others' numbers
            import traceback

            out[name] = {"error": f"{type(e).__name__}: {e}"[:1000], "traceback": traceback.format_exc()[-3000:]}
    return {"targets": out}


def child(part: str, host: str, dry_run: bool, workdir: Path, rounds: int, out: Path, max_cases: int = 0) -> None:
    setup(dry_run, host)
    t = time.perf_counter()
    rec = precision(dry_run, max_cases) if part == "precision" else steps(dry_run, workdir, rounds)
    rec.update({"device": device_name(), "host": host, "seconds": time.perf_counter() - t})
    out.write_text(json.dumps(rec, indent=1))


# ------------------------------------------------------------------------------------------ report
def _gib(n) -> str:
    return "n/a (CPU)" if n is None else f"{n / 1024 ** 3:.2f} GiB"


def lines(results: dict) -> str:
    """The lines for docs/performance.md's GPU section."""
    dev = results["device"] + (" (DRY RUN on the CPU with the tiny models: not figures to publish)"
                               if results["dry_run"] else "")
    out = [f"Measured by `bash scripts/gpu_check.sh` on {dev}, {results['date']}.", ""]
    out += ["| host | precision | bound found: max abs error / rms of the fp32 output, over the golden B/C cases |",
            "|---|---|---|"]
    for host, rec in results["hosts"].items():
        p = rec.get("precision", {})
        if "error" in p:
            out.append(f"| {HOSTS[host]} | - | failed: {p['error'][:120]} |")
            continue
        fp32 = all(c.get("fp32_matches_expected") for c in p.get("cases", {}).values())
        for name in DTYPES:
            out.append(f"| {HOSTS[host]} | {name} | {p['bound'].get(name, float('nan')):.2e} over "
                       f"{len(p.get('cases', {}))} cases (fp32 within the cases' tolerance: {'yes' if fp32 else 'NO'}) |")
    out += ["", "| host | target | size | plain UNet: step, peak VRAM | patched: step, peak VRAM | ratios (step, VRAM) |",
            "|---|---|---|---|---|---|"]
    for host, rec in results["hosts"].items():
        steps_rec = rec.get("steps", {})
        targets = {"steps": steps_rec} if "error" in steps_rec else steps_rec.get("targets", {})
        for name, r in targets.items():
            if "error" in r:
                out.append(f"| {HOSTS[host]} | {name} | - | failed: {r['error'][:120]} | | |")
                continue
            size = "x".join(str(s) for s in r["size"])
            out.append(f"| {HOSTS[host]} | {name} ({r['mode']}, {r['dtype']}) | {size} | "
                       f"{r['plain']['step_s'] * 1000:.1f} ms, {_gib(r['plain']['peak_vram_bytes'])} | "
                       f"{r['patched']['step_s'] * 1000:.1f} ms, {_gib(r['patched']['peak_vram_bytes'])} | "
                       f"{r['step_ratio']:.3f}x, " + (f"{r['peak_ratio']:.3f}x |" if "peak_ratio" in r else "n/a |"))
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny golden models, every code path")
    ap.add_argument("--out", type=Path, default=REPO / ".host" / "gpu-check")
    ap.add_argument("--workdir", type=Path, default=None, help="full-size random files (default: <out>/files)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=420, help="seconds per child process")
    ap.add_argument("--max-cases", type=int, default=0,
                    help="precision on at most this many golden cases (a level B and a level C one first); 0 = all")
    ap.add_argument("--child", nargs=2, metavar=("PART", "HOST"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    workdir = a.workdir or a.out / "files"
    workdir.mkdir(parents=True, exist_ok=True)
    if a.child:
        part, host = a.child
        child(part, host, a.dry_run, workdir, a.rounds, a.out / f"{part}-{host}.json", a.max_cases)
        return 0
    results = {"dry_run": a.dry_run, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "hosts": {},
               "device": "cpu"}
    t0 = time.perf_counter()
    for host in HOSTS:
        results["hosts"][host] = {}
        for part in PARTS:
            rec_file = a.out / f"{part}-{host}.json"
            rec_file.unlink(missing_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, host, "--out", str(a.out),
                   "--workdir", str(workdir), "--rounds", str(a.rounds), "--max-cases", str(a.max_cases)]
            cmd += ["--dry-run"] if a.dry_run else []
            env = {**os.environ, "COLORIZEDIFFUSION_HOST": host}
            t = time.perf_counter()
            try:
                res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=a.timeout)
                tail = res.stderr[-2000:]
            except subprocess.TimeoutExpired as e:
                res, tail = None, f"timed out after {a.timeout} s: {(e.stderr or b'')[-1500:]!r}"
            if res is not None and res.returncode == 0 and rec_file.is_file():
                rec = json.loads(rec_file.read_text())
                results["device"] = rec["device"]
            else:
                rec = {"error": f"exit {None if res is None else res.returncode}: {tail}"}
            results["hosts"][host][part] = rec
            print(f"[gpu_check] {part} on {HOSTS[host]}: {'ok' if 'error' not in rec else 'FAILED'} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    results["seconds"] = time.perf_counter() - t0
    (a.out / "results.json").write_text(json.dumps(results, indent=1))
    text = lines(results)
    (a.out / "performance-lines.md").write_text(text)
    print(text)
    print(f"[gpu_check] results: {a.out / 'results.json'}; lines for docs/performance.md: "
          f"{a.out / 'performance-lines.md'} ({results['seconds']:.0f} s)")
    failed = [f"{p} on {h}" for h, rec in results["hosts"].items() for p, r in rec.items() if "error" in r]
    failed += [f"{n} on {h}" for h, rec in results["hosts"].items()
               for n, r in rec.get("steps", {}).get("targets", {}).items() if "error" in r]
    if failed:
        print("[gpu_check] FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
