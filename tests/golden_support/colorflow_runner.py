"""ColorFlow colorizer cases (a golden root laid out like ../shared/golden_colorflow: `models/` with the bases in
diffusers layout and the ColorFlow folders in the released layout, `cases/`): run through the pack's loaders and
ComfyUI's own models. The case kind is read from its format: a `multires_file` is a guided super-resolution case;
the other kinds are listed in UNPORTED until their part of the port lands."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

# case formats whose port is not there yet: the expected key that identifies the format -> what is missing
UNPORTED = {
}
SCALE = 0.18215                              # the VAE's scaling factor (its config.json)
FAMILIES = ("pixart", "sd", "sd15")          # the ColorFlow bases (the other golden sets use v1..xlv2, clip)


def is_colorflow_case(case: dict) -> bool:
    return case.get("family") in FAMILIES


def vae(root: Path):
    """The pipelines' VAE (the PixArt pipeline's, which the SD1.5 cases share) as ComfyUI's VAE."""
    from colorize_diffusion.model_patches.colorflow.diffusers_bases import load_vae_folder

    return load_vae_folder(str(root / "models" / "pixart_base" / "vae"))


def run_super_resolution(case: dict, inputs: dict, root: Path) -> dict:
    from colorize_diffusion.model_patches.colorflow import super_resolution as gsrp

    net = gsrp.load_network(str(root / case["multires_file"]))
    assert list(net.channels) == [int(c) for c in case["multires_channels"]], (net.channels, case["multires_channels"])
    first_stage = vae(root).first_stage_model
    with torch.no_grad():
        r = gsrp.super_resolve(first_stage, net, inputs["test_low_color"], inputs["query_image_vae"],
                               inputs["posterior_eps"], batch_statistics="train" in case["batchnorm_mode"])
    got = {"output": r.output, "decoded_unclamped": r.decoded, "z": r.latent}
    for i in range(len(r.maps)):
        got[f"hidden_color.{i}"] = r.colour_features[i]
        got[f"hidden_bw.{i}"] = r.page_features[i]
        got[f"multires.{i}"] = r.maps[i]
    return got


def run_conditioning(case: dict, inputs: dict, root: Path) -> dict:
    """Canvas and mask pictures (batch 1) -> the guider's input latents of the CFG pair [uncond, cond]."""
    from colorize_diffusion.model_patches.colorflow import conditioning as cond

    family = "pixart" if "conditioning_latents" in case["expected"] else "sd15"
    folder_of(case, family)          # the Input Style picks the pipeline whose conditioning this is
    canvas = inputs["canvas_hwc"][None].expand(2, -1, -1, -1)
    mask = inputs["mask_hwc"][None].expand(2, -1, -1, -1)
    eps = [inputs["vae_eps_A"], inputs["vae_eps_B"]] if family == "pixart" else [inputs["vae_eps"]]
    with torch.no_grad():
        latents, stats = cond.guider_latents(family, vae(root).first_stage_model, canvas, mask, eps, SCALE)
    if family == "pixart":
        return {"conditioning_latents": latents, "vae_mean_A": stats["A"][0], "vae_std_A": stats["A"][1],
                "vae_mean_B": stats["B"][0], "vae_std_B": stats["B"][1]}
    return {"colorguider_cond": latents, "vae_mean": stats["canvas"][0], "vae_std": stats["canvas"][1]}


# the released ColorFlow folder each Input Style loads (app.py), and the base it runs on
STYLE_FOLDERS = {"Sketch": "sketch", "Sketch_Shading": "shading", "GrayImage(ScreenStyle)": "GraySD"}
FOLDER_FAMILY = {"sketch": "pixart", "shading": "pixart", "GraySD": "sd15"}
DEFAULT_FOLDER = {"pixart": "sketch", "sd15": "GraySD"}     # cases with no Input Style (the LoRA merge cases)


def folder_of(case: dict, family: str) -> str:
    """The ColorFlow folder of the case's Input Style; it must hold a colorizer of the case's base."""
    style = case.get("input_style")
    if style is None:
        return DEFAULT_FOLDER[family]
    assert style in STYLE_FOLDERS, f"Input Style {style!r}: not one of {list(STYLE_FOLDERS)}"
    name = STYLE_FOLDERS[style]
    assert FOLDER_FAMILY[name] == family, f"Input Style {style} loads {name}/, a {FOLDER_FAMILY[name]} colorizer"
    return name


