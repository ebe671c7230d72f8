"""Per-step UNet time of the patched model against the same UNet unpatched, and dual guidance batched vs separate.

One sampler step = one call of the sampler's model function (guider → calc_cond_batch → apply_model → UNet),
exactly what a KSampler step costs. Both sides go through the same guider code on the same ComfyUI model
(`LoadedCheckpoint.model`): the patched side is `apply_colorizer(model, colorizer)` with the pack's
conditioning, the baseline is the plain ModelPatcher with a plain context of the same token count
(256 for vanilla/style, 512 for the split modes). Attention is ComfyUI's `optimized_attention` on both sides
(the patches call the same function).

Timing: after one untimed warm-up call per variant, rounds visit every variant once (interleaved, so drift hits
all alike); each mode's figure is the median over rounds of (patched / baseline of the same round).
"""
from __future__ import annotations

import math
import statistics
import time

import torch

MODES = {"vanilla": "vanilla", "bg": "background enhance", "style": "style enhance", "full": "full"}
SIGMA = 2.5            # a mid-schedule step (t ≈ 600)
REF_SCALE, SKETCH_SCALE = 4.0, 2.5   # dual guidance: [c, u_ref, u_sk]


class Timer:
    """A KSAMPLER sample function that evaluates the model once and records the wall time of that call."""

    def __init__(self):
        self.times = []

    def __call__(self, model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        s = x.new_ones([x.shape[0]]) * float(sigmas[0])
        t0 = time.perf_counter()
        out = model_k(x, s, **(extra_args or {}))
        self.times.append(time.perf_counter() - t0)
        self.last = out
        return out


def separate_guider_class():
    """Our dual-guidance guider, but each active pass in its own UNet call (the comparison point)."""
    import comfy.samplers

    from colorize_diffusion.model_patches import guidance

    base = guidance.make_guider_class()

    class SeparatePasses(base):
        def predict_noise(self, x, timestep, model_options={}, seed=None):
            passes = guidance.active_passes(self.reference_scale, self.sketch_scale)
            outs = [comfy.samplers.calc_cond_batch(self.inner_model, [self.conds[p]], x, timestep, model_options)[0]
                    for p in passes]
            return guidance.combine(dict(zip(passes, outs)), self.reference_scale, self.sketch_scale)

    return SeparatePasses


class Variant:
    def __init__(self, name, model, positive, negative, sketch_negative, ref_scale=1.0, sketch_scale=1.0,
                 guider_class=None):
        self.name = name
        self.model, self.conds = model, (positive, negative, sketch_negative)
        self.scales = (ref_scale, sketch_scale)
        self.guider_class = guider_class
        self.timer = Timer()

    def guider(self):
        from colorize_diffusion.model_patches import guidance

        if self.guider_class is None:
            return guidance.guider(self.model, *self.conds, *self.scales)
        g = self.guider_class(self.model)
        g.set_conds(*self.conds)
        g.set_scales(*self.scales)
        return g

    def step(self, latent_shape, seed=0):
        import comfy.samplers

        noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed))
        sigmas = torch.tensor([SIGMA, 0.0])
        self.guider().sample(noise, torch.zeros(latent_shape), comfy.samplers.KSAMPLER(self.timer), sigmas,
                             seed=seed, disable_pbar=True)
        return self.timer.last


def _hs_shapes(colorizer, diffusion_model, latent_hw):
    """[(tokens, channels)] of the skip that decoder block j pops, j = 0..11."""
    levels, level = [], 0
    for block in diffusion_model.input_blocks:
        if any(type(layer).__name__ == "Downsample" for layer in block):
            level += 1
        levels.append(level)
    h, w = latent_hw
    out = []
    for j, warp in enumerate(colorizer.unet_extras.warp_modules):
        lv = levels[len(levels) - 1 - j]
        out.append((math.ceil(h / 2 ** lv) * math.ceil(w / 2 ** lv), warp.norm1.normalized_shape[0]))
    return out


def build_inputs(ckpt, size: int, seed: int = 0) -> dict:
    """Conditioning tensors for one 1-image generation at size×size px (real encoders, random weights)."""
    from colorize_diffusion.model_patches.networks.v2_encoders import size_embedding

    col = ckpt.colorizer
    g = torch.Generator().manual_seed(seed)
    lat = size // 8
    dim = col.context_dim
    tokens = torch.randn(1, 256, dim, generator=g)
    bg_tokens = torch.randn(1, 256, dim, generator=g)
    sketch = -torch.ones(1, 3, size, size)
    sketch[:, :, size // 4: 3 * size // 4, size // 8: size // 2] = 1.0     # lines in the left half
    mask = torch.zeros(1, 1, lat, lat)
    mask[..., : lat // 2] = 1.0                                               # character = left half
    y = size_embedding((size, size), (size, size))
    with torch.no_grad():
        controls, blank = col.sketch_encoder.encode_with_blank(sketch)
        z = torch.randn(1, 4, lat, lat, generator=g)
        hs_bg = col.bg_encoder(z, tokens, y)
        style = col.style_encoder(z, tokens, y)
    return {"tokens": tokens, "bg_tokens": bg_tokens, "controls": controls, "blank": blank, "mask": mask,
            "hs_bg": hs_bg, "style": style, "latent": (1, 4, lat, lat)}


def mode_conditionings(colorizer, mode: str, inp: dict):
    from colorize_diffusion.model_patches.conditioning import guidance_conditionings
    from colorize_diffusion.model_patches.settings import attention_settings, level_reference_scales, mode_flags

    flags = mode_flags(MODES[mode], colorizer.family)
    settings = attention_settings(colorizer.family, flags, level_reference_scales(), 0.05)
    context = torch.cat([inp["tokens"], inp["bg_tokens"]], 1) if flags.split else inp["tokens"]
    return guidance_conditionings(context, settings, inp["controls"], inp["blank"],
                                  inp["mask"] if flags.split else None,
                                  inp["hs_bg"] if flags.background else None,
                                  inp["style"] if flags.style else None)


def plain_conditionings(tokens: int, dim: int, seed: int = 1):
    ctx = torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed))
    return [[ctx, {}]], [[torch.zeros_like(ctx), {}]], None


