"""Per-step UNet time of the patched model against the same UNet unpatched, and dual guidance batched vs separate.

One sampler step = one call of the sampler's model function (guider → calc_cond_batch → apply_model → UNet),
exactly what a KSampler step costs. Both sides go through the same guider code on the same ComfyUI model
(`LoadedCheckpoint.model`): the patched side is `apply_colorizer(model, colorizer)` with the pack's
conditioning, the baseline is the plain ModelPatcher with a plain context of the same token count
(256 for vanilla/style, 512 for the split modes). Attention is ComfyUI's `optimized_attention` on both sides
(the patches call the same function).

Timing: weights are copied into RAM first (see `materialize`), one untimed warm-up step, then rounds; each round
times every (patched, unpatched) pair back to back in alternating order, so both sides of a ratio see the same
machine load. A mode's figure is the median over rounds of patched / unpatched of the same round; the ratio of
the fastest steps, the ratio of process CPU times and (with --flops) the ratio of matmul/conv/attention FLOPs are
printed beside it. An A/A pair (the unpatched model against itself, timed the same way) shows the resolution of
the run: ratios that differ from 1 by less than its spread are not resolved. Denormal floats are flushed to
zero by the caller (random weights produce them; they cost 10-100x on x86).
"""
from __future__ import annotations

import math
import statistics
import time

import torch

MODES = {"vanilla": "vanilla", "bg": "background enhance", "style": "style enhance", "full": "full"}
TOKENS = {"vanilla": 256, "bg": 512, "style": 256, "full": 512}   # context tokens: reference (+ background)
SIGMA = 2.5            # a mid-schedule step (t ≈ 600)
REF_SCALE, SKETCH_SCALE = 4.0, 2.5   # dual guidance: [c, u_ref, u_sk]


class Timer:
    """A KSAMPLER sample function that evaluates the model once and records the wall time of that call."""

    def __init__(self):
        self.times = []       # wall seconds
        self.cpu = []         # CPU seconds of this process (all threads)

    def __call__(self, model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        s = x.new_ones([x.shape[0]]) * float(sigmas[0])
        t0, c0 = time.perf_counter(), time.process_time()
        out = model_k(x, s, **(extra_args or {}))
        self.times.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        self.last = out
        return out


def separate_guider_class():
    """Our dual-guidance guider, but each active pass in its own UNet call (the comparison point)."""
    import comfy.samplers

    from colorize_diffusion.model_patches.colorize_diffusion import guidance

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
        from colorize_diffusion.model_patches.colorize_diffusion import guidance

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
        with torch.inference_mode():                 # as ComfyUI's executor runs every node
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
    from colorize_diffusion.model_patches.colorize_diffusion.networks.v2_encoders import size_embedding

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
        controls, blank = col.encoders.sketch_encoder.encode_with_blank(sketch)
        z = torch.randn(1, 4, lat, lat, generator=g)
        hs_bg = col.encoders.bg_encoder(z, tokens, y)
        style = col.encoders.style_encoder(z, tokens, y)
    return {"tokens": tokens, "bg_tokens": bg_tokens, "controls": controls, "blank": blank, "mask": mask,
            "hs_bg": hs_bg, "style": style, "latent": (1, 4, lat, lat)}


def mode_conditionings(colorizer, mode: str, inp: dict):
    from colorize_diffusion.model_patches.colorize_diffusion.conditioning import guidance_conditionings
    from colorize_diffusion.model_patches.colorize_diffusion.modes import official_mode
    from colorize_diffusion.model_patches.colorize_diffusion.settings import attention_settings, level_reference_scales

    flags = official_mode(MODES[mode], colorizer.family)
    settings = attention_settings(colorizer.family, flags, level_reference_scales(), 0.05)
    context = torch.cat([inp["tokens"], inp["bg_tokens"]], 1) if flags.split else inp["tokens"]
    return guidance_conditionings(context, settings, inp["controls"], inp["blank"],
                                  inp["mask"] if flags.split else None,
                                  inp["hs_bg"] if flags.background else None,
                                  inp["style"] if flags.style else None)


def injection_cost(patched, colorizer, inp: dict, rounds: int, log=print, flops: bool = False) -> dict:
    """Attention injection (reference guidance 4, so the reference-unconditional rows take the fidelity blend)
    against the same vanilla step without it: the price of its write pass."""
    from colorize_diffusion.model_patches.colorize_diffusion.injection import (AttentionInjection, InjectionSettings,
                                                                               SeededNoise, alphas_cumprod,
                                                                               apply_injection)

    latent = inp["latent"]
    reference_latent = torch.randn(latent, generator=torch.Generator().manual_seed(7))   # stands for the VAE latent
    injection = AttentionInjection(reference_latent, None, InjectionSettings(), alphas_cumprod(patched),
                                   SeededNoise(0))
    pos, neg, sk = mode_conditionings(colorizer, "vanilla", inp)
    injected = Variant("injected", apply_injection(patched, injection), pos, neg, sk, REF_SCALE)
    vanilla = Variant("vanilla", patched, pos, neg, sk, REF_SCALE)
    log(f"  attention injection on the vanilla step (reference guidance {REF_SCALE:g}), {rounds} rounds")
    run_rounds([(injected, vanilla)], latent, rounds, log, flops)
    r = {"injected_s": statistics.median(injected.timer.times), "vanilla_s": statistics.median(vanilla.timer.times),
         "ratio": paired_ratio(injected, vanilla), "spread": spread(injected, vanilla)}
    log(f"  injection: {r['injected_s']:.2f} s per step, without {r['vanilla_s']:.2f} s -> {r['ratio']:.3f}x "
        f"(rounds {r['spread']}; one extra UNet pass per step)")
    return r


def plain_conditionings(tokens: int, dim: int, seed: int = 1):
    ctx = torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed))
    return [[ctx, {}]], [[torch.zeros_like(ctx), {}]], None


