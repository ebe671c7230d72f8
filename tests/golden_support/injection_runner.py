"""Level F: levels C/E with attention injection, through the pack's injection patch on the patched model.

The case gives the reference latent (`z_inject`) and the noise of each injected evaluation (`inject_noise.k`);
everything else is computed by the pack. The intermediates are read from the injection's public methods and from
the write passes (wrapped for the run): the noised reference per injected evaluation, the write pass's sketch
residuals and raw output, and the banks of the first one, whose rows are put in the official pass order
(c, u_ref, u_sk). The same maths serves the SD2.1 families (`run`) and XL (`run_injected`, called by xl_runner with
its own loader, conditions and sampler).
"""
from __future__ import annotations

import torch

from colorize_diffusion.model_patches.colorize_diffusion import injection as inj
from colorize_diffusion.model_patches.colorize_diffusion.step_data import STEP_KEY
from colorize_diffusion.preprocess.reference import resize_like_app

from . import unet_runner
from .model_eval import RawRecorder, guided_step, listed, loaded, param


class ReadPassRecorder(RawRecorder):
    """Raw outputs of the read passes; the write passes (run through the same wrappers first) are kept apart:
    their raw output and sketch residuals, rows in the official pass order."""

    def __init__(self):
        super().__init__()
        self.writes, self.write_controls = [], []

    def __call__(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        if transformer_options.get(inj.INJECT_KEY, {}).get("mode") != "write":
            return super().__call__(executor, x, timesteps, context, y, control, transformer_options, **kwargs)
        out = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        order = transformer_options["cond_or_uncond"]
        self.writes.append(official_rows(out, order))
        if not self.write_controls:
            controls = transformer_options[STEP_KEY].controls or []
            self.write_controls = [official_rows(c, order) for c in controls]
        return out


def official_rows(t: torch.Tensor, order) -> torch.Tensor:
    """Rows of a call (one chunk per pass, in the call's `cond_or_uncond` order) in the official pass order
    (the guider's pass indices follow c, u_ref, u_sk)."""
    chunks = t.chunk(len(order))
    return torch.cat([chunks[i] for i in sorted(range(len(order)), key=lambda i: order[i])])


def run(case, inputs, case_dir, root):
    """The SD2.1 families' level F."""
    ckpt = loaded(str(root / case["checkpoint"]), case["prediction_type"])
    conds = unet_runner._conds(case, inputs, ckpt.colorizer)
    return run_injected(case, inputs, ckpt, unet_runner._apply(ckpt), conds, unet_runner._run_sampling)


def injection_settings(case) -> inj.InjectionSettings:
    return inj.InjectionSettings(param(case, "Injection fidelity (reference)", 0.5),
                                 param(case, "Injection fidelity (sketch)", 0.0),
                                 param(case, "Injection start step", 0.0))


def generation_size(case, inputs) -> tuple[int, int]:
    """The generation size in pixels (Height/Width), which the reference is squash-resized to."""
    h, w = param(case, "Height"), param(case, "Width")
    if h is None or w is None:
        latent = inputs["x_t"] if "x_t" in inputs else inputs["noise"]
        return latent.shape[-2] * 8, latent.shape[-1] * 8
    return int(h), int(w)


def run_injected(case, inputs, ckpt, model, conds, sampling):
    """One guided evaluation (x_t) or a DDIM run (noise, through `sampling`) of `model` (the colorizer's patched
    MODEL) with the injection the case's sliders describe, and the intermediates the case compares."""
    settings = injection_settings(case)
    h, w = generation_size(case, inputs)
    hook_xr = resize_like_app(inputs["reference_image"][None], h, w)
    noises = listed(inputs, "inject_noise") or []
    injection = inj.AttentionInjection(
        inputs["z_inject"], inj.write_controls(ckpt.colorizer, hook_xr, settings.sketch_fidelity), settings,
        inj.alphas_cumprod(ckpt.model), noise=lambda k, shape: noises[k])
    seen = _observe(injection)
    if param(case, "Attention injection", True):
        model = inj.apply_injection(model, injection)
    pos, neg, sk = conds
    recorder = ReadPassRecorder()
    if "noise" in inputs:
        got = sampling(case, inputs, model, pos, neg, sk, recorder=recorder)
    else:
        gs_ref, gs_sk = param(case, "Reference guidance scale"), param(case, "Sketch guidance scale")
        rec, guided, _ = guided_step(model, pos, neg, sk, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]],
                                     gs_ref, gs_sk, case["prediction_type"], recorder=recorder)
        got = {"guided": guided[0]}
        for position, name in enumerate(case["passes"]):
            got[f"raw.{name}"] = rec.calls[0][position]
    _check_recorded_injection(case, inputs, settings, seen)
    got["pre.hook_xr"] = hook_xr
    got["inject.t"] = torch.tensor(seen["t"], dtype=torch.int64)
    # every row of the UNet batch gets the same noised reference and write-pass residuals: a case stores all of
    # them (SD2.1) or one (XL), as its expected shapes say
    for k, x in enumerate(seen["x_ref"]):
        got[f"inject.{k}.x_ref_noised"] = _rows_as_expected(case, f"inject.{k}.x_ref_noised", x)
    got.update({f"inject.{k}.write_out": out for k, out in enumerate(recorder.writes)})
    for k, c in enumerate(recorder.write_controls):
        got[f"inject.control.{k}"] = _rows_as_expected(case, f"inject.control.{k}", c)
    keys = [inj._block_key({"block": k[:2], "block_index": k[2]}) for k in _block_keys(ckpt)]
    for j, key in enumerate(keys):
        if seen["banks"] and key in seen["banks"]:
            got[f"inject.bank.{j}"] = official_rows(seen["banks"][key], seen["order"])
    return got


