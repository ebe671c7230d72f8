"""How often each encoder runs: one prompt of 20 sampling steps, then re-queues, through ComfyUI's own executor.

The graph is the shipped v2 "full enhance" example workflow (`devtools.workflows`, built with 20 euler steps,
dual guidance, masks from Convert Image to Mask instead of ISNet, and a Load VAE node), run in this process by
devtools' executor driver (`execution.PromptExecutor` with the classic cache, as a ComfyUI server runs a queue). Tiny
golden models stand in for the real weights (the counts do not depend on sizes); the VAE is a tiny random
TAESD-layout file.

Counters: a global module forward hook counts SketchEncoder and ReferenceUNetEncoder calls (bg = conv zero
layers, style = linear zero layers) and UNet calls; the OpenCLIP tower's token pass (`OpenCLIPVision._hidden`)
is wrapped. Each call also records a fingerprint of its input, so "runs per input" tells a re-run on the same
picture (a per-step recomputation would show as 20) from two different pictures (reference and background-only
reference both go through CLIP in background modes).
"""
from __future__ import annotations

import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from . import env

ENCODERS = ("clip", "sketch", "background", "style")
STEPS = 20


class Counter:
    def __init__(self):
        self.calls = defaultdict(int)
        self.inputs = defaultdict(set)
        self.unet_batches = []

    def reset(self):
        self.__init__()

    def record(self, name, x):
        self.calls[name] += 1
        if torch.is_tensor(x):
            xf = x.detach().float()
            self.inputs[name].add((tuple(x.shape), round(float(xf.sum()), 3), round(float(xf.abs().sum()), 3)))

    def snapshot(self) -> dict:
        out = {}
        for name in ENCODERS:
            n, distinct = self.calls.get(name, 0), len(self.inputs.get(name, ()))
            out[name] = {"runs": n, "distinct_inputs": distinct, "runs_per_input": n / distinct if distinct else 0.0}
        out["unet_calls"] = len(self.unet_batches)
        return out


def install_counters(counter: Counter):
    from colorize_diffusion.model_patches.common import clip_vision

    def hook(module, args, output):
        name = type(module).__name__
        if name == "SketchEncoder":
            counter.record("sketch", args[0] if args else None)
        elif name == "ReferenceUNetEncoder":
            counter.record("background" if module.zero_kind == "conv" else "style", args[0] if args else None)
        elif name == "UNetModel":
            counter.unet_batches.append(int(args[0].shape[0]) if args else -1)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    original = clip_vision.OpenCLIPVision._hidden

    def counted_hidden(self, pixels):
        counter.record("clip", pixels)
        return original(self, pixels)

    clip_vision.OpenCLIPVision._hidden = counted_hidden

    def remove():
        handle.remove()
        clip_vision.OpenCLIPVision._hidden = original
    return remove


def _write_tiny_vae(path: Path, seed: int = 0) -> None:
    """A random VAE in ComfyUI's TAESD layout, which comfy.sd.VAE detects from its keys."""
    from safetensors.torch import save_file

    import comfy.taesd.taesd as taesd

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in taesd.TAESD(latent_channels=4).state_dict().items():
        if k in ("vae_scale", "vae_shift"):
            continue
        sd[k] = (torch.randn(v.shape, generator=g) * math.sqrt(2.0 / math.prod(v.shape[1:])) if v.ndim >= 2
                 else 0.02 * torch.randn(v.shape, generator=g))
    sd["vae_scale"] = torch.tensor(0.18215)
    sd["vae_shift"] = torch.tensor(0.0)
    save_file({k: t.contiguous() for k, t in sd.items()}, str(path))


def _pictures(folder: Path) -> None:
    from PIL import Image

    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[8:10, 8:56] = 0
    sketch[8:56, 30:32] = 0
    Image.fromarray(sketch).save(folder / "sketch.png")
    rng = np.random.default_rng(0)
    ref = (rng.uniform(0, 1, (72, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(ref).save(folder / "reference.png")


VAE = "bench-tiny-taesd.safetensors"


def workflow(seed: int = 0) -> dict:
    """API-format prompt: the shipped v2 full-enhance workflow on the tiny models, dual guidance, 20 steps."""
    from colorize_diffusion.devtools import workflows as wf

    options = wf.Options(checkpoint="v2-tiny.safetensors", clip_vision="tiny-vit-openclip.safetensors", clip_heads=4,
                         vae=VAE, masks="images", width=64, height=64, size_base=512, sampler="euler",
                         sketch_scale=2.0, steps=STEPS, seed=seed, filename_prefix="bench", sketch="sketch.png",
                         reference="reference.png")
    return wf.build("full_enhance_v2", options).to_api()


def _runner(tmp: Path):
    """ComfyUI's executor in this process (core extra nodes + the pack's nodes), folders at the tiny files."""
    import folder_paths

    from colorize_diffusion.devtools.executor import Runner

    runner = Runner()
    for sub in ("input", "output", "vae"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(tmp / "input"))
    folder_paths.set_output_directory(str(tmp / "output"))
    for paths, _ in folder_paths.folder_names_and_paths.values():    # an earlier part's deleted temporary folders
        paths[:] = [p for p in paths if os.path.isdir(p)]
    folder_paths.filename_list_cache.clear()        # its entries would look at those folders' modification times
    folder_paths.add_model_folder_path("colorizediffusion", str(env.GOLDEN / "models"), is_default=True)
    folder_paths.add_model_folder_path("clip_vision", str(env.GOLDEN / "clip"), is_default=True)
    folder_paths.add_model_folder_path("vae", str(tmp / "vae"), is_default=True)
    _write_tiny_vae(tmp / "vae" / VAE)
    _pictures(tmp / "input")
    return runner


def run(log=print) -> dict:
    """Run the three prompts; random tiny weights make denormal floats, so flush them (speed only)."""
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory(prefix="cd-bench-enc-") as d:
        runner = _runner(Path(d))
        counter = Counter()
        remove = install_counters(counter)
        try:
            phases = {}
            for name, prompt in (("first prompt", workflow(0)), ("re-queue, unchanged", workflow(0)),
                                 ("re-queue, new noise seed", workflow(1))):
                counter.reset()
                runner.run(prompt)
                phases[name] = counter.snapshot()
        finally:
            remove()
    for name, snap in phases.items():
        log(f"  {name:26s} " + ", ".join(
            f"{e} {snap[e]['runs']}" + (f" ({snap[e]['distinct_inputs']} inputs)" if snap[e]["distinct_inputs"] > 1
                                        else "") for e in ENCODERS)
            + f"; UNet calls {snap['unet_calls']}")
    first = phases["first prompt"]
    per_prompt = max(first[e]["runs_per_input"] for e in ENCODERS)
    return {"phases": phases,
            "encoder_runs_per_prompt": int(per_prompt) if float(per_prompt).is_integer() else per_prompt,
            "encoder_runs_requeue": sum(phases["re-queue, unchanged"][e]["runs"] for e in ENCODERS),
            "encoder_runs_requeue_new_seed": sum(phases["re-queue, new noise seed"][e]["runs"] for e in ENCODERS)}