def run_rounds(pairs: list, latent_shape, rounds: int, log=print, flops: bool = False) -> None:
    """One untimed warm-up call of every variant, then `rounds` rounds.

    A round times each (patched, baseline) pair back to back, alternating which of the two goes first and the
    order of the pairs, so that the two sides of a ratio see the same machine load as far as possible.
    With `flops`, the warm-up call runs under torch's FlopCounterMode (matmul/conv/attention FLOPs;
    deterministic, slower than a plain step)."""
    from torch.utils.flop_counter import FlopCounterMode

    for v in {id(v): v for pair in pairs for v in pair}.values():
        v.flops = v.batch_sizes = None
        if flops:
            with FlopCounterMode(display=False) as fc:
                v.step(latent_shape)
            v.flops = fc.get_total_flops()
        else:
            v.step(latent_shape)
        v.timer.times.clear()
        v.timer.cpu.clear()
    for r in range(rounds):
        t0 = time.perf_counter()
        for a, b in (pairs if r % 2 == 0 else pairs[::-1]):
            for v in ((b, a) if r % 2 == 0 else (a, b)):
                rec = getattr(v, "recorder", None)
                if rec is not None:
                    rec.sizes.clear()
                out = v.step(latent_shape, seed=r + 1)
                if rec is not None and v.batch_sizes is None:
                    v.batch_sizes = list(rec.sizes)
                if not torch.isfinite(out).all():
                    raise RuntimeError(f"{v.name}: non-finite output")
        log(f"    round {r + 1}/{rounds}: " + ", ".join(
            f"{a.name} {a.timer.times[-1]:.2f}s/{b.timer.times[-1]:.2f}s" for a, b in pairs)
            + f" ({time.perf_counter() - t0:.0f} s)")


def paired_ratio(a: Variant, b: Variant, cpu: bool = False) -> float:
    ta, tb = (a.timer.cpu, b.timer.cpu) if cpu else (a.timer.times, b.timer.times)
    return statistics.median(x / y for x, y in zip(ta, tb))


def spread(a: Variant, b: Variant) -> str:
    r = sorted(x / y for x, y in zip(a.timer.times, b.timer.times))
    return f"{r[0]:.3f}-{r[-1]:.3f}"


def load_average() -> str:
    import os

    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


class BatchRecorder:
    """DIFFUSION_MODEL wrapper recording the batch size of every UNet call (is the 3-way batch one call?)."""

    def __init__(self):
        self.sizes = []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, *args, **kwargs):
        self.sizes.append(int(x.shape[0]))
        return executor(x, *args, **kwargs)


def with_recorder(model):
    import comfy.patcher_extension

    m = model.clone()
    rec = BatchRecorder()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "bench_batch_recorder", rec)
    return m, rec


def materialize(*modules) -> int:
    """Copy every weight into anonymous memory; returns the bytes copied.

    The pack's loader leaves the weights as copy-on-write views of the mmap'd file until first written, so the
    kernel may drop them like page cache when idle (this VM runs a DAMON pageout scheme) and a later step would
    re-read them from disk. Timings must not depend on that: both sides share these (then resident) weights.
    """
    n = 0
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            t.data = t.data.clone()
            n += t.numel() * t.element_size()
    return n


