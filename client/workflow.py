"""The shipped example workflows (UI format, the source of truth) as API prompts, with a job's pictures and
settings filled in. The server's `/object_info` says which inputs are widgets and in which order."""
from __future__ import annotations

import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
FRONTEND_ONLY = {"Note", "MarkdownNote"}

# --mode shortcuts -> example workflow
MODES = {"vanilla": "vanilla", "foreground-background": "foreground_background_v1_5",
         "background": "background_enhance_v2", "style": "style_enhance_v2", "full": "full_enhance_v2",
         "full-background": "full_enhance_background_v2", "xl": "vanilla_xl", "xl-background": "background_enhance_xl",
         "xl-background-picture": "background_picture_xl", "chapter": "chapter_v2",
         "colorflow": "chapter_colorflow", "colorflow-shading": "shaded_pages_colorflow",
         "colorflow-grey": "grey_pages_colorflow"}
# ComfyUI's, the pack's strict one, and the pack's example pictures (replaced by the strict one with the job's picture)
PICTURE_LOADERS = {"LoadImage", "ColorizeDiffusionLoadImage", "ColorizeDiffusionExamplePicture"}
# a workflow's folder of sketches (ComfyUI's, or the pack's example folder): one sketch per job here
FOLDER_LOADERS = {"LoadImageDataSetFromFolder", "ColorizeDiffusionExamplePictureFolder"}
EXAMPLE_PICTURE = "ColorizeDiffusionExamplePicture"
STRICT_LOADER = "ColorizeDiffusionLoadImage"
POOL_NODE = "ColorizeDiffusionReferencePool"


class WorkflowError(Exception):
    pass


def load_ui(name: str) -> dict:
    path = Path(name) if name.endswith(".json") else EXAMPLES / f"{MODES.get(name, name)}.json"
    if not path.is_file():
        known = ", ".join(sorted(MODES))
        raise WorkflowError(f"unknown mode or workflow {name!r} (modes: {known}; or a workflow .json saved from "
                            "ComfyUI)")
    try:
        ui = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WorkflowError(f"{path} cannot be read as a workflow ({exc})") from None
    if not isinstance(ui, dict) or not isinstance(ui.get("nodes"), list):
        hint = " (this looks like an API-format export: save the workflow itself)" if isinstance(ui, dict) and all(
            isinstance(v, dict) and "class_type" in v for v in ui.values()) and ui else ""
        raise WorkflowError(f"{path} is not a ComfyUI workflow (no list of nodes){hint}")
    return ui


def _widgets(info: dict) -> list:
    """(name, seed-like, upload) of every widget input in order, as the frontend lays out widgets_values."""
    out = []
    for section in ("required", "optional"):
        for name in info.get("input_order", {}).get(section, []):
            spec = info["input"][section][name]
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            kind = "COMBO" if isinstance(typ, list) else typ
            if kind in WIDGET_TYPES and not opts.get("forceInput"):
                out.append((name, bool(opts.get("control_after_generate")), bool(opts.get("image_upload"))))
    return out


def to_api(ui: dict, object_info: dict) -> dict:
    """UI (LiteGraph) workflow -> API prompt. Raises WorkflowError naming a node type the server lacks."""
    links = {l[0]: (str(l[1]), l[2]) for l in ui.get("links", [])}
    prompt = {}
    for node in ui["nodes"]:
        ntype = node["type"]
        if ntype in FRONTEND_ONLY or node.get("mode", 0) in (2, 4):      # notes; muted or bypassed nodes
            continue
        info = object_info.get(ntype)
        if info is None:
            raise WorkflowError(f"the server has no node {ntype!r}: install the ComfyUI-ColorizeDiffusion pack there "
                                "(and restart it)")
        inputs, values = {}, list(node.get("widgets_values") or [])
        upload = False
        for name, seeded, has_upload in _widgets(info):
            if not values:
                break
            inputs[name] = values.pop(0)
            if seeded and values:
                values.pop(0)                   # the frontend's "control after generate"
            upload = upload or has_upload
        for inp in node.get("inputs", []):
            if inp.get("link") is not None and inp["link"] in links:
                inputs[inp["name"]] = list(links[inp["link"]])
        prompt[str(node["id"])] = {"class_type": ntype, "inputs": inputs,
                                   "_meta": {"title": node.get("title") or ntype}}
    return prompt


