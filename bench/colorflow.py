"""ColorFlow's colorizers at full size (random weights from golden_colorflow's manifests): one guided sampling step
(CFG, 2 rows) of the ColorFlow-patched base against the plain base in ComfyUI, and the peak memory of each, every
variant in a fresh interpreter.

    python -m bench.colorflow step <pixart|sd15> <plain|colorflow> <workdir> <canvas px> <rounds>   (one child)

The release is written once into <workdir> as the loaders read it: the bases as diffusers folders
(models/diffusers/<name>/transformer|unet), the ColorFlow folders (config.json, guider weights, LoRA) as released.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from bench import env  # noqa: E402

GOLDEN_CF = env.GOLDEN.parent / "golden_colorflow"
MANIFESTS = GOLDEN_CF / "manifests"
TINY = GOLDEN_CF / "models"
# family -> (base manifest, base subfolder, guider manifest, LoRA manifest, LoRA file, tiny base config, tiny guider)
RELEASE = {
    "pixart": ("pixart-XL-2-1024-MS_transformer", "transformer", "sketch_colorguider_pixart_assumed_num_layers28",
               "sketch_transformer_lora", "transformer_lora.bin", "pixart_base/transformer", "colorflow/sketch"),
    "sd15": ("sd15_unet", "unet", "GraySD_colorguider_sd", "GraySD_unet_lora", "unet_lora.bin", "sd15_base/unet",
             "colorflow/GraySD"),
}
FULL_CONFIGS = {   # the released sizes over the tiny configs' other fields
    "pixart_base": {"num_attention_heads": 16, "attention_head_dim": 72, "num_layers": 28, "caption_channels": 4096,
                    "cross_attention_dim": 1152},
    "pixart_guider": {"num_attention_heads": 16, "attention_head_dim": 72, "num_layers": 28,
                      "cross_attention_dim": 1152},
    "sd15_base": {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8},
    "sd15_guider": {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
                    "attention_head_dim": 8},
}
CONTEXT = {"pixart": (4096, 2), "sd15": (768, 77)}     # text embedding width and tokens ("manga")


def write_release(workdir: Path, family: str) -> dict:
    """The full-size base and ColorFlow folder of `family` (reused when an earlier run wrote them)."""
    import torch

    from bench import models

    base_m, sub, guider_m, lora_m, lora_file, tiny_base, tiny_guider = RELEASE[family]
    base_dir = workdir / "diffusers" / f"{family}_full" / sub
    flow_dir = workdir / "colorflow" / f"{family}_full"
    gen = torch.Generator().manual_seed(5)
    for folder, manifest, tiny, full in ((base_dir, base_m, TINY / tiny_base, FULL_CONFIGS[f"{family}_base"]),
                                         (flow_dir, guider_m, TINY / tiny_guider,
                                          FULL_CONFIGS[f"{family}_guider"])):
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / "diffusion_pytorch_model.safetensors"
        if not weights.is_file():
            (folder / "config.json").write_text(json.dumps({**json.loads((tiny / "config.json").read_text()),
                                                            **full}))
            specs = models.read_manifest(manifest, MANIFESTS)
            dup = {k: k.replace("after_proj.", f"adapter_linear.{max_adapter(specs)}.") for k, _ in specs
                   if k.startswith("after_proj.")}
            values: dict = {}

            def make(key, shape):
                if key in dup:                 # the release stores the last adapter twice
                    return values[dup[key]]
                t = models.random_tensor(key, shape, gen)
                if key in dup.values():
                    values[key] = t
                return t
            ordered = sorted(specs, key=lambda s: s[0] in dup)
            models.write_safetensors(weights, ordered, make)
    if not (flow_dir / lora_file).is_file():
        lora = {k: torch.randn(shape, generator=gen) * (0.01 if ".lora_B." in k else shape[-1] ** -0.5)
                for k, shape in models.read_manifest(lora_m, MANIFESTS)}
        torch.save(lora, flow_dir / lora_file)
    return {"base": base_dir, "colorflow": flow_dir}


def max_adapter(specs) -> int:
    return max(int(k.split(".")[1]) for k, _ in specs if k.startswith("adapter_linear."))


def child(family: str, variant: str, workdir: Path, canvas: int, rounds: int) -> dict:
    """One variant's load, warm-up step and timed steps in this process."""
    env.setup()
    import torch

    torch.set_flush_denormal(True)
    import comfy.model_management
    import comfy.samplers

    base = env.proc_status()
    paths = {k: Path(v) for k, v in json.loads((workdir / f"{family}.json").read_text()).items()}
    guider, (h, w), g = step_guider(family, variant, paths, canvas, canvas)
    times = []

    def one_step(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        t = time.perf_counter()
        out = model_k(x, sigmas[0] * x.new_ones([1]), **extra_args)
        times.append(time.perf_counter() - t)
        return out

    sampler = comfy.samplers.KSAMPLER(one_step)
    latent = torch.zeros(1, 4, h, w)
    for _ in range(rounds + 1):                     # the first one loads the weights: not timed
        guider.sample(torch.randn(1, 4, h, w, generator=g), latent, sampler, torch.tensor([2.0, 0.0]), seed=0,
                      disable_pbar=True)
    peak = env.proc_status()
    comfy.model_management.unload_all_models()
    return {"step_s": statistics.median(times[1:]), "steps": times[1:],
            "peak_rss": peak["VmHWM"] - base["VmRSS"]}


def step_guider(family: str, variant: str, paths: dict, height: int, width: int, context: tuple | None = None):
    """The CFG guider (cfg 4.5) of the plain base or the ColorFlow-patched one at height x width px, with random
    text and guider latents; returns (guider, latent (h, w), generator). context: (text width, tokens), default
    the released base's."""
    import torch

    import comfy.samplers

    from colorize_diffusion.model_patches.colorflow import conditioning as cond
    from colorize_diffusion.model_patches.colorflow.colorizer import apply_colorizer, load_colorizer
    from colorize_diffusion.model_patches.colorflow.diffusers_bases import load_model_folder
    from colorize_diffusion.model_patches.colorflow.families import spec_of

    model = load_model_folder(str(paths["base"]))
    h, w = height // 8, width // 8
    width_c, n_tokens = context or CONTEXT[family]
    g = torch.Generator().manual_seed(0)
    size = {"width": width, "height": height} if family == "pixart" else {}
    pos = [[torch.randn(1, n_tokens, width_c, generator=g), dict(size)]]
    neg = [[torch.randn(1, 1 if family == "pixart" else n_tokens, width_c, generator=g), dict(size)]]
    if variant == "colorflow":
        colorizer = load_colorizer(str(paths["colorflow"]))
        model = apply_colorizer(model, colorizer)
        channels = spec_of(family).guider_channels
        pos = cond.attach(pos, torch.randn(1, channels, h, w, generator=g))
        neg = cond.attach(neg, torch.randn(1, channels, h, w, generator=g))
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(4.5)
    return guider, (h, w), g


def measure(family: str, variant: str, workdir: Path, canvas: int, rounds: int) -> dict:
    cmd = [sys.executable, "-m", "bench.colorflow", "step", family, variant, str(workdir), str(canvas), str(rounds)]
    res = subprocess.run(cmd, cwd=env.REPO, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(workdir: Path, canvas: int, rounds: int, log=print) -> dict:
    out = {}
    gib = 1024 ** 3
    for family in ("pixart", "sd15"):
        t = time.perf_counter()
        paths = write_release(workdir, family)
        (workdir / f"{family}.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        log(f"  {family}: full-size release written/reused in {time.perf_counter() - t:.0f} s")
        plain = measure(family, "plain", workdir, canvas, rounds)
        flow = measure(family, "colorflow", workdir, canvas, rounds)
        ratio = flow["step_s"] / plain["step_s"]
        log(f"  {family}: one CFG step at {canvas}x{canvas} px, plain base {plain['step_s']:.2f} s, with ColorFlow "
            f"{flow['step_s']:.2f} s -> {ratio:.3f}x; peak RSS plain +{plain['peak_rss'] / gib:.2f} GiB, ColorFlow "
            f"+{flow['peak_rss'] / gib:.2f} GiB ({flow['peak_rss'] / plain['peak_rss']:.3f}x)")
        out[f"colorflow_{family}_step_over_plain"] = ratio
        out[f"colorflow_{family}_peak_over_plain"] = flow["peak_rss"] / plain["peak_rss"]
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "step":
        fam, var, wd, px, n = sys.argv[2:7]
        print(json.dumps(child(fam, var, Path(wd), int(px), int(n))))
