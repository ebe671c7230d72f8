"""Peak memory while loading a checkpoint: the pack's loader on the full-size v2 file, ComfyUI's own loader on a
plain SD2 file of the same UNet. Each load runs in its own subprocess so the peaks cannot mix.

In the child, a thread samples /proc/self/status every 2 ms (RssAnon = anonymous memory; VmRSS = total resident,
file-backed pages of the mmap'd safetensors included) and the kernel's VmHWM gives the exact total-RSS peak.
Figures are the increase over the process after its imports (what the loading itself costs).
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import env


def _child(kind: str, path: str) -> None:
    env.setup()
    import torch  # noqa: F401
    import comfy.model_management  # noqa: F401
    import comfy.sd  # noqa: F401
    from colorize_diffusion.model_patches.colorize_diffusion import checkpoint  # noqa: F401

    base = env.proc_status()
    peak = dict(base)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            s = env.proc_status()
            for k, v in s.items():
                peak[k] = max(peak.get(k, 0), v)
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    if kind == "pack":
        loaded = checkpoint.load_checkpoint(path)
        keep = (loaded.model, loaded.vae, loaded.colorizer)
    else:
        keep = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=False,
                                                     output_clipvision=False)
    seconds = time.perf_counter() - t0
    time.sleep(0.05)
    stop.set()
    th.join()
    after = env.proc_status()
    for k, v in after.items():
        peak[k] = max(peak.get(k, 0), v)
    # First use: read every weight once (what the first sampling step does), then look again.
    modules = [keep[0].model] + ([keep[2].unet_extras, keep[2].encoders] if kind == "pack" else [])
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                t.sum()
    used = env.proc_status()
    del keep
    print(json.dumps({"kind": kind, "seconds": seconds, "base": base, "peak": peak, "after": after,
                      "after_first_use": used}))


def measure(kind: str, path: Path) -> dict:
    """Run one load in a fresh interpreter; returns the child's figures plus the file size."""
    cmd = [sys.executable, "-m", "bench.load_memory", kind, str(path)]
    res = subprocess.run(cmd, cwd=env.REPO, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-4000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    size = path.stat().st_size
    out["file_bytes"] = size
    out["anon_delta"] = out["peak"]["RssAnon"] - out["base"]["RssAnon"]
    out["rss_delta"] = out["peak"]["VmHWM"] - out["base"]["VmRSS"]
    out["anon_over_file"] = out["anon_delta"] / size
    out["rss_over_file"] = out["rss_delta"] / size
    return out


def run(v2_file: Path, plain_file: Path, log=print) -> dict:
    pack = measure("pack", v2_file)
    comfy = measure("comfy", plain_file)
    gib = 1024 ** 3
    for name, r in (("pack loader, v2 file", pack), ("ComfyUI loader, plain SD2 file", comfy)):
        used = r["after_first_use"]
        log(f"  {name}: file {r['file_bytes'] / gib:.2f} GiB, load {r['seconds']:.1f} s, "
            f"peak anon +{r['anon_delta'] / gib:.2f} GiB ({r['anon_over_file']:.3f}x file), "
            f"peak RSS +{r['rss_delta'] / gib:.2f} GiB ({r['rss_over_file']:.3f}x file); after reading every "
            f"weight once: anon +{(used['RssAnon'] - r['base']['RssAnon']) / gib:.2f} GiB, file-backed "
            f"+{(used['RssFile'] - r['base']['RssFile']) / gib:.2f} GiB")
    return {"pack": pack, "comfy": comfy,
            "load_peak_anon_over_file": pack["anon_over_file"],
            "load_peak_rss_over_comfy": pack["rss_over_file"] / comfy["rss_over_file"]}


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