def pictures(prompt: dict) -> dict:
    """Load Image nodes by title ("Sketch", "Reference", "Background", ...); a folder of sketches counts as the
    Sketch (each job gives it one)."""
    found = {n["_meta"]["title"]: key for key, n in prompt.items() if n["class_type"] in PICTURE_LOADERS}
    for key, n in prompt.items():
        if n["class_type"] in FOLDER_LOADERS:
            found["Sketch"] = key
    return found


def takes_pool(prompt: dict) -> bool:
    return any(n["class_type"] == POOL_NODE for n in prompt.values())


def fill(prompt: dict, *, images: dict, models: dict, settings: dict, prefix: str, pool: str | None = None) -> dict:
    """A copy of `prompt` with the uploaded pictures (title -> server name), the reference pool (a folder of the
    server's input/), model files, settings and the output prefix filled in. Settings: seed, steps, width, height,
    reference_scale, sketch_scale."""
    p = json.loads(json.dumps(prompt))
    for key, node in p.items():
        if node["class_type"] in FOLDER_LOADERS:       # the job's one sketch instead of the workflow's folder
            p[key] = {"class_type": STRICT_LOADER, "inputs": {}, "_meta": {"title": "Sketch"}}
        if node["class_type"] == POOL_NODE and pool is not None:
            node["inputs"]["folder"] = pool
    by_title = pictures(p)
    for title, name in images.items():
        if title not in by_title:
            raise WorkflowError(f"this workflow has no {title.lower()} picture")
        node = p[by_title[title]]
        if node["class_type"] == EXAMPLE_PICTURE:      # the same IMAGE and MASK, from the uploaded file
            node["class_type"], node["inputs"] = STRICT_LOADER, {}
        node["inputs"]["image"] = name
    missing = [t for t in by_title if t not in images and not t.endswith("mask")]
    if missing:
        raise WorkflowError(f"this workflow needs a {missing[0].lower()} picture (--{missing[0].lower()})")
    for key, node in list(p.items()):
        t, inp = node["class_type"], node["inputs"]
        if t == "ColorizeDiffusionCheckpointLoader" and models.get("checkpoint"):
            inp["ckpt_name"] = models["checkpoint"]
        if t == "ColorizeDiffusionLoadOpenCLIPVision":
            if models.get("clip_vision"):
                inp["clip_name"] = models["clip_vision"]
            if models.get("clip_heads") is not None:
                inp["heads"] = models["clip_heads"]
        if t == "ColorizeDiffusionLoadWDTagger" and models.get("tagger"):
            inp["tagger_name"] = models["tagger"]
        if t == "RandomNoise" and settings.get("seed") is not None:
            inp["noise_seed"] = settings["seed"]
        if t == "BasicScheduler" and settings.get("steps"):
            inp["steps"] = settings["steps"]
        if t == "ColorizeDiffusionPrepareSketch":
            for k in ("width", "height"):
                if settings.get(k):
                    inp[k] = settings[k]
        if t == "ColorizeDiffusionGuider":
            for k in ("reference_scale", "sketch_scale"):
                if settings.get(k) is not None:
                    inp[k] = settings[k]
        if t == "SaveImage":
            inp["filename_prefix"] = prefix
    if models.get("vae"):         # a VAE file instead of the checkpoint's own
        loaders = [k for k, n in p.items() if n["class_type"] == "ColorizeDiffusionCheckpointLoader"]
        p["vae_file"] = {"class_type": "VAELoader", "inputs": {"vae_name": models["vae"]}, "_meta": {"title": "VAE"}}
        for node in p.values():
            for name, value in node["inputs"].items():
                if isinstance(value, list) and len(value) == 2 and value[0] in loaders and value[1] == 2:
                    node["inputs"][name] = ["vae_file", 0]
    return p
