"""Which fields of a golden case a runner read: the case is handed to the runner as a recording copy, and after the
run every field it never read must be declared here as irrelevant, with the reason. A field the runner silently
ignores (an option the official code honours) fails the case.

Reading a field means taking its value (`case[k]`, `case.get(k)`, iterating a dict's items or values); asking
whether it is there (`k in case`) is not reading it. A parameter of a `parameters` list (name + value) is read when
its `value` is. Nested dicts are tracked to their leaves; lists of plain values count as one field.
"""
from __future__ import annotations

from collections.abc import Mapping

# fields no runner needs, whatever the case: their reason
ALWAYS_IRRELEVANT = {
    "name": "the case's name (the test id)",
    "description": "prose for people",
    "source": "where the official values came from (provenance)",
    "level": "read by the dispatcher to pick the runner",
    "expected": "the documentation of the expected tensors (compared key by key by compare.py)",
    "sensitivity": "how much the outputs move when a value is perturbed: evidence about the case, not an input",
    "note": "prose",
    "notes": "prose",
    "checkpoint_keys_note": "prose about the checkpoint's keys",
    "output_stats": "statistics of the expected outputs, for people",
    "official_call": "the official function call that produced the case (prose)",
    "storage": "how the case's tensors are stored on disk (the loader reads the files themselves)",
    "tiny_models": "how the tiny models were made (provenance); their files are named in the inputs",
    "formula": "prose: the combination the expected outputs follow",
    "what": "prose: a one-line summary of the case",
    "passes": "which passes the guided step runs (follows from the guidance scales, which are read)",
    "official_half_precision_vs_this_reference": "how far the official fp16/bf16 run is from the case (evidence)",
    "guidance_formulas": "prose: the guided combinations (the runner's guided step implements them)",
    "tolerance.criterion": "prose: the tolerance rule (compare.py implements it with rtol_rms and atol)",
    "tolerance.how_chosen": "prose",
    "tolerance.fp32_reference_vs_fp64": "evidence behind the tolerance",
    "tolerance.fp32_rerun_max_abs_diff": "evidence behind the tolerance",
}
# the description of a tensor of inputs.safetensors (the runner reads the tensor itself)
TENSOR_DOC = (".shape", ".dtype", ".doc")
PROSE = (".formula", ".doc", ".note", ".description")      # prose leaves anywhere in a case

# per runner: the fields its cases define that it does not need, and why
DECLARED = {
    "unet_runner": {
        "clip": "levels B/C/E give the reference tokens as a tensor: no CLIP runs",
        "lora": "prose: which LoRA branches the mode switches on (the runner's mode sets them)",
        "mask_exact_threshold_pixels_per_row": "evidence: how many mask pixels sit exactly on the threshold",
        "parameters[attn2.fg_scale (all 16 blocks)]": "the per-block value the app derives from Foreground strength "
                                                       "(read) and the family's reset",
        "parameters[attn2.bg_scale (all 16 blocks)]": "derived from Background strength (read) and the reset",
        "parameters[attn2.merge_scale (all 16 blocks)]": "derived from Merging scale (read)",
        "parameters[attn2.mask_threshold (all 16 blocks)]": "derived from Sketch mask threshold (read)",
        "parameters[UNet forward threshold (skip warp)]": "derived from Sketch mask threshold (read)",
        "ddim_update": "prose: the DDIM update (the runner's Euler step on σ is the same update)",
        "scheduler_config.steps_offset": "the case lists its timesteps (read); the offset only made them",
        "scheduler_config.timestep_spacing": "the case lists its timesteps (read); the spacing only made them",
        "scheduler_config.dynamic_thresholding_ratio": "acts only with thresholding, which is checked off",
        "scheduler_config.clip_sample_range": "acts only with clip_sample, which is checked off",
        "scheduler_config.sample_max_value": "acts only with thresholding, which is checked off",
        "scheduler_config._use_default_values": "diffusers bookkeeping",
    },
}


DECLARED["injection_runner"] = DECLARED["unet_runner"]      # the same conditionings (unet_runner._conds)