def run_rounds(variants: list, latent_shape, rounds: int, log=print) -> None:
    for v in variants:                       # warm-up: page in weights, allocator, caches
        out = v.step(latent_shape)
        if not torch.isfinite(out).all():
            raise RuntimeError(f"{v.name}: non-finite output")
        v.timer.times.clear()
    for r in range(rounds):
        t0 = time.perf_counter()
        for v in (variants if r % 2 == 0 else variants[::-1]):
            v.step(latent_shape, seed=r + 1)
        log(f"    round {r + 1}/{rounds}: " + ", ".join(f"{v.name} {v.timer.times[-1]:.2f}s" for v in variants)
            + f" ({time.perf_counter() - t0:.0f} s)")


def paired_ratio(a: Variant, b: Variant) -> float:
    return statistics.median(x / y for x, y in zip(a.timer.times, b.timer.times))


def count_unet_calls(model, variant_factory, latent_shape) -> list:
    """Batch sizes of the UNet calls one sampler step makes (checks that the 3 passes really are one batch)."""
    import comfy.patcher_extension

    sizes = []

    def wrapper(executor, x, *args, **kwargs):
        sizes.append(int(x.shape[0]))
        return executor(x, *args, **kwargs)

    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "bench_counter", wrapper)
    variant_factory(m).step(latent_shape)
    return sizes


def run(ckpt, size: int, rounds: int, dual_rounds: int, log=print) -> dict:
    from colorize_diffusion.model_patches.unet_patches import apply_colorizer

    col = ckpt.colorizer
    plain = ckpt.model
    patched = apply_colorizer(plain, col)
    inp = build_inputs(ckpt, size)
    latent = inp["latent"]
    results = {"size": size, "steps": {}}

    variants, pairs = [], {}
    base256 = Variant("base256", plain, *plain_conditionings(256, col.context_dim))
    base512 = Variant("base512", plain, *plain_conditionings(512, col.context_dim))
    variants += [base256, base512]
    for mode in MODES:
        pos, neg, sk = mode_conditionings(col, mode, inp)
        v = Variant(mode, patched, pos, neg, sk)
        variants.append(v)
        pairs[mode] = (v, base512 if mode in ("bg", "full") else base256)
    log(f"  per-step time at {size}x{size} (latent {latent[2]}x{latent[3]}), batch 1, {rounds} rounds")
    run_rounds(variants, latent, rounds, log)
    for mode, (v, b) in pairs.items():
        results["steps"][mode] = {"patched_s": statistics.median(v.timer.times),
                                  "baseline_s": statistics.median(b.timer.times), "ratio": paired_ratio(v, b)}
        r = results["steps"][mode]
        log(f"  {mode:8s} patched {r['patched_s']:.3f} s, unpatched {r['baseline_s']:.3f} s "
            f"(context {b.name[4:]} tokens) -> {r['ratio']:.3f}x")

    pos, neg, sk = mode_conditionings(col, "full", inp)
    sep_class = separate_guider_class()
    batched = Variant("batched", patched, pos, neg, sk, REF_SCALE, SKETCH_SCALE)
    separate = Variant("separate", patched, pos, neg, sk, REF_SCALE, SKETCH_SCALE, guider_class=sep_class)
    calls_b = count_unet_calls(patched, lambda m: Variant("x", m, pos, neg, sk, REF_SCALE, SKETCH_SCALE), latent)
    calls_s = count_unet_calls(patched, lambda m: Variant("x", m, pos, neg, sk, REF_SCALE, SKETCH_SCALE,
                                                          guider_class=sep_class), latent)
    log(f"  dual guidance (full mode, ref {REF_SCALE:g}, sketch {SKETCH_SCALE:g}): UNet batch sizes per step "
        f"batched {calls_b}, separate {calls_s}; {dual_rounds} rounds")
    run_rounds([batched, separate], latent, dual_rounds, log)
    ratio = paired_ratio(batched, separate)
    results["dual"] = {"batched_s": statistics.median(batched.timer.times),
                       "separate_s": statistics.median(separate.timer.times), "ratio": ratio,
                       "batch_sizes": {"batched": calls_b, "separate": calls_s}}
    log(f"  dual guidance: one 3-way batch {results['dual']['batched_s']:.3f} s, three passes "
        f"{results['dual']['separate_s']:.3f} s -> {ratio:.3f}x")
    return results
