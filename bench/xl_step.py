"""XL per-step UNet time: the patched SDXL-shaped UNet against the same UNet unpatched, full-size random weights.

The xlv2 layout of `../shared/golden_xl/manifests/xlv2.tsv` is built on the meta device by the pack's own loader
(`checkpoint.split_networks`), then given random weights in RAM (N(0, 1/fan_in) matrices, unit norms, small biases;
nothing is written to disk). The ReferenceNet is not needed for a step: it runs once per prompt, its 36 banks are
random tokens of their real shapes. Variants, each against the unpatched UNet with a plain context of the same
token count and the same `y`:

* vanilla: the 196-token XL reference context, sketch residuals after input blocks 0/3/6/8, reference scales;
* bg (xlv2 "Low-level injection"): 392 tokens, the soft-blended split attention with the background LoRA on both
  halves, and the decoder self-attention reading the banks (own tokens / bank by the sketch mask).

Timing as bench/step_time.py (interleaved rounds, median of per-round ratios, an A/A pair for the resolution).
"""
from __future__ import annotations

import math
import statistics

import torch

from . import env
from .step_time import Variant, load_average, paired_ratio, run_rounds, spread

XL_MANIFEST = env.GOLDEN.parent / "golden_xl" / "manifests" / "xlv2.tsv"


def _meta_state_dict() -> dict:
    import json

    sd = {}
    with open(XL_MANIFEST) as f:
        next(f)
        for line in f:
            key, shape, dtype = line.rstrip("\n").split("\t")
            sd[key] = torch.empty(json.loads(shape), dtype=getattr(torch, dtype), device="meta")
    return sd


def _randomize(module: torch.nn.Module, gen: torch.Generator) -> int:
    """Meta parameters → random CPU tensors; returns the bytes allocated."""
    module.to_empty(device="cpu")
    n = 0
    with torch.no_grad():
        for name, p in list(module.named_parameters()) + list(module.named_buffers()):
            shape = tuple(p.shape)
            if len(shape) >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(math.prod(shape[1:])), generator=gen)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.01, generator=gen)
            n += p.numel() * p.element_size()
    return n


def build(log=print, heads=None):
    """The xlv2 UNet and colorizer of XL_MANIFEST's shapes with random weights (heads: the checkpoint's
    HeadSizes when they are not the released ones)."""
    from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import HeadSizes, split_networks
    from colorize_diffusion.model_patches.colorize_diffusion.colorizer import Colorizer

    sd = _meta_state_dict()
    model, extras, encoders, _, context = split_networks(sd, "xlv2", "v", dtype=torch.float32, device="meta",
                                                         heads=heads or HeadSizes(), name="xlv2 (manifest)")
    gen = torch.Generator().manual_seed(0)
    n = _randomize(model.diffusion_model, gen) + _randomize(extras, gen)
    log(f"  xlv2 UNet + LoRA with random weights: {n / 1024 ** 3:.1f} GiB")
    return model, Colorizer("xlv2", "v", context, extras, encoders, source="xlv2 manifest")


def _out_channels(block) -> int:
    """Channels an input block hands on (its last layer that has out_channels: a conv, a ResBlock, a Downsample)."""
    return next(layer.out_channels for layer in reversed(list(block)) if hasattr(layer, "out_channels"))


def _patcher(module):
    import comfy.model_management as mm
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(module, mm.get_torch_device(), mm.unet_offload_device())


def variants(size: int, log=print, heads=None) -> tuple[dict, tuple]:
    """{name: (patched Variant, unpatched Variant)} for vanilla, bg and an A/A pair, and the latent shape."""
    from colorize_diffusion.model_patches.colorize_diffusion import xl_conditioning as xl
    from colorize_diffusion.model_patches.colorize_diffusion.conditioning import guidance_conditionings
    from colorize_diffusion.model_patches.colorize_diffusion.modes import official_mode
    from colorize_diffusion.model_patches.colorize_diffusion.settings import attention_settings
    from colorize_diffusion.model_patches.colorize_diffusion.step_data import Banks
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import apply_colorizer, transformer_blocks

    import comfy.conds

    base, colorizer = build(log, heads)
    plain = _patcher(base)
    colorizer.unet_extras_patcher = _patcher(colorizer.unet_extras)
    patched = apply_colorizer(plain, colorizer)
    g = torch.Generator().manual_seed(1)
    lat = size // 8
    ctx = colorizer.context_dim
    y = xl.size_vector(size, size)
    dm = base.diffusion_model
    chans = [_out_channels(dm.input_blocks[i]) for i in (0, 3, 6, 8)]     # residuals after input blocks 0/3/6/8
    grids = [lat, lat // 2, lat // 4, lat // 4]
    controls = [torch.randn(1, c, s, s, generator=g) * 0.5 for c, s in zip(chans, grids)]
    mask = torch.zeros(1, 1, lat, lat)
    mask[..., : lat // 2] = 1.0
    decoder = [path for _, path, _ in transformer_blocks(dm) if path.startswith("output_blocks.")]
    banks = []
    for path in decoder:
        block = dm.get_submodule(path)
        scale = 4 if int(path.split(".")[1]) < 3 else 2
        banks.append(torch.randn(1, (lat // scale) ** 2, block.attn1.to_q.in_features, generator=g))
    tokens = torch.randn(1, 196, ctx, generator=g)
    bg_tokens = torch.randn(1, 196, ctx, generator=g)

    def conds(mode):
        parts = official_mode(mode, "xlv2")
        settings = attention_settings("xlv2", parts, xl.reference_scales("xlv2"), 0.05)
        context = torch.cat([tokens, bg_tokens], 1) if parts.split else tokens
        return guidance_conditionings(context, settings, controls, controls, mask if parts.split else None, y=y,
                                      banks=Banks(banks) if parts.background else None)

    def plain_conds(n, seed=2):
        c = torch.randn(1, n, ctx, generator=torch.Generator().manual_seed(seed))
        opts = {"model_conds": {"y": comfy.conds.CONDRegular(y)}}
        return [[c, opts]], [[torch.zeros_like(c), opts]], None

    pairs = {"vanilla": (Variant("xl vanilla", patched, *conds("vanilla")), Variant("unpatched196", plain,
                                                                                   *plain_conds(196))),
             "bg": (Variant("xlv2 bg", patched, *conds("background enhance")),
                    Variant("unpatched392", plain, *plain_conds(392))),
             "a/a": (Variant("unpatched196'", plain, *plain_conds(196, seed=3)),
                     Variant("unpatched196", plain, *plain_conds(196)))}
    return pairs, (1, 4, lat, lat)


def run(size: int, rounds: int, log=print) -> dict:
    pairs, latent = variants(size, log)
    lat = latent[-1]
    log(f"  XL per-step time at {size}x{size} (latent {lat}x{lat}), batch 1, {rounds} rounds; {load_average()}")
    run_rounds(list(pairs.values()), latent, rounds, log)
    out = {}
    for name, (v, b) in pairs.items():
        out[name] = {"ratio": paired_ratio(v, b), "spread": spread(v, b),
                     "patched_s": statistics.median(v.timer.times), "baseline_s": statistics.median(b.timer.times)}
        log(f"  {name:8s} {out[name]['patched_s']:.2f} s vs {out[name]['baseline_s']:.2f} s -> "
            f"{out[name]['ratio']:.3f}x (rounds {out[name]['spread']})")
    return out
