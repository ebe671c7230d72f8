"""Every option of the official apps fits the node input that carries it: read from the shared reference-app.md
(its slider and dropdown tables, the XL table and the manipulation/visualisation prose), each official range
must lie inside the node's range with every official slider value reachable at the node's step, and each
official choice must have its node choice. An official row with no node input is listed with the reason.
"""
from __future__ import annotations

import asyncio
import re
from fractions import Fraction

import pytest

from shared_data import SHARED

DOC = SHARED / "docs" / "reference-app.md"

# official slider label (as in the doc's table) -> the node inputs that carry it ("KSampler" = ComfyUI's own node)
SLIDERS = {
    "Reference guidance scale": [("ColorizeDiffusionGuider", "reference_scale")],
    "Reference strength": [("ColorizeDiffusionReferenceStrength", "reference_strength")],
    "Foreground strength": [("ColorizeDiffusionSplitAttention", "foreground_strength")],
    "Background strength": [("ColorizeDiffusionSplitAttention", "background_strength")],
    "Sketch guidance scale": [("ColorizeDiffusionGuider", "sketch_scale")],
    "Sketch strength": [("ColorizeDiffusionApplySketch", "sketch_strength")],
    "Background factor": [("ColorizeDiffusionBackgroundEncoder", "background_factor")],
    "Merging scale": [("ColorizeDiffusionSplitAttention", "merge_scale"),
                      ("ColorizeDiffusionStyleEncoder", "merge_scale")],
    "Semantics crossattn scale": [("ColorizeDiffusionReferenceStrength", "semantics_scale")],
    "Color crossattn scale": [("ColorizeDiffusionReferenceStrength", "color_scale")],
    "Encoder crossattn scale": [("ColorizeDiffusionReferenceStrength", "encoder_scale")],
    "Injection fidelity (sketch)": [("ColorizeDiffusionAttentionInjection", "sketch_fidelity")],
    "Injection fidelity (reference)": [("ColorizeDiffusionAttentionInjection", "reference_fidelity")],
    "Injection start step": [("ColorizeDiffusionAttentionInjection", "start")],
    "Guidance start step": [("ColorizeDiffusionGuidanceWindow", "start")],
    "Guidance end step": [("ColorizeDiffusionGuidanceWindow", "end")],
    "No guidance start step": [("ColorizeDiffusionGuidanceWindow", "no_guidance_start")],
    "No guidance end step": [("ColorizeDiffusionGuidanceWindow", "no_guidance_end")],
    "0.down0.attn0 … 15.up0.attn2 (16 sliders)": [("ColorizeDiffusionBlockReferenceStrength", f"block_{i}")
                                                  for i in range(16)],
    "Reference mask threshold": [("ColorizeDiffusionBackgroundEncoder", "reference_mask_threshold"),
                                 ("ColorizeDiffusionBackgroundOnlyReference", "threshold"),
                                 ("ColorizeDiffusionMaskOverlay", "threshold")],
    "Sketch mask threshold": [("ColorizeDiffusionSplitAttention", "threshold")],
    "Reference padding scale": [("ColorizeDiffusionReferencePad", "pad_scale")],
    "Batch size": [("ColorizeDiffusionApplySketch", "samples_per_sketch")],
    "Width": [("ColorizeDiffusionPrepareSketch", "width")],
    "Height": [("ColorizeDiffusionPrepareSketch", "height")],
    "Step": [("KSampler", "steps")],
}
# official sliders no node input carries, and why
NOT_CARRIED = {
    "Disentangle scale": "a no-op in every SD2.1 model (swallowed by **kwargs), so no node exposes it",
    "Seed": "ComfyUI's sampler seed (0 … 2^64−1); the app's −1 'random' is the widget's control_after_generate",
}