def sd15_lora(root: Path, model, name: str = "GraySD"):
    from colorize_diffusion.model_patches.colorflow import files

    folder = files.read_folder(str(root / "models" / "colorflow" / name))
    return files.lora_weight_patches(folder.lora, files.sd_lora_key_map(model.model),
                                     model.model.state_dict())


def merged_weights(patcher, patches: dict) -> dict:
    """The model's weights with `patches` applied by ComfyUI (as it does when it loads the model)."""
    import comfy.model_management

    m = patcher.clone()
    m.add_patches(patches, 1.0)
    comfy.model_management.load_models_gpu([m], force_full_load=True)
    try:
        return {k: v.detach().to("cpu", copy=True) for k, v in weights_in_use(m.model).items()}
    finally:
        m.unpatch_model()


def weights_in_use(model) -> dict:
    """`model.state_dict()` as the loaded model computes with it: the layers current ComfyUI's dynamic patcher stages
    apply their patches when each forward casts them (`<param>_function`)."""
    import comfy.ops

    sd = model.state_dict()
    for path, m in model.named_modules():
        if getattr(m, "weight_function", None) or getattr(m, "bias_function", None):
            weight, bias = comfy.ops.cast_bias_weight(m, dtype=m.weight.dtype, device=m.weight.device,
                                                      bias_dtype=None if m.bias is None else m.bias.dtype)
            prefix = f"{path}." if path else ""
            sd[prefix + "weight"] = weight
            if bias is not None:
                sd[prefix + "bias"] = bias
    return sd


def pixart_lora(root: Path, model, name: str = "sketch"):
    from colorize_diffusion.model_patches.colorflow import files

    folder = files.read_folder(str(root / "models" / "colorflow" / name))
    return files.lora_weight_patches(folder.lora, files.pixart_lora_key_map(model.model), model.model.state_dict())


def run_lora_merge(case: dict, root: Path) -> dict:
    import comfy.utils

    from colorize_diffusion.model_patches.colorflow import files

    from . import colorflow_bases as bases

    if case["family"] == "sd":
        base = bases.sd15(root)
        to_comfy = {k: f"diffusion_model.{v}" for k, v in
                    comfy.utils.unet_to_diffusers(base.model.model_config.unet_config).items()}
        weights = merged_weights(base, sd15_lora(root, base, folder_of(case, "sd15")))
        return {k: weights[to_comfy[k]] for k in case["expected"]}
    base = bases.pixart(root)
    key_map = files.pixart_lora_key_map(base.model)
    weights = merged_weights(base, pixart_lora(root, base, folder_of(case, "pixart")))
    out = {}
    for k in case["expected"]:
        target = key_map[k[: -len(".weight")]]
        out[k] = weights[target] if isinstance(target, str) else weights[target[0]].narrow(*target[1])
    return out


def guider(root: Path, family: str, case: dict):
    from colorize_diffusion.model_patches.colorflow import files

    name = folder_of(case, family)
    return files.load_guider(files.read_folder(str(root / "models" / "colorflow" / name)))


def run_sd_guider(case: dict, inputs: dict, root: Path) -> dict:
    net = guider(root, "sd15", case)
    with torch.no_grad():
        down, mid, up = net(inputs["sample"], inputs["timestep"], inputs["colorguider_cond"],
                            float(case["conditioning_scale"]))
    return {**{f"down.{i}": t for i, t in enumerate(down)}, "mid": mid, **{f"up.{i}": t for i, t in enumerate(up)}}


class GivenResiduals(torch.nn.Module):
    """The B case's recorded guider residuals in the guider's place: each row's conditioning holds its row index
    in the case's CFG batch [uncond, cond], so every row gets its own recorded residuals wherever ComfyUI puts
    it in the call."""

    def __init__(self, inputs: dict):
        super().__init__()
        self.down = [inputs[f"down.{i}"] for i in range(12)]
        self.mid = inputs["mid"]
        self.up = [inputs[f"up.{i}"] for i in range(15)]
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, timesteps, guide, scale):
        rows = guide[:, 0, 0, 0].long()
        return [d[rows] * scale for d in self.down], self.mid[rows] * scale, [u[rows] * scale for u in self.up]


def _sd_setup(root: Path, case: dict, network, guide_neg, guide_pos, neg_context, pos_context):
    from colorize_diffusion.comfy_compat import unet_patcher
    from colorize_diffusion.model_patches.colorflow import conditioning as cond
    from colorize_diffusion.model_patches.colorflow import sd15 as colorflow_sd

    from . import colorflow_bases as bases

    base = bases.sd15(root)
    model = colorflow_sd.apply_guider(base, unet_patcher(network), sd15_lora(root, base, folder_of(case, "sd15")))
    positive = cond.attach([[pos_context, {}]], guide_pos)
    negative = cond.attach([[neg_context, {}]], guide_neg)
    return model, positive, negative