_SCHEDULER = {k: v for k, v in DECLARED["unet_runner"].items() if k.startswith(("scheduler_config.", "ddim_update"))}

DECLARED["xl_runner"] = {       # levels A-F of an XL root (D through xl_pipeline_runner)
    "clip": "levels B/C/E/F give the reference's encoder output as the context tensor: no CLIP runs (A and D load it)",
    "tagger": "levels B/C/E/F give the context tensor: no WD tagger runs (A2 and D load it)",
    "prediction_type": "the UNet's parametrisation: the level-A encoder and vector cases run no UNet",
    "parameters[Color crossattn scale]": "the XL app ignores it: its per-block scales come from Reference strength, "
                                         "Encoder and Semantics crossattn scale (read; checked against the case's "
                                         "reference_scale_per_block where it has one)",
    "parameters[split cross-attention path]": "prose: the attention path that follows from Merging scale (read)",
    "lora": "prose: which LoRA the mode merges (the runner's mode sets it)",
    **_SCHEDULER,
}

_MANIPULATION = {
    "ui": "the UI clicks that built the Final prompt (provenance: the runner reads the Final prompt and the current "
          "sliders, and checks the groups they give against the parsed record)",
    "manipulation_groups": "a derived per-group record (its tensors, group.* / manip.group.*, are compared key by key)",
    "manip.manipulation_groups": "a derived per-group record (its tensors, manip.group.*, are compared key by key)",
    "manipulation_threshold_margin": "evidence: how far the tokens' scores are from a threshold",
    "manip.manipulation_threshold_margin": "evidence: how far the tokens' scores are from a threshold",
    "pixel_threshold_margin": "evidence: how far the pixels' scores are from a threshold",
}

DECLARED["pipeline_runner"] = {
    "lora": "prose: which LoRA branches the mode switches on (the checkboxes, read, set them)",
    **_MANIPULATION,
}

DECLARED["manipulation_runner"] = {
    "checkpoint": "level G1/G2 run the CLIP towers only: no colorizer",
    "prediction_type": "level G1/G2 run no UNet",
    **_MANIPULATION,
}

DECLARED["clip_runner"] = {
    "checkpoint": "level A1 runs the CLIP vision tower only: no colorizer",
    "prediction_type": "level A1 runs no UNet",
}

DECLARED["encoder_runner"] = {
    "clip": "the encoder cases give the CLIP tokens as a tensor (or need none): no CLIP runs",
    "size_ratios_rh_rw": "derived: the ratios size_emb embeds (size_emb, compared key by key, is built from "
                         "reference_pixel_sizes_hw and the generation size, both read)",
}

# the mask-guided sliders: the app wires them only with a mask-guided mode (SD2.1 BG/FG enhance, XL Low-level
# injection); in a case without one they act on nothing
MASK_GUIDED = ("BG enhance (mask guided)", "FG enhance (mask guided)", "Low-level injection")
MASK_SLIDERS = ("Background factor", "Merging scale", "Reference mask threshold", "Sketch mask threshold",
                "Foreground strength", "Background strength")


def _mask_sliders_unwired(case: dict) -> dict:
    params = [p for p in case.get("parameters") or [] if isinstance(p, Mapping) and "value" in p]
    if not any(p.get("ui_name") in MASK_GUIDED for p in params):
        return {}
    if any(p.get("ui_name") in MASK_GUIDED and p["value"] for p in params):
        return {}
    return {f"parameters[{n}]": "a mask-guided slider in a case with no mask-guided mode (checkbox read: off)"
            for n in MASK_SLIDERS}