def run(ckpt, size: int, rounds: int, dual_rounds: int, log=print, flops: bool = False) -> dict:
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import apply_colorizer

    col = ckpt.colorizer
    plain = ckpt.model
    materialize(plain.model, col.unet_extras)
    patched = apply_colorizer(plain, col)
    inp = build_inputs(ckpt, size)
    latent = inp["latent"]
    results = {"size": size, "steps": {}}

    pairs = {}
    for mode in MODES:
        pos, neg, sk = mode_conditionings(col, mode, inp)
        pairs[mode] = (Variant(mode, patched, pos, neg, sk),
                       Variant(f"unpatched{TOKENS[mode]}", plain, *plain_conditionings(TOKENS[mode], col.context_dim)))
    # A/A: the same unpatched step against itself (another context of the same size): the run's resolution.
    pairs["a/a"] = (Variant("unpatched256'", plain, *plain_conditionings(256, col.context_dim, seed=2)),
                    Variant("unpatched256", plain, *plain_conditionings(256, col.context_dim)))
    log(f"  per-step time at {size}x{size} (latent {latent[2]}x{latent[3]}), batch 1, {rounds} rounds "
        f"(patched/unpatched per mode, then unpatched/unpatched); {load_average()}")
    run_rounds(list(pairs.values()), latent, rounds, log, flops)
    for mode, (v, b) in pairs.items():
        r = {"patched_s": statistics.median(v.timer.times), "baseline_s": statistics.median(b.timer.times),
             "ratio": paired_ratio(v, b), "cpu_ratio": paired_ratio(v, b, cpu=True), "spread": spread(v, b),
             "min_ratio": min(v.timer.times) / min(b.timer.times),
             "flop_ratio": v.flops / b.flops if flops else None}
        if mode in MODES:
            results["steps"][mode] = r
        else:
            results["noise"] = r
        log(f"  {mode:8s} {'patched' if mode in MODES else 'unpatched'} {r['patched_s']:.2f} s, unpatched "
            f"{r['baseline_s']:.2f} s (context {b.name[9:]} tokens) -> {r['ratio']:.3f}x (rounds {r['spread']}; "
            f"CPU time {r['cpu_ratio']:.3f}x; ratio of fastest {r['min_ratio']:.3f}x)"
            + (f"; FLOPs {v.flops / 1e9:.0f} G vs {b.flops / 1e9:.0f} G = {r['flop_ratio']:.3f}x" if flops else ""))
    log(f"  resolution of this run: the unpatched step against itself spreads {results['noise']['spread']} over "
        f"rounds; {load_average()}")
    results["fastest_unpatched_s"] = {}       # context tokens -> fastest unpatched step over every round
    for mode, (_, b) in pairs.items():
        n = TOKENS.get(mode, 256)
        results["fastest_unpatched_s"][n] = min(results["fastest_unpatched_s"].get(n, float("inf")), *b.timer.times)

    results["injection"] = injection_cost(patched, col, inp, dual_rounds, log, flops)

    pos, neg, sk = mode_conditionings(col, "full", inp)
    counted, recorder = with_recorder(patched)
    batched = Variant("batched", counted, pos, neg, sk, REF_SCALE, SKETCH_SCALE)
    separate = Variant("separate", counted, pos, neg, sk, REF_SCALE, SKETCH_SCALE,
                       guider_class=separate_guider_class())
    batched.recorder = separate.recorder = recorder
    # The same comparison on the unpatched model with three plain contexts: what batching itself costs or saves
    # on this device, whatever the patches do.
    plain_counted, plain_recorder = with_recorder(plain)
    plain_conds = (*plain_conditionings(512, col.context_dim)[:2], plain_conditionings(512, col.context_dim, 3)[0])
    plain_batched = Variant("unpatched batched", plain_counted, *plain_conds, REF_SCALE, SKETCH_SCALE)
    plain_separate = Variant("unpatched separate", plain_counted, *plain_conds, REF_SCALE, SKETCH_SCALE,
                             guider_class=separate_guider_class())
    plain_batched.recorder = plain_separate.recorder = plain_recorder
    log(f"  dual guidance (full mode, ref {REF_SCALE:g}, sketch {SKETCH_SCALE:g}), {dual_rounds} rounds; "
        "then the unpatched model with three 512-token contexts")
    run_rounds([(batched, separate), (plain_batched, plain_separate)], latent, dual_rounds, log, flops)
    calls_b, calls_s = batched.batch_sizes, separate.batch_sizes
    log(f"  UNet calls per sampler step (batch sizes): batched {calls_b}, separate {calls_s}")
    for key, (b3, s3) in (("dual", (batched, separate)), ("dual_unpatched", (plain_batched, plain_separate))):
        results[key] = {"batched_s": statistics.median(b3.timer.times),
                        "separate_s": statistics.median(s3.timer.times), "ratio": paired_ratio(b3, s3),
                        "spread": spread(b3, s3), "min_ratio": min(b3.timer.times) / min(s3.timer.times),
                        "batch_sizes": {"batched": b3.batch_sizes, "separate": s3.batch_sizes}}
        r = results[key]
        log(f"  {'dual guidance' if key == 'dual' else 'same, unpatched'}: one 3-way batch {r['batched_s']:.2f} s, "
            f"three passes {r['separate_s']:.2f} s -> {r['ratio']:.3f}x (rounds {r['spread']})"
            + (f"; FLOPs {b3.flops / 1e9:.0f} G vs {s3.flops / 1e9:.0f} G" if flops else ""))
    log(f"  {load_average()}")
    return results