def _cfg_run(model, positive, negative, cfg: float, sigmas, sampler_function, start_noise, official_start=False,
             callback=None):
    """Sample with ComfyUI's CFG guider and `sampler_function` (or a ComfyUI SAMPLER); returns (raw recorder,
    samples)."""
    import comfy.patcher_extension
    import comfy.samplers

    from colorize_diffusion.model_patches.colorflow import sampling as colorflow_sampling

    from .model_eval import RawRecorder

    m = model.clone()
    recorder = RawRecorder()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "golden_recorder", recorder)
    guider = comfy.samplers.CFGGuider(m)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    if isinstance(sampler_function, comfy.samplers.Sampler):
        sampler = sampler_function
    elif official_start:
        sampler = colorflow_sampling.official_start_sampler(sampler_function)
    else:
        sampler = comfy.samplers.KSAMPLER(sampler_function)
    out = guider.sample(start_noise, torch.zeros_like(start_noise), sampler, sigmas, seed=0, disable_pbar=True,
                        callback=callback)
    return recorder, out


def _guided_step(model, positive, negative, cfg: float, x_vp: torch.Tensor, timestep: torch.Tensor):
    """One CFG evaluation through ComfyUI at the official integer timestep, the latent given in VP terms;
    returns (raw recorder, guided eps)."""
    sigma = float(model.get_model_object("model_sampling").sigma(timestep.float()))
    guided = []

    def once(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        x = x_vp * math.sqrt(1 + sigma * sigma)
        denoised = model_k(x, sigmas[0] * x.new_ones([1]), **extra_args)
        guided.append((x - denoised) / sigma)
        return x

    rec, _ = _cfg_run(model, positive, negative, cfg, torch.tensor([sigma, 0.0]), once, torch.zeros_like(x_vp))
    return rec, guided[0]


def run_sd_step(case: dict, inputs: dict, root: Path) -> dict:
    x_vp = inputs["latent_model_input"][:1]
    ctx = inputs["encoder_hidden_states"]
    rows = [torch.full((1, 1) + tuple(x_vp.shape[-2:]), float(i)) for i in range(2)]
    model, pos, neg = _sd_setup(root, case, GivenResiduals(inputs), rows[0], rows[1], ctx[:1], ctx[1:])
    rec, guided = _guided_step(model, pos, neg, float(case["guidance_scale"]), x_vp, inputs["timestep"][:1])
    raw = rec.calls[0]
    return {"noise_pred_raw": torch.cat([raw[1], raw[0]]), "eps_guided": guided}


def run_sd_sample(case: dict, inputs: dict, root: Path) -> dict:
    from colorize_diffusion.model_patches.colorflow import sampling as colorflow_sampling

    guide = inputs["colorguider_cond"]
    model, pos, neg = _sd_setup(root, case, guider(root, "sd15", case), guide[:1], guide[1:],
                                inputs["negative_prompt_embeds"],
                                inputs["prompt_embeds"])
    ms = model.get_model_object("model_sampling")
    steps = int(case["num_inference_steps"])
    assert colorflow_sampling.official_timesteps("sd15", steps) == case["timesteps"]
    sigmas = colorflow_sampling.official_sigmas("sd15", steps)
    seen = []

    def trace(d):
        seen.append(d)

    def sampler_function(model_k, x, sigmas_k, extra_args=None, callback=None, disable=None):
        return colorflow_sampling.sample_unipc(model_k, x, sigmas_k, extra_args, trace, disable)

    _, final = _cfg_run(model, pos, neg, float(case["guidance_scale"]), sigmas, sampler_function,
                        inputs["initial_latents"], official_start=True)
    final = model.model.latent_format.process_in(final)      # the sampler returns ComfyUI's outward latent
    got = {"final_latents": final}
    for i, d in enumerate(seen):
        s = d["sigma"]
        got[f"eps_guided.{i}"] = (d["x"] - d["denoised"]) / s
        if i > 0:
            got[f"latents_after_step.{i - 1}"] = d["x"] / math.sqrt(1 + s * s)
    got[f"latents_after_step.{len(seen) - 1}"] = final
    return got


def run_pixart_guider(case: dict, inputs: dict, root: Path) -> dict:
    net = guider(root, "pixart", case)
    with torch.no_grad():
        out = net(inputs["control_input"], inputs["timestep"], inputs["resolution"], inputs["aspect_ratio"])
    return {f"control.{i}": t for i, t in enumerate(out)}


class GivenPixArtResiduals(torch.nn.Module):
    """The B case's recorded guider outputs in the guider's place, by the row index its conditioning holds."""

    def __init__(self, inputs: dict):
        super().__init__()
        self.controls = [inputs[f"control.{i}"] for i in range(len([k for k in inputs if k.startswith("control.")]))]
        self.transformer_blocks = [None] * len(self.controls)
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, timesteps, resolution, aspect_ratio, scale):
        rows = x[:, 4, 0, 0].long()
        return [c[rows] * scale for c in self.controls]