DECLARED["rap_runner"] = {
    "parameters.input_style": "does not influence the retrieval (README: colorize_image's call; the canvas is built "
                              "before the style is used)",
    "parameters.seed": "the colorizer's seed: does not influence the retrieval (README)",
    "parameters.num_inference_steps": "the colorizer's steps: the retrieval runs before sampling",
    "parameters.input_seed": "provenance: the seed the synthetic input pictures were drawn with (stored as inputs)",
    "parameters.input_attempt": "provenance: which draw of the synthetic inputs was kept",
    "sha256_hex": "the digests of expected.safetensors written in hex, for people (compared there)",
    "argsort_tie_order": "prose: the official argsort's order among exact ties (ties_in_topk, read, accepts them)",
    "min_topk_gap": "evidence: the smallest gap between ranked similarities (why top-k is exact within tolerance)",
    "tolerance.exact": "prose: which keys are exact (check() compares them bit for bit)",
    "tolerance.pixel_values": "the float pixel values are informational: their uint8 form (clip_u8) is compared "
                              "exactly",
    "tolerance.embeddings.criterion": "prose (check() applies rtol_rms and atol)",
    "tolerance.cosine_similarity.criterion": "prose (check() applies rtol_rms and atol)",
    "tolerance.fp32_vs_fp64_max_over_rms": "evidence behind the tolerance",
    "tolerance.topk_margin": "prose: why top-k is exact up to ties",
    "provenance": "where and with what the case was made",
}

DECLARED["decolorize_runner"] = {
    "tensors": "the documentation of the expected tensors (compared key by key by check())",
    "page.draw_seed": "provenance: the seed the synthetic page was drawn with (the page itself is an input)",
    "global_rng_seed": "provenance: the global RNG seed of the run; each noise draw carries its own seed (read) and "
                       "the dropout masks are stored",
    "noise.rule": "prose: how the noise was drawn (the draws' seeds and shapes are read)",
    "dropout.rule": "prose: why the masks exist (the draws are read, the masks taken from the case)",
}


def _tolerance_evidence(case: dict) -> dict:
    """`tolerance.<key>.fp32_vs_fp64*`: how far an fp32 run was from the fp64 one, the evidence behind a rule."""
    tol = case.get("tolerance")
    return {f"tolerance.{k}.{e}": "evidence behind the tolerance" for k, rule in (tol or {}).items()
            if isinstance(rule, Mapping) for e in rule if e.startswith("fp32_vs_fp64")}

DECLARED["colorflow_runner"] = {
    "variant.id": "the name of the run this case was cut from",
    "variant.seed": "provenance: the seed the run's random inputs were drawn with (stored as inputs)",
    "variant.guidance": "the run's guidance: read where this level guides (checked against guidance_scale)",
    "variant.steps": "the run's steps: read where this level samples (checked against num_inference_steps)",
    "tolerance.rule": "prose (compare.py applies rtol_rms)",
    "tolerance.worst_fp32_vs_fp64": "evidence behind the tolerance",
    "tolerance.per_key_fp32_vs_fp64": "evidence behind the tolerance",
    "scheduler_config.dynamic_thresholding_ratio": "acts only with thresholding, which is checked off",
    "scheduler_config.sample_max_value": "acts only with thresholding, which is checked off",
    "scheduler_config.timestep_spacing": "the case lists its timesteps (read, checked against the pack's)",
    "scheduler_config.steps_offset": "the case lists its timesteps (read, checked against the pack's)",
    "scheduler_config.skip_prk_steps": "a PNDM option: no part of UniPC",
    "scheduler_config.set_alpha_to_one": "a DDIM option: UniPC's final step goes to the clean latent (sigma 0)",
}

DECLARED["preprocess_runner"] = {
    "network": "names the network: the runner loads the one the weights file name calls for (weights.file, read)",
    "params.network": "the same name as `network`",
    "params.ui_name": "the app's name of the network (weights.ui_name)",
    "weights.ui_name": "the app's name of the network: the pack picks it by the file name (read)",
    "weights.fill.function": "prose: how the tiny weights were filled (the runner fills them with seed and gain, read)",
    "weights.loaded_with": "prose: the official loader",
    "params.seed": "the weights' fill seed (checked equal to weights.fill.seed) or the seed the case's random "
                   "inputs were drawn with (stored as inputs)",
    "params.resized_hw": "derived: the aspect-fit size (original_shape, compared, records the fitted box)",
    "official_functions": "prose: the official calls",
    "network_input_size": "the network input's shape (net_input / net_input_s8, compared where stored)",
    "normalisation": "prose",
    "postprocessing": "prose",
    "tensors": "the documentation of the stored tensors (compared key by key)",
    "tolerance_rule": "prose (compare.py implements it)",
    "measured_deviation": "evidence behind the tolerances",
    "environment": "the library versions the case was made with",
    "tolerance.blurred_u8": "a diagnostic inside sketchKeras' input (the pack keeps it inside keras_input); the "
                            "network input it feeds, net_input, is compared",
}