# official dropdown label -> {official choice: (node id, input, node choice)}; None = served by ComfyUI's own
# sampler nodes (comfy.samplers names), checked against the host's lists
DROPDOWNS = {
    "Line extractor": {
        "lineart": ("ColorizeDiffusionExtractLineart", "method", "anime2sketch"),
        "lineart_denoise": ("ColorizeDiffusionExtractLineart", "method", "manga"),
        "lineart_keras": ("ColorizeDiffusionExtractLineart", "method", "sketchKeras"),
        "lineart_sk": ("ColorizeDiffusionExtractLineart", "method", "sk_model"),
    },
    "Sketch preprocessor": {
        "none": ("ColorizeDiffusionPrepareSketch", "polarity", "keep"),
        "invert": ("ColorizeDiffusionPrepareSketch", "polarity", "invert"),
        "invert-webui": ("ColorizeDiffusionPrepareSketch", "method", "standard"),
        "extract": ("ColorizeDiffusionPrepareSketch", "method", "sketchKeras"),
    },
}
# the official samplers and noise schedulers on ComfyUI's samplers (the pack adds none of its own)
SAMPLERS = {
    "DPM adaptive": "dpm_adaptive", "DPM fast": "dpm_fast", "DPM++ 2M": "dpmpp_2m", "DPM++ 2M SDE": "dpmpp_2m_sde",
    "DPM++ 2M SDE Heun": "dpmpp_2m_sde_heun", "DPM++ 2S a": "dpmpp_2s_ancestral", "DPM++ 3M SDE": "dpmpp_3m_sde",
    "DPM++ SDE": "dpmpp_sde", "DPM2": "dpm_2", "DPM2 a": "dpm_2_ancestral", "Euler": "euler",
    "Euler a": "euler_ancestral", "Heun": "heun", "LMS": "lms", "diffuser_ddim": "ddim", "diffuser_dpm": "dpmpp_2m",
    "diffuser_lms": "lms", "diffuser_pndm": "ipndm", "diffuser_dpm_sde": "dpmpp_2m_sde",
}
SCHEDULERS = {"Uniform": "normal", "Karras": "karras", "Exponential": "exponential", "SGM Uniform": "sgm_uniform"}
SCHEDULERS_NOT_CARRIED = {
    "Automatic": "the sampler's own default: pick karras/exponential/normal as §1.7 lists per sampler",
    "Polyexponential": "ComfyUI's PolyexponentialScheduler node (SamplerCustomAdvanced), not a KSampler choice",
}


def _doc() -> str:
    assert DOC.is_file(), f"{DOC} missing"
    return DOC.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n### ", start + len(heading))
    return text[start:end if end > 0 else None]


def _num(s: str) -> Fraction:
    return Fraction(s.replace("−", "-").strip("* "))


def official_sliders() -> dict[str, tuple[Fraction, Fraction, Fraction]]:
    """label -> (lo, hi, step) of every row of the SD2.1 app's slider table whose range reads 'lo–hi / step'."""
    table = _section(_doc(), "**Sliders**")
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        m = re.fullmatch(r"(-?[\d.]+)\s*–\s*([\d.]+)\s*/\s*\**([\d.]+)\**", cells[1])
        if m:
            out[cells[0]] = tuple(_num(g) for g in m.groups())
        elif cells[0] == "Seed":
            out[cells[0]] = None
    return out