def _field(record: dict, name: str):
    """A field of the case's injection record, whose keys may carry a parenthesised gloss."""
    key = next(k for k in record if k == name or k.startswith(name + " ("))
    return record[key]


def _check_recorded_injection(case, inputs, settings, seen):
    """The case's record of the official injection (its settings, the steps it acted on, its UNet batch) agrees
    with what this run did: every field is read, none is taken on trust."""
    latent = inputs["x_t"] if "x_t" in inputs else inputs["noise"]
    gs_ref = param(case, "Reference guidance scale")
    if "injection" in case:
        rec = case["injection"]
        assert abs(_field(rec, "style_cfg") - settings.reference_fidelity) < 1e-9
        assert abs(_field(rec, "control_cfg") - settings.sketch_fidelity) < 1e-9
        assert abs(_field(rec, "start_step") - settings.start) < 1e-9
        assert list(_field(rec, "active_timesteps")) == seen["t"], (rec, seen["t"])
        assert _field(rec, "bank_stored_for_timestep") == (seen["t"][0] if seen["t"] else None)
        assert _field(rec, "unet_batch") == seen["x_ref"][0].shape[0]
        b = latent.shape[0]
        assert list(_field(rec, "gr_indice")) == (list(range(b, 2 * b)) if gs_ref > 1 else [])
        if any(k.startswith("bank_blocks") for k in rec):
            stored = len(seen["banks"] or {})       # the blocks whose banks the case keeps: each one was written
            assert all(0 <= j < stored for j in _field(rec, "bank_blocks")), (stored, _field(rec, "bank_blocks"))
    if "injection_settings" in case:                       # the XL format's copy of the sliders and the run
        cfg = case["injection_settings"]
        assert (cfg["f_r"], cfg["f_s"], cfg["start"]) == (settings.reference_fidelity, settings.sketch_fidelity,
                                                          settings.start)
        assert list(cfg["gs"]) == [gs_ref, param(case, "Sketch guidance scale")]
        assert cfg["batch"] == latent.shape[0] == param(case, "Batch size", latent.shape[0])
        ts = [e["t"] if isinstance(e, dict) else e for e in case["timesteps"]]
        assert cfg["steps"] in (None, len(ts)) and (cfg["t"] is None or cfg["t"] == ts[0])
        assert list(cfg["active_timesteps"]) == seen["t"]
        assert tuple(cfg["reference_image_hw"]) in (tuple(inputs["reference_image"].shape[:2]),
                                                    tuple(inputs["reference_image"].shape[-2:]))


def _rows_as_expected(case, key, t):
    spec = case.get("expected", {}).get(key)
    return t[:spec["shape"][0]] if spec else t


def _block_keys(ckpt):
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import attn2_patch_key, transformer_blocks

    return [attn2_patch_key(path) for _, path, _ in transformer_blocks(ckpt.model.model.diffusion_model)]


def _observe(injection):
    """Wrap the injection's public methods to keep what the case compares."""
    seen = {"t": [], "x_ref": [], "banks": None, "order": None}
    noised, patch = injection.noised_reference, injection.attn1_patch

    def noised_reference(timesteps, rows, like):
        x = noised(timesteps, rows, like)
        seen["t"].append(int(round(float(timesteps.reshape(-1)[0]))))
        seen["x_ref"].append(x)
        return x

    def attn1_patch(n, context, value, extra_options):
        state = extra_options.get(inj.INJECT_KEY)
        if state is not None and state["mode"] == "write" and len(seen["t"]) == 1:
            if seen["banks"] is None:
                seen["banks"], seen["order"] = {}, list(extra_options["cond_or_uncond"])
            seen["banks"][inj._block_key(extra_options)] = n
        return patch(n, context, value, extra_options)

    injection.noised_reference, injection.attn1_patch = noised_reference, attn1_patch
    return seen