PER_CASE = {"pipeline_runner": _mask_sliders_unwired, "xl_runner": _mask_sliders_unwired,
            "decolorize_runner": _tolerance_evidence}


def declared_for(runner_name: str, case: dict) -> dict:
    """The runner's declared fields plus the case's own 'already applied' parameters (their value is baked into the
    input tensors, as the case's note says). Every runner is checked: one with no entry here has nothing declared."""
    short = runner_name.rsplit(".", 1)[-1]
    out = dict(DECLARED.get(short, {}))
    if short in PER_CASE:
        out.update(PER_CASE[short](case))
    for p in case.get("parameters", []) if isinstance(case.get("parameters"), list) else []:
        if "already applied" in str(p.get("note", "")):
            out[f"parameters[{p.get('ui_name') or p.get('internal_name')}]"] = p["note"]
    return out


class RecordingDict(dict):
    """A dict that notes which of its keys were read (children wrapped the same way)."""

    def __init__(self, data: Mapping, path: str, log: set):
        super().__init__({k: _wrap(v, f"{path}{k}", log) for k, v in data.items()})
        self._path, self._log = path, log

    def _read(self, key):
        self._log.add(f"{self._path}{key}")

    def __getitem__(self, key):
        self._read(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._read(key)
        return super().get(key, default)

    def items(self):
        for k in self.keys():
            self._read(k)
        return super().items()

    def values(self):
        for k in self.keys():
            self._read(k)
        return super().values()

    def copy(self):
        for k in self.keys():
            self._read(k)
        return dict(super().items())


class Parameter(RecordingDict):
    """One entry of a `parameters` list: read when its value is."""

    def __init__(self, data: Mapping, path: str, log: set):
        name = data.get("ui_name") or data.get("internal_name")
        super().__init__(data, f"{path}[{name}].", log)

    def _read(self, key):
        if key == "value":
            super()._read(key)


def _wrap(value, path: str, log: set):
    if isinstance(value, Mapping):
        return RecordingDict(value, path + ".", log)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) and "value" in v for v in value):
        return [Parameter(v, path, log) for v in value]
    return value


def recording(case: dict) -> tuple[RecordingDict, set]:
    log: set = set()
    return RecordingDict(case, "", log), log


def leaves(case: Mapping, path: tuple = ()) -> list[tuple]:
    """Every field of a case as the recorder names it, with the names of the fields above it: [(name, ...)]."""
    out = []
    for k, v in case.items():
        here = path + (f"{path[-1]}.{k}" if path else str(k),)
        if k == "parameters" and isinstance(v, list) and not v:       # an empty parameter list sets nothing
            continue
        if isinstance(v, Mapping):
            out += leaves(v, here)
        elif isinstance(v, list) and v and all(isinstance(p, Mapping) and "value" in p for p in v):
            for p in v:
                entry = f"{here[-1]}[{p.get('ui_name') or p.get('internal_name')}]"
                out.append(here + (entry, entry + ".value"))
        else:
            out.append(here)
    return out


def unread(case: dict, log: set, declared: dict) -> list[str]:
    """The case's fields the runner never read and no declaration covers (a declaration of a field covers
    everything under it; a parameter is declared as `parameters[<ui name or internal name>]`)."""
    def covered(names: tuple) -> bool:
        return (names[-1] in log or any(n in declared or n in ALWAYS_IRRELEVANT for n in names)
                or (names[-1].startswith("inputs.") and names[-1].endswith(TENSOR_DOC))
                or names[-1].endswith(PROSE))

    return [names[-1] for names in leaves(case) if not covered(names)]