def _valid_tokens(embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The T5 tokens the official attention mask keeps (ComfyUI's PixArt attends to every token it is given)."""
    return embeds[:, mask[0].bool()]


def _pixart_setup(root: Path, case: dict, network, guide_neg, guide_pos, neg_context, pos_context, height: int,
                  width: int):
    from colorize_diffusion.comfy_compat import unet_patcher
    from colorize_diffusion.model_patches.colorflow import conditioning as cond
    from colorize_diffusion.model_patches.colorflow import pixart as colorflow_pixart

    from . import colorflow_bases as bases

    base = bases.pixart(root)
    lora = pixart_lora(root, base, folder_of(case, "pixart"))
    model = colorflow_pixart.apply_guider(base, unet_patcher(network), lora)
    size = {"width": width, "height": height}
    return model, cond.attach([[pos_context, dict(size)]], guide_pos), cond.attach([[neg_context, dict(size)]],
                                                                                   guide_neg)


def run_pixart_step(case: dict, inputs: dict, root: Path) -> dict:
    from colorize_diffusion.model_patches.colorflow import pixart as colorflow_pixart

    x_vp = inputs["latent_model_input"][:1]
    ctx, mask = inputs["encoder_hidden_states"], inputs["encoder_attention_mask"]
    h, w = (int(v) for v in inputs["resolution"][0].tolist())
    rows = [torch.full((1, 9) + tuple(x_vp.shape[-2:]), float(i)) for i in range(2)]
    model, pos, neg = _pixart_setup(root, case, GivenPixArtResiduals(inputs), rows[0], rows[1],
                                    _valid_tokens(ctx[:1], mask[:1]), _valid_tokens(ctx[1:], mask[1:]), h, w)
    _, guided = _guided_step(model, pos, neg, float(case["guidance_scale"]), x_vp, inputs["timestep"][:1])
    # both rows, all 8 channels (ComfyUI's PixArt drops the learned-sigma half): the forward the patch runs
    import comfy.model_management

    comfy.model_management.load_models_gpu([model], force_full_load=True)
    res = [inputs[f"control.{i}"] for i in range(2)]
    with torch.no_grad():
        full = colorflow_pixart.pixart_forward(
            model.model.diffusion_model, inputs["latent_model_input"], inputs["timestep"].float(),
            torch.cat([_valid_tokens(ctx[:1], mask[:1]).repeat(1, 2, 1), _valid_tokens(ctx[1:], mask[1:])]),
            inputs["resolution"].float(), inputs["aspect_ratio"].float(), res, learned_sigma=True)
    return {"noise_pred_raw": full, "eps_guided": guided}


def run_pixart_sample(case: dict, inputs: dict, root: Path) -> dict:
    """ComfyUI's dpmpp_2m on the official sigmas. The guided eps of each step is computed from the model's raw
    outputs (the official pipeline guides in eps space; ComfyUI guides the x0 predictions, which at this random tiny
    model's latents, rms 258 by the last step, loses the eps to float32 rounding: x0 = x - sigma * eps with
    |x| ~ 457 and sigma ~ 1.5)."""
    import comfy.samplers

    from colorize_diffusion.model_patches.colorflow import pixart as colorflow_pixart, sampling as colorflow_sampling

    guide = inputs["conditioning_latents"]
    h, w = (8 * n for n in guide.shape[-2:])
    model, pos, neg = _pixart_setup(
        root, case, guider(root, "pixart", case), guide[:1], guide[1:],
        _valid_tokens(inputs["negative_prompt_embeds"], inputs["negative_prompt_attention_mask"]),
        _valid_tokens(inputs["prompt_embeds"], inputs["prompt_attention_mask"]), h, w)
    steps = int(case["num_inference_steps"])
    assert colorflow_sampling.official_timesteps("pixart", steps) == case["timesteps"]
    sigmas = colorflow_sampling.official_sigmas("pixart", steps)
    seen, raw = [], []
    original = colorflow_pixart.GuidedForward.__call__

    def recorded(self, x, timesteps, context, **kwargs):      # the raw eps of each row, by cond_or_uncond
        out = original(self, x, timesteps, context, **kwargs)
        order = kwargs["transformer_options"]["cond_or_uncond"]
        raw.append(dict(zip(order, out.chunk(len(order)))))
        return out

    colorflow_pixart.GuidedForward.__call__ = recorded
    try:
        _, final = _cfg_run(model, pos, neg, float(case["guidance_scale"]), sigmas,
                            comfy.samplers.ksampler("dpmpp_2m"), inputs["initial_latents"],
                            callback=lambda i, d, x, n: seen.append((i, x)))
    finally:
        colorflow_pixart.GuidedForward.__call__ = original
    guided, rows = [], {}
    for call in raw:                       # one step: the positive (0) and negative (1) rows, in one call or two
        rows.update(call)
        if len(rows) == 2:
            guided.append(rows[1] + float(case["guidance_scale"]) * (rows[0] - rows[1]))
            rows = {}
    got = {"final_latents": model.model.latent_format.process_in(final)}
    for i, x in seen:
        got[f"eps_guided.{i}"] = guided[i]
        if i > 0:
            got[f"latents_after_step.{i - 1}"] = x / math.sqrt(1 + float(sigmas[i]) ** 2)
    got[f"latents_after_step.{len(seen) - 1}"] = got["final_latents"]
    return got


def run_t5(case: dict, inputs: dict, root: Path) -> dict:
    """The PixArt path's prompt through ComfyUI's own T5 tokenizer and encoder (what CLIPTextEncode runs, here
    loaded by the pack's diffusers-folder loader): the tokens of "manga" and of the empty negative are the official
    ones up to the padding, and the encoder gives the official hidden states at all 120 positions under the
    official attention mask."""
    from colorize_diffusion.model_patches.colorflow.diffusers_bases import load_t5_folder

    folder_of(case, "pixart")       # the T5 prompt exists only in the PixArt pipelines (Sketch, Sketch_Shading)
    clip = load_t5_folder(str(root / "models" / "pixart_base" / "text_encoder"))
    t5 = clip.cond_stage_model.t5xxl.transformer
    got = {}
    for prompt, ids_key, mask_key, out_key in (("manga", "input_ids", "attention_mask", "prompt_embeds"),
                                              ("", "neg_input_ids", "neg_attention_mask", "negative_prompt_embeds")):
        ids, mask = inputs[ids_key], inputs[mask_key]
        mine = [t for t, _ in clip.tokenize(prompt)["t5xxl"][0]]
        assert mine == ids[0, : int(mask.sum())].tolist(), (prompt, mine, ids[0, :4].tolist())
        with torch.no_grad():
            got[out_key] = t5(ids, attention_mask=mask)[0]
    return got


def run(case: dict, inputs: dict, case_dir: Path, root: Path) -> dict:
    from .colorflow_checks import check_scheduler, check_variant

    check_variant(case, inputs)
    if "scheduler_class" in case:
        check_scheduler(case)
    if "adapted_modules" in case:
        assert sorted(case["adapted_modules"]) == sorted(case["expected"]), "adapted modules and expected keys differ"
    if "multires_file" in case:
        return run_super_resolution(case, inputs, Path(root))
    if "canvas_hwc" in inputs:
        return run_conditioning(case, inputs, Path(root))
    if "prompt_embeds" in case["expected"]:
        return run_t5(case, inputs, Path(root))
    if "control.0" in case["expected"]:
        return run_pixart_guider(case, inputs, Path(root))
    if "down.0" in case["expected"]:
        return run_sd_guider(case, inputs, Path(root))
    if case["family"] == "pixart" and "noise_pred_raw" in case["expected"]:
        return run_pixart_step(case, inputs, Path(root))
    if case["family"] == "pixart" and "final_latents" in case["expected"]:
        return run_pixart_sample(case, inputs, Path(root))
    if case["family"] == "sd15" and "noise_pred_raw" in case["expected"]:
        return run_sd_step(case, inputs, Path(root))
    if case["family"] == "sd15" and "final_latents" in case["expected"]:
        return run_sd_sample(case, inputs, Path(root))
    if "adapted_modules" in case:
        return run_lora_merge(case, Path(root))
    for key, what in UNPORTED.items():
        if key in case.get("expected", {}):
            pytest.skip(f"not ported yet: {what}")
    raise AssertionError(f"no ColorFlow runner for a case with expected keys {sorted(case.get('expected', {}))}")