def official_dropdowns() -> dict[str, list[str]]:
    table = _section(_doc(), "**Dropdowns**")
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and "`" in cells[1]:
            out[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return out


def official_prose_ranges() -> dict[str, tuple[list, tuple[Fraction, Fraction, Fraction]]]:
    """The ranges the doc gives in prose or in the XL table, each with the node inputs carrying it."""
    text = _doc()
    scale = re.search(r"Target scale (\d+)–(\d+) step ([\d.]+)", text)
    threshold_step = re.search(r"Threshold 0/1/2/3 defaults [\d./]+ \(step ([\d.]+)\)", text)
    xl_levels = re.search(r"`Sketch strength 1\.\.4` \((\d+)–(\d+), default", text)
    xl_strength_step = re.search(r"\| Sketch strength \| step ([\d.]+);", text)
    xl_size = re.search(r"\| Width/Height \| (\d+)–(\d+) step (\d+)", text)
    query = re.search(r"Query Row/Col (\d+)–(\d+) default", text)
    found = (scale, threshold_step, xl_levels, xl_strength_step, xl_size, query)
    assert all(found), f"reference-app.md no longer states one of the prose ranges: {found}"
    n = _num
    manip = [("ColorizeDiffusionManipulation", f"threshold_{i}") for i in range(4)]
    manip += [("ColorizeDiffusionVisualizeManipulation", f"threshold_{i}") for i in range(4)]
    return {
        "Target scale": ([("ColorizeDiffusionManipulation", "target_scale")],
                         (n(scale[1]), n(scale[2]), n(scale[3]))),
        "Threshold 0..3": (manip, (Fraction(0), Fraction(1), n(threshold_step[1]))),
        "XL Sketch strength 1..4": ([("ColorizeDiffusionSketchLevelStrength", f"level_{i}") for i in range(1, 5)],
                                    (n(xl_levels[1]), n(xl_levels[2]), n(xl_strength_step[1]))),
        "XL Sketch strength": ([("ColorizeDiffusionApplySketch", "sketch_strength")],
                               (Fraction(0), Fraction(3), n(xl_strength_step[1]))),
        "XL Width/Height": ([("ColorizeDiffusionPrepareSketch", "width"), ("ColorizeDiffusionPrepareSketch", "height")],
                            (n(xl_size[1]), n(xl_size[2]), n(xl_size[3]))),
        "XL Query Row/Col": ([("ColorizeDiffusionAttentionMap", "query_row"),
                              ("ColorizeDiffusionAttentionMap", "query_col")],
                             (n(query[1]), n(query[2]), Fraction(1))),
    }


@pytest.fixture(scope="module")
def inputs():
    """(node id, input) -> the input's (type, options) as ComfyUI reads them (INPUT_TYPES of the V3 schema)."""
    import colorize_diffusion
    import nodes as comfy_nodes

    extension = asyncio.run(colorize_diffusion.comfy_entrypoint())
    out = {}
    for cls in asyncio.run(extension.get_node_list()):
        node_id = cls.GET_SCHEMA().node_id
        for section in cls.INPUT_TYPES().values():
            for name, spec in section.items():
                out[(node_id, name)] = spec
    for name, spec in comfy_nodes.KSampler.INPUT_TYPES()["required"].items():
        out[("KSampler", name)] = spec
    return out


def _covers(spec, lo: Fraction, hi: Fraction, step: Fraction) -> str | None:
    """Why the node input does not offer every official value lo, lo+step, …, hi (None when it does)."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if kind not in ("FLOAT", "INT"):
        return f"is {kind}, not a number"
    n_lo, n_hi = Fraction(str(opts.get("min"))), Fraction(str(opts.get("max")))
    if n_lo > lo or n_hi < hi:
        return f"range {float(n_lo)}–{float(n_hi)} narrower than the official {float(lo)}–{float(hi)}"
    n_step = Fraction(str(opts.get("step") or 1))
    if kind == "FLOAT" and opts.get("round") not in (None, False):
        n_step = min(n_step, Fraction(str(opts["round"])))
    if (step / n_step).denominator != 1 or ((lo - n_lo) / n_step).denominator != 1:
        return f"step {float(n_step)} from {float(n_lo)} cannot reach every official value (step {float(step)})"
    return None


def test_every_official_slider_is_read_from_the_doc():
    """The doc's slider table is what the mapping names: a new or renamed official slider fails here."""
    sliders = official_sliders()
    assert len(sliders) >= 28, sliders.keys()
    assert set(sliders) == set(SLIDERS) | set(NOT_CARRIED), set(sliders) ^ (set(SLIDERS) | set(NOT_CARRIED))


def test_node_inputs_cover_every_official_slider(inputs):
    problems = []
    for label, rng in official_sliders().items():
        for key in SLIDERS.get(label, ()):
            why = "missing" if key not in inputs else _covers(inputs[key], *rng)
            if why:
                problems.append(f"{label} -> {key}: {why}")
    for label, (keys, rng) in official_prose_ranges().items():
        for key in keys:
            why = "missing" if key not in inputs else _covers(inputs[key], *rng)
            if why:
                problems.append(f"{label} -> {key}: {why}")
    assert not problems, "\n".join(problems)


def test_seed_covers_the_official_seeds(inputs):
    """The app's seeds 0 … 429496729 (MAXM_INT32); −1 is 'random', ComfyUI's control_after_generate."""
    top = int(re.search(r"\| Seed \| -1 … (\d+) / 1", _doc())[1])
    for key in [("KSampler", "seed"), ("ColorizeDiffusionAttentionInjection", "seed")]:
        assert _covers(inputs[key], Fraction(0), Fraction(top), Fraction(1)) is None, key
        assert inputs[key][1].get("control_after_generate"), key


def test_node_inputs_offer_every_official_choice(inputs):
    official = official_dropdowns()
    problems = []
    for label, mapping in DROPDOWNS.items():
        assert set(official[label]) == set(mapping), (label, official[label])
        for choice, (node_id, name, node_choice) in mapping.items():
            spec = inputs.get((node_id, name))
            options = spec[0] if spec and isinstance(spec[0], list) else (spec[1].get("options") if spec else None)
            if not options or node_choice not in options:
                problems.append(f"{label} '{choice}' -> {node_id}.{name} '{node_choice}' not in {options}")
    assert not problems, "\n".join(problems)


def test_official_samplers_and_schedulers_exist_in_the_host():
    import comfy.samplers

    text = _doc()
    listed = re.search(r"Sampler dropdown \(sorted list\):\n`([^`]+)` \(XL adds `([^`]+)`\)", text)
    assert listed, "reference-app.md §1.7 no longer lists the samplers"
    official = [s.strip() for s in listed[1].split(",")] + [listed[2]]
    assert set(official) == set(SAMPLERS), set(official) ^ set(SAMPLERS)
    assert not [s for s in official if SAMPLERS[s] not in comfy.samplers.KSampler.SAMPLERS]
    schedulers = official_dropdowns()["Noise scheduler"]
    assert set(schedulers) == set(SCHEDULERS) | set(SCHEDULERS_NOT_CARRIED)
    assert not [s for s in SCHEDULERS.values() if s not in comfy.samplers.KSampler.SCHEDULERS]
