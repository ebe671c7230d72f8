"""How often each encoder runs: one prompt of 20 sampling steps, then re-queues, through ComfyUI's own executor.

The graph is the v2 "full" workflow built from the pack's nodes (checkpoint loader, OpenCLIP loader, Prepare
Sketch, Encode Reference, Conditioning, Guider) and core nodes (Load Image, Convert Image to Mask, Load VAE,
SamplerCustomAdvanced with 20 steps, VAE Decode, Save Image), run in-process by `execution.PromptExecutor` with
the classic cache, as a ComfyUI server runs a queue. Tiny golden models stand in for the real weights (the
counts do not depend on sizes); the VAE is a tiny random TAESD-layout file.

Counters: a global module forward hook counts SketchEncoder and ReferenceUNetEncoder calls (bg = conv zero
layers, style = linear zero layers) and UNet calls; the OpenCLIP tower's token pass (`OpenCLIPVision._hidden`)
is wrapped. Each call also records a fingerprint of its input, so "runs per input" tells a re-run on the same
picture (a per-step recomputation would show as 20) from two different pictures (reference and background-only
reference both go through CLIP in background modes).
"""
from __future__ import annotations

import asyncio
import math
import tempfile
import uuid
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
    from colorize_diffusion.model_patches import clip_tokens

    def hook(module, args, output):
        name = type(module).__name__
        if name == "SketchEncoder":
            counter.record("sketch", args[0] if args else None)
        elif name == "ReferenceUNetEncoder":
            counter.record("background" if module.zero_kind == "conv" else "style", args[0] if args else None)
        elif name == "UNetModel":
            counter.unet_batches.append(int(args[0].shape[0]) if args else -1)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    original = clip_tokens.OpenCLIPVision._hidden

    def counted_hidden(self, pixels):
        counter.record("clip", pixels)
        return original(self, pixels)

    clip_tokens.OpenCLIPVision._hidden = counted_hidden

    def remove():
        handle.remove()
        clip_tokens.OpenCLIPVision._hidden = original
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


def workflow(seed: int = 0) -> dict:
    """API-format prompt: v2 full mode, dual guidance, 20 steps."""
    n = lambda cls, **inputs: {"class_type": cls, "inputs": inputs}  # noqa: E731
    return {
        "1": n("LoadImage", image="sketch.png"),
        "2": n("LoadImage", image="reference.png"),
        "3": n("ColorizeDiffusionCheckpointLoader", ckpt_name="v2-tiny.safetensors", prediction="auto"),
        "4": n("ColorizeDiffusionLoadOpenCLIPVision", clip_name="tiny-vit-openclip.safetensors", heads=4,
               activation="gelu", dtype="fp32"),
        "5": n("ColorizeDiffusionPrepareSketch", image=["1", 0], method="none", polarity="auto", width=64,
               height=64, size_base=512, monochrome="auto", extract_size=512),
        "6": n("ColorizeDiffusionEncodeReference", clip_vision=["4", 0], image=["2", 0]),
        "7": n("ImageToMask", image=["5", 0], channel="red"),
        "8": n("ImageToMask", image=["2", 0], channel="red"),
        "17": n("VAELoader", vae_name="bench-tiny-taesd.safetensors"),
        "9": n("ColorizeDiffusionConditioning", model=["3", 0], colorizer=["3", 1], vae=["17", 0], sketch=["5", 3],
               reference=["6", 0], mode="full", sketch_strength=1.0, sketch_mask_threshold=0.05,
               reference_mask_threshold=0.5, background_factor=1.0, merge_scale=0.0, sketch_mask=["7", 0],
               reference_mask=["8", 0], clip_vision=["4", 0]),
        "10": n("ColorizeDiffusionGuider", model=["9", 0], positive=["9", 1], negative=["9", 2], reference_scale=4.0,
                sketch_scale=2.0, sketch_negative=["9", 3]),
        "11": n("RandomNoise", noise_seed=seed),
        "12": n("KSamplerSelect", sampler_name="euler"),
        "13": n("BasicScheduler", model=["9", 0], scheduler="normal", steps=STEPS, denoise=1.0),
        "14": n("SamplerCustomAdvanced", noise=["11", 0], guider=["10", 0], sampler=["12", 0], sigmas=["13", 0],
                latent_image=["9", 4]),
        "15": n("VAEDecode", samples=["14", 0], vae=["17", 0]),
        "16": n("SaveImage", images=["15", 0], filename_prefix="bench"),
    }


class _ServerStub:
    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata = {}

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


def _host(tmp: Path):
    """Core extra nodes + the pack's nodes in this process; model folders pointing at the tiny files."""
    import folder_paths
    import nodes

    import logging

    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    if "SamplerCustomAdvanced" not in nodes.NODE_CLASS_MAPPINGS:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)       # comfy_extras nodes whose optional packages are missing (audio, …)
        try:
            asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        finally:
            root.setLevel(level)
    from colorize_diffusion.nodes import NODE_CLASS_MAPPINGS

    for name, cls in NODE_CLASS_MAPPINGS.items():
        nodes.NODE_CLASS_MAPPINGS.setdefault(name, cls)
    for sub in ("input", "output", "vae"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(tmp / "input"))
    folder_paths.set_output_directory(str(tmp / "output"))
    folder_paths.add_model_folder_path("colorizediffusion", str(env.GOLDEN / "models"), is_default=True)
    folder_paths.add_model_folder_path("clip_vision", str(env.GOLDEN / "clip"), is_default=True)
    folder_paths.add_model_folder_path("vae", str(tmp / "vae"), is_default=True)
    _write_tiny_vae(tmp / "vae" / "bench-tiny-taesd.safetensors")
    _pictures(tmp / "input")


def _execute(executor, prompt: dict) -> None:
    import execution

    pid = str(uuid.uuid4())
    ok, err, outputs, node_errors = asyncio.run(execution.validate_prompt(pid, prompt, None))
    if not ok:
        raise RuntimeError(f"prompt did not validate: {err} {node_errors}")
    executor.execute(prompt, pid, extra_data={}, execute_outputs=outputs)
    if not executor.success:
        msgs = [m for m in executor.status_messages if m[0] == "execution_error"]
        raise RuntimeError(f"prompt failed: {msgs[-1][1] if msgs else executor.status_messages}")


def run(log=print) -> dict:
    """Run the three prompts; random tiny weights make denormal floats, so flush them (speed only)."""
    import execution

    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory(prefix="cd-bench-enc-") as d:
        _host(Path(d))
        counter = Counter()
        remove = install_counters(counter)
        try:
            ex = execution.PromptExecutor(_ServerStub(), cache_type=execution.CacheType.CLASSIC,
                                          cache_args={"lru": 0, "ram": 0})
            phases = {}
            for name, prompt in (("first prompt", workflow(0)), ("re-queue, unchanged", workflow(0)),
                                 ("re-queue, new noise seed", workflow(1))):
                counter.reset()
                _execute(ex, prompt)
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
