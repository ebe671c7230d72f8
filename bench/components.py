"""What a patched step adds over the unpatched one, timed part by part: a low-noise estimate of the step ratios.

On a shared machine a whole step varies by ±10 % from round to round (see the A/A pair of step_time), far more
than the 2-3 % targets of the vanilla and style modes. Everything outside the pack's patches runs the same code
on the same shapes on both sides, so the difference between a patched and an unpatched step is the difference
between the parts the pack adds or replaces. This module records, during one real patched step per mode, every
call of those parts with its inputs, then times each call in isolation (fastest of `reps`, which filters out
the neighbours' load), together with what the unpatched model runs in its place:

* each attn2 layer: the pack's SplitCrossAttention vs the original layer on a plain context of the baseline's
  token count (256, or 512 for the split modes);
* the input block patch (sketch residuals), the output block patch (v2 warp and style FiLM), the styled
  `out` head, the time-embedding patch: vs nothing (the head: vs the original head).

The pack's parts are timed as the recorded sequence replayed with the step data's caches emptied (so the mask
resizing and token selections are included, once per UNet call as in a step); each call is also timed alone
for the breakdown by part.

estimate = 1 + (the pack's parts - the sum of what they replace) / fastest unpatched step.
"""
from __future__ import annotations

import contextlib
import time

import torch

from .step_time import MODES, TOKENS, Variant, build_inputs, mode_conditionings, plain_conditionings


class Recorder:
    """Class-level wrappers that record (label, object, function, inputs, step data) for every call."""

    def __init__(self):
        self.calls = []
        self.active = False
        self._undo = []

    def wrap(self, cls, name: str, label: str):
        from colorize_diffusion.model_patches.colorize_diffusion.step_data import CURRENT_STEP

        original = getattr(cls, name)
        recorder = self

        def wrapper(obj, *args, **kwargs):
            if recorder.active:
                recorder.calls.append((label, obj, original, tuple(_clone(a) for a in args),
                                       {k: _clone(v) for k, v in kwargs.items()}, CURRENT_STEP.get()))
            return original(obj, *args, **kwargs)

        setattr(cls, name, wrapper)
        self._undo.append((cls, name, original))

    def restore(self):
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)


def _clone(v):
    """Inputs as they were at the call (ComfyUI updates transformer_options in place from block to block)."""
    if isinstance(v, torch.Tensor):
        return v.clone()
    if isinstance(v, dict):
        return dict(v)
    return v


@contextlib.contextmanager
def current_step(step):
    """The step data the StyledOutput head reads, as during the recorded UNet call."""
    from colorize_diffusion.model_patches.colorize_diffusion.step_data import CURRENT_STEP

    token = CURRENT_STEP.set(step)
    try:
        yield
    finally:
        CURRENT_STEP.reset(token)


def fastest(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(ckpt, size: int, baseline_s: dict | None = None, reps: int = 5, log=print) -> dict:
    """Call after step_time.run (which copies the weights into RAM); `baseline_s` {tokens: fastest unpatched step
    in seconds} from its rounds (else two steps are timed here)."""
    from colorize_diffusion.model_patches.colorize_diffusion.split_attention import SplitCrossAttention
    from colorize_diffusion.model_patches.colorize_diffusion.step_data import STEP_KEY
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import (ColorizerUNetPatch, StyledOutput,
                                                                                  apply_colorizer)

    col, plain = ckpt.colorizer, ckpt.model
    rec = Recorder()
    try:
        rec.wrap(SplitCrossAttention, "forward", "attn2")
        for name in ("input_block_patch", "output_block_patch", "emb_patch"):
            rec.wrap(ColorizerUNetPatch, name, name)
        rec.wrap(StyledOutput, "forward", "styled_out")
        patched = apply_colorizer(plain, col)        # registers the (wrapped) bound methods
    except BaseException:
        rec.restore()
        raise

    inputs = build_inputs(ckpt, size)
    latent = inputs["latent"]
    results = {}
    try:
        with torch.inference_mode():
            base_step = dict(baseline_s or {})
            for n in {256, 512} - set(base_step):
                unpatched = Variant(f"unpatched{n}", plain, *plain_conditionings(n, col.context_dim))
                base_step[n] = fastest(lambda v=unpatched: v.step(latent), 2)
            for mode in MODES:
                tokens = TOKENS[mode]
                rec.calls.clear()
                rec.active = True
                Variant(mode, patched, *mode_conditionings(col, mode, inputs)).step(latent)
                rec.active = False
                calls = list(rec.calls)
                # The whole recorded sequence, with the step's caches emptied first: the mask resizing and token
                # selections are computed once per UNet call in the first block that needs them, as in a step.
                steps = {id(c[-1]): c[-1] for c in calls if c[-1] is not None}.values()

                def replay():
                    for step in steps:
                        step._mask_cache.clear()
                    for _, obj, original, args, kwargs, step in calls:
                        with current_step(step):
                            original(obj, *args, **kwargs)

                ours = fastest(replay, reps)
                theirs = 0.0
                parts: dict[str, float] = {}
                for label, obj, original, args, kwargs, step in calls:
                    with current_step(step):
                        t = fastest(lambda: original(obj, *args, **kwargs), reps)   # caches filled: compute only
                        if label == "attn2":
                            x, options = args[0], kwargs.get("transformer_options", {})
                            context = torch.randn(x.shape[0], tokens, col.context_dim, dtype=x.dtype, device=x.device)
                            plain_options = {k: v for k, v in options.items() if k != STEP_KEY}
                            t_orig = fastest(lambda: obj._wrapped[0](x, context=context,
                                                                    transformer_options=plain_options), reps)
                        elif label == "styled_out":
                            t_orig = fastest(lambda: torch.nn.Sequential.forward(obj, *args), reps)
                        else:
                            t_orig = 0.0
                    theirs += t_orig
                    parts[label] = parts.get(label, 0.0) + t - t_orig
                # In sequence, not alone: colder CPU caches, plus the mask resizing and token selections.
                parts["in sequence"] = ours - theirs - sum(parts.values())
                estimate = 1 + (ours - theirs) / base_step[tokens]
                results[mode] = {"estimate": estimate, "parts_s": parts, "baseline_step_s": base_step[tokens]}
                log(f"  {mode:8s} {estimate:.3f}x: the pack's parts {ours:.3f} s in place of {theirs:.3f} s, fastest "
                    f"unpatched step ({tokens} tokens) {base_step[tokens]:.2f} s; extra by part: "
                    + ", ".join(f"{k} {v * 1e3:+.0f} ms" for k, v in parts.items()))
    finally:
        rec.restore()
    return results

