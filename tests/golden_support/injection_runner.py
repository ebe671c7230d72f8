"""Level F: levels C/E with attention injection, through the pack's injection patch on the patched model.

The case gives the reference latent (`z_inject`) and the noise of each injected evaluation (`inject_noise.k`);
everything else is computed by the pack. The intermediates are read from the injection's public methods
(wrapped for the run): the noised reference per injected evaluation and the banks of the first one, whose rows
are put in the official pass order (c, u_ref, u_sk).
"""
from __future__ import annotations

import torch

from colorize_diffusion.model_patches import injection as inj
from colorize_diffusion.preprocess.reference import resize_like_app

from . import unet_runner
from .model_eval import RawRecorder, guided_step, loaded, param


class ReadPassRecorder(RawRecorder):
    """Raw outputs of the read passes only (the write pass runs the same wrappers first)."""

    def __call__(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        if transformer_options.get(inj.INJECT_KEY, {}).get("mode") == "write":
            return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        return super().__call__(executor, x, timesteps, context, y, control, transformer_options, **kwargs)


def run(case, inputs, case_dir, root):
    ckpt = loaded(str(root / case["checkpoint"]), case["prediction_type"])
    spec = case["injection"]
    settings = inj.InjectionSettings(spec["style_cfg (Injection fidelity (reference))"],
                                     spec["control_cfg (Injection fidelity (sketch))"], spec["start_step"])
    h, w = (s * 8 for s in inputs["mask"].shape[-2:])
    hook_xr = resize_like_app(inputs["reference_image"][None], h, w)
    noises = [inputs[f"inject_noise.{k}"] for k in range(len(spec["active_timesteps"]))]
    injection = inj.AttentionInjection(
        inputs["z_inject"], inj.write_controls(ckpt.colorizer, hook_xr, settings.sketch_fidelity), settings,
        inj.alphas_cumprod(ckpt.model), noise=lambda k, shape: noises[k])
    seen = _observe(injection)
    model = inj.apply_injection(unet_runner._apply(ckpt), injection)
    pos, neg, sk = unet_runner._conds(case, inputs, ckpt.colorizer)
    recorder = ReadPassRecorder()
    if case["level"] == "F" and "noise" in inputs:
        got = unet_runner._run_sampling(case, inputs, model, pos, neg, sk, recorder=recorder)
    else:
        gs_ref, gs_sk = param(case, "Reference guidance scale"), param(case, "Sketch guidance scale")
        rec, guided, _ = guided_step(model, pos, neg, sk, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]],
                                     gs_ref, gs_sk, case["prediction_type"], recorder=recorder)
        got = {"guided": guided[0]}
        for position, name in enumerate(case["passes"]):
            got[f"raw.{name}"] = rec.calls[0][position]
    got["pre.hook_xr"] = hook_xr
    got["inject.t"] = torch.tensor(seen["t"], dtype=torch.int64)
    got.update({f"inject.{k}.x_ref_noised": x for k, x in enumerate(seen["x_ref"])})
    if injection.write_controls is not None:
        rows = seen["x_ref"][0].shape[0]
        got.update({f"inject.control.{k}": c.expand(rows, -1, -1, -1) for k, c in enumerate(injection.write_controls)})
    order = sorted(range(len(seen["order"])), key=lambda i: seen["order"][i])
    keys = [inj._block_key({"block": k[:2], "block_index": k[2]}) for k in _block_keys(ckpt)]
    for j, key in enumerate(keys):
        bank = seen["banks"][key]
        chunks = bank.chunk(len(order))
        got[f"inject.bank.{j}"] = torch.cat([chunks[i] for i in order])
    return got


def _block_keys(ckpt):
    from colorize_diffusion.model_patches.unet_patches import attn2_patch_key, transformer_blocks

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
