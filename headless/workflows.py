"""The example workflows, defined once, rendered in both ComfyUI formats.

Pure Python (no ComfyUI, no torch): ``scripts/build_workflows.py`` writes ``example_workflows/<stem>.json``
(UI/LiteGraph format, what File→Save gives and what the template browser loads) and
``tests/workflows/<stem>.api.json`` (API format, what ``POST /prompt`` takes) from :func:`build`; the headless
command (:mod:`headless.runner`) and ``scripts/queue_folder.py`` build their prompts with the same function, so
the three can never drift apart.

A workflow is :data:`WORKFLOWS` ``[stem]`` (family, mode, masks, batch) plus :class:`Options` (everything a run
may change: files, sizes, scales, steps, seed, and three structural switches used by tests and the headless
command: ``vae`` = a separate VAE file instead of the checkpoint's, ``masks`` = where the masks come from,
``background`` = a separate background picture). ``Options()`` gives the shipped graphs: the official app's
defaults and the official file names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

# ----------------------------------------------------------------------------------------------------------
# Official defaults (reference-app.md §1.2) and file names (README, model table)
# ----------------------------------------------------------------------------------------------------------
CHECKPOINTS = {"v1": "mult-eps-newft.safetensors", "v1.5": "switch-eps.safetensors", "v2": "v2-full.safetensors"}
CLIP_VISION = "clip_vision_h.safetensors"
SIZE_BASE = {"v1": 512, "v1.5": 512, "v2": 768}   # the families' training resolutions (README of the app)
SKETCH_FOLDER = "colorizediffusion_sketches"      # input/ subfolder read by the batch workflow
PACK_TITLE = "ColorizeDiffusion"


# Mode names as the command line takes them (short and full) -> the conditioning node's mode
MODES = {"vanilla": "vanilla", "style": "style enhance", "background": "background enhance",
         "foreground": "foreground enhance", "full": "full"}
MODES.update({v: v for v in list(MODES.values())})
MASK_MODES = ("background enhance", "foreground enhance", "full")     # modes that need the sketch mask


def workflow_stem(mode: str, family: str | None) -> str:
    """The example workflow a mode starts from (background/foreground enhance: v1.5's or v2's)."""
    if mode == "vanilla":
        return "vanilla"
    if mode == "style enhance":
        return "style_enhance_v2"
    if mode == "full":
        return "full_enhance_v2"
    return "background_enhance_v1_5" if family == "v1.5" else "background_enhance_v2"


@dataclass(frozen=True)
class WorkflowSpec:
    stem: str
    title: str
    family: str            # "v1" | "v1.5" | "v2": picks the official checkpoint and the automatic size
    mode: str              # a value of the Conditioning node's `mode`
    description: str
    batch: bool = False    # many sketches (a folder of input/), one reference

    @property
    def masks(self) -> bool:
        """The mode splits the attention by the sketch mask (and bleaches the reference by its mask)."""
        return self.mode in ("background enhance", "foreground enhance", "full")


WORKFLOWS: dict[str, WorkflowSpec] = {w.stem: w for w in (
    WorkflowSpec("vanilla", "Vanilla (v1)", "v1", "vanilla",
                 "Sketch + reference -> colours. Works with every family; shipped with the v1 checkpoint."),
    WorkflowSpec("style_enhance_v2", "Style enhance (v2)", "v2", "style enhance",
                 "v2 style encoder on the reference: stronger transfer of the reference's rendering style."),
    WorkflowSpec("background_enhance_v2", "Background enhance (v2)", "v2", "background enhance",
                 "v2: character and background handled separately (ISNet sketch mask + reference mask)."),
    WorkflowSpec("full_enhance_v2", "Full enhance (v2)", "v2", "full",
                 "v2: style enhance + background enhance together."),
    WorkflowSpec("background_enhance_v1_5", "Background enhance (v1.5)", "v1.5", "background enhance",
                 "v1.5 (switch): background LoRA, threshold embedding and cluster transformer."),
    WorkflowSpec("batch_sketches", "Batch: many sketches, one reference (v2)", "v2", "vanilla",
                 f"Every picture in input/{SKETCH_FOLDER}/ coloured with one reference; one result per sketch.",
                 batch=True),
)}


@dataclass(frozen=True)
class Options:
    """What a run may change. Defaults = the shipped example workflows (official app defaults)."""
    checkpoint: str | None = None            # None: CHECKPOINTS[family]
    prediction: str = "auto"
    clip_vision: str = CLIP_VISION
    clip_heads: int = 0                      # 0 = infer (ViT-H/14: 16)
    vae: str | None = None                   # None: the checkpoint's VAE; else a file of models/vae (Load VAE)
    masks: str = "isnet"                     # isnet: the pack's ISNet nodes; files: the pictures sketch_mask
    #                                          (of the original sketch; letterboxed like it) and reference_mask
    #                                          (of the reference, same size); images: ImageToMask of the
    #                                          prepared sketch / the reference picture (tests without ISNet)
    sketch: str = "sketch.png"               # file in input/
    reference: str = "reference.png"
    background: str | None = None            # a separate background picture (then no reference mask is needed)
    sketch_mask: str = "sketch_mask.png"     # masks == "files"
    reference_mask: str = "reference_mask.png"
    mask_channel: str = "red"                # channel of the mask pictures (masks files/images)
    sketch_folder: str = SKETCH_FOLDER       # batch workflow: input/ subfolder
    width: int = 0                           # 0: from the sketch's aspect ratio and size_base
    height: int = 0
    size_base: int | None = None             # None: SIZE_BASE[family]
    mask_net_size: int = 1024                # ISNet input size (official 1024)
    mode: str | None = None                  # None: the workflow's mode
    sketch_strength: float = 1.0
    sketch_mask_threshold: float = 0.05
    reference_mask_threshold: float = 0.5
    background_factor: float = 1.0
    merge_scale: float = 0.0
    reference_scale: float = 4.0
    sketch_scale: float = 1.0
    sampler: str = "dpmpp_2m"                # the app's diffusers DPM-Solver++ (2M)
    scheduler: str = "normal"
    steps: int = 20
    seed: int = 0
    seed_control: str = "randomize"          # UI only: what the frontend does to the seed after queueing
    filename_prefix: str | None = None       # None: ColorizeDiffusion/<stem>

    def with_(self, **changes) -> "Options":
        return replace(self, **changes)


OPTION_NAMES = tuple(f.name for f in fields(Options))

# ----------------------------------------------------------------------------------------------------------
# Node schemas (the subset of /object_info the builders need; tests/test_example_workflows.py checks every
# entry against the live /object_info: input_order, socket types, widgets, outputs, display names)
# ----------------------------------------------------------------------------------------------------------
W = "widget"


@dataclass(frozen=True)
class NodeSchema:
    inputs: tuple            # ((name, TYPE or W, optional), ...) in INPUT_TYPES order (required, then optional)
    outputs: tuple = ()      # ((name, TYPE), ...)
    display: str | None = None                 # the frontend's default title (None: the node id)
    seed_widget: str | None = None             # INT widget with control_after_generate
    upload: bool = False                       # image_upload combo: the frontend adds an "upload" widget last
    output_is_list: tuple = ()

    @property
    def sockets(self):
        return [(n, t, o) for n, t, o in self.inputs if t != W]

    @property
    def widgets(self):
        return [n for n, t, _ in self.inputs if t == W]


def _s(*specs):
    """('name', 'TYPE') / ('name', W) / ('name', 'TYPE', True) (optional) → the tuple form."""
    return tuple((s[0], s[1], bool(s[2]) if len(s) > 2 else False) for s in specs)


NODE_SCHEMAS: dict[str, NodeSchema] = {
    "LoadImage": NodeSchema(_s(("image", W)), (("IMAGE", "IMAGE"), ("MASK", "MASK")), "Load Image", upload=True),
    "LoadImageMask": NodeSchema(_s(("image", W), ("channel", W)), (("MASK", "MASK"),), "Load Image (as Mask)",
                                upload=True),
    "LoadImageDataSetFromFolder": NodeSchema(_s(("folder", W)), (("images", "IMAGE"),),
                                             "Load Image Dataset from Folder", output_is_list=(True,)),
    "ImageToMask": NodeSchema(_s(("image", "IMAGE"), ("channel", W)), (("MASK", "MASK"),), "Convert Image to Mask"),
    "VAELoader": NodeSchema(_s(("vae_name", W)), (("VAE", "VAE"),), "Load VAE"),
    "ColorizeDiffusionCheckpointLoader": NodeSchema(
        _s(("ckpt_name", W), ("prediction", W)),
        (("model", "MODEL"), ("colorizer", "COLORIZER"), ("vae", "VAE")), "Load ColorizeDiffusion Checkpoint"),
    "ColorizeDiffusionLoadOpenCLIPVision": NodeSchema(
        _s(("clip_name", W), ("heads", W), ("activation", W), ("dtype", W)),
        (("clip_vision", "CLIP_VISION"),), "ColorizeDiffusion Load OpenCLIP Vision"),
    "ColorizeDiffusionEncodeReference": NodeSchema(
        _s(("clip_vision", "CLIP_VISION"), ("image", "IMAGE")),
        (("reference", "COLORIZER_REFERENCE"),), "ColorizeDiffusion Encode Reference"),
    "ColorizeDiffusionPrepareSketch": NodeSchema(
        _s(("image", "IMAGE"), ("method", W), ("polarity", W), ("width", W), ("height", W), ("size_base", W),
           ("monochrome", W), ("extract_size", W), ("transparency_mask", "MASK", True)),
        (("sketch", "IMAGE"), ("width", "INT"), ("height", "INT"), ("colorizer_sketch", "COLORIZER_SKETCH")),
        "ColorizeDiffusion Prepare Sketch"),
    "ColorizeDiffusionSketchMask": NodeSchema(
        _s(("sketch", "IMAGE,COLORIZER_SKETCH"), ("polarity", W), ("net_size", W)),
        (("sketch_mask", "MASK"),), "ColorizeDiffusion Sketch Mask (ISNet)"),
    "ColorizeDiffusionReferenceMask": NodeSchema(
        _s(("reference", "IMAGE"), ("dilate", W), ("net_size", W), ("mask", "MASK", True)),
        (("mask", "MASK"), ("mask_undilated", "MASK")), "ColorizeDiffusion Reference Mask"),
    "ColorizeDiffusionConditioning": NodeSchema(
        _s(("model", "MODEL"), ("colorizer", "COLORIZER"), ("vae", "VAE"), ("sketch", "COLORIZER_SKETCH"),
           ("reference", "COLORIZER_REFERENCE"), ("mode", W), ("sketch_strength", W), ("sketch_mask_threshold", W),
           ("reference_mask_threshold", W), ("background_factor", W), ("merge_scale", W),
           ("sketch_mask", "MASK", True), ("reference_mask", "MASK", True), ("clip_vision", "CLIP_VISION", True),
           ("background", "COLORIZER_REFERENCE", True), ("attention", "COLORIZER_ATTENTION", True)),
        (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
         ("sketch_negative", "CONDITIONING"), ("latent", "LATENT")), "ColorizeDiffusion Conditioning"),
    "ColorizeDiffusionGuider": NodeSchema(
        _s(("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("reference_scale", W),
           ("sketch_scale", W), ("sketch_negative", "CONDITIONING", True)),
        (("GUIDER", "GUIDER"),), "ColorizeDiffusion Guider"),
    "RandomNoise": NodeSchema(_s(("noise_seed", W)), (("NOISE", "NOISE"),), None, seed_widget="noise_seed"),
    "KSamplerSelect": NodeSchema(_s(("sampler_name", W)), (("SAMPLER", "SAMPLER"),), None),
    "BasicScheduler": NodeSchema(_s(("model", "MODEL"), ("scheduler", W), ("steps", W), ("denoise", W)),
                                 (("SIGMAS", "SIGMAS"),), None),
    "SamplerCustomAdvanced": NodeSchema(
        _s(("noise", "NOISE"), ("guider", "GUIDER"), ("sampler", "SAMPLER"), ("sigmas", "SIGMAS"),
           ("latent_image", "LATENT")),
        (("output", "LATENT"), ("denoised_output", "LATENT")), None),
    "VAEDecode": NodeSchema(_s(("samples", "LATENT"), ("vae", "VAE")), (("IMAGE", "IMAGE"),), "VAE Decode"),
    "SaveImage": NodeSchema(_s(("images", "IMAGE"), ("filename_prefix", W)), (), "Save Image"),
}

# Widgets whose value names a user file (checked against the official names, not against a folder listing).
FILE_WIDGETS = {("LoadImage", "image"), ("LoadImageMask", "image"), ("LoadImageDataSetFromFolder", "folder"),
                ("VAELoader", "vae_name"), ("ColorizeDiffusionCheckpointLoader", "ckpt_name"),
                ("ColorizeDiffusionLoadOpenCLIPVision", "clip_name")}


# ----------------------------------------------------------------------------------------------------------
# Graph
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Node:
    id: int
    type: str
    widgets: dict
    links: dict                      # input name -> (source node id, output index)
    title: str | None = None
    col: int = 0
    color: str | None = None         # UI only

    @property
    def schema(self) -> NodeSchema:
        return NODE_SCHEMAS[self.type]


@dataclass
class Graph:
    stem: str
    spec: WorkflowSpec
    options: Options
    nodes: list = field(default_factory=list)

    def add(self, type_: str, col: int, widgets: dict | None = None, links: dict | None = None,
            title: str | None = None, color: str | None = None) -> int:
        schema = NODE_SCHEMAS[type_]
        widgets = dict(widgets or {})
        if set(widgets) != set(schema.widgets):
            raise ValueError(f"{type_}: widgets {sorted(widgets)} != schema {sorted(schema.widgets)}")
        links = dict(links or {})
        sockets = {n for n, _, _ in schema.sockets}
        unknown = set(links) - sockets
        missing = {n for n, _, opt in schema.sockets if not opt} - set(links)
        if unknown or missing:
            raise ValueError(f"{type_}: unknown inputs {sorted(unknown)}, unconnected required {sorted(missing)}")
        node = Node(len(self.nodes) + 1, type_, widgets, links, title, col, color)
        self.nodes.append(node)
        return node.id

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def find(self, type_: str, title: str | None = None) -> list:
        return [n for n in self.nodes if n.type == type_ and (title is None or n.title == title)]

    # ---------------------------------------------------------------------------------------------- API
    def to_api(self) -> dict:
        out = {}
        for n in self.nodes:
            inputs: dict[str, Any] = {}
            for name, typ, _ in n.schema.inputs:
                if typ == W:
                    inputs[name] = n.widgets[name]
                elif name in n.links:
                    src, slot = n.links[name]
                    inputs[name] = [str(src), slot]
            out[str(n.id)] = {"inputs": inputs, "class_type": n.type,
                              "_meta": {"title": n.title or n.schema.display or n.type}}
        return out

    # ---------------------------------------------------------------------------------------------- UI
    def to_ui(self) -> dict:
        """LiteGraph 0.4 format as the ComfyUI frontend (1.32) saves it: per node, the sockets first (optional
        ones with shape 7) then one input per widget; widgets_values in widget order plus the frontend's extra
        values (the seed's control_after_generate, the image upload button)."""
        links, link_id = [], 0
        in_links: dict[tuple, int] = {}
        out_links: dict[tuple, list] = {}
        for n in self.nodes:           # link ids in node order, then input order
            for idx, (name, typ, _) in enumerate(n.schema.sockets):
                if name in n.links:
                    src, slot = n.links[name]
                    link_id += 1
                    links.append([link_id, src, slot, n.id, idx, typ])
                    in_links[(n.id, name)] = link_id
                    out_links.setdefault((src, slot), []).append(link_id)
        positions, sizes = layout(self)
        order = execution_order(self)
        ui_nodes = []
        for n in self.nodes:
            schema = n.schema
            inputs = []
            for name, typ, opt in schema.sockets:
                entry = {"localized_name": name, "name": name}
                if opt:
                    entry["shape"] = 7
                entry.update({"type": typ, "link": in_links.get((n.id, name))})
                inputs.append(entry)
            for name in schema.widgets:
                inputs.append({"localized_name": name, "name": name, "type": widget_type(n.type, name),
                               "widget": {"name": name}, "link": None})
            if schema.upload:
                inputs.append({"localized_name": "choose file to upload", "name": "upload", "type": "IMAGEUPLOAD",
                               "widget": {"name": "upload"}, "link": None})
            outputs = []
            for slot, (name, typ) in enumerate(schema.outputs):
                entry = {"localized_name": name, "name": name, "type": typ,
                         "links": out_links.get((n.id, slot)) or None}
                if slot < len(schema.output_is_list) and schema.output_is_list[slot]:
                    entry["shape"] = 6
                outputs.append(entry)
            values = []
            for name in schema.widgets:
                values.append(n.widgets[name])
                if name == schema.seed_widget:
                    values.append(self.options.seed_control)
            if schema.upload:
                values.append("image")
            node = {"id": n.id, "type": n.type, "pos": list(positions[n.id]), "size": list(sizes[n.id]),
                    "flags": {}, "order": order[n.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                    "properties": {"Node name for S&R": n.type}, "widgets_values": values}
            if n.title:
                node["title"] = n.title
            if n.color:
                node["color"], node["bgcolor"] = n.color, _BG_COLORS.get(n.color, n.color)
            ui_nodes.append(node)
        return {"id": _workflow_uuid(self.stem), "revision": 0, "last_node_id": len(self.nodes),
                "last_link_id": link_id, "nodes": ui_nodes, "links": links, "groups": [], "config": {},
                "extra": {"ds": initial_view(positions, sizes),
                          "info": {"name": self.spec.title, "description": self.spec.description,
                                   "pack": PACK_TITLE}},
                "version": 0.4}


_WIDGET_TYPES = {"heads": "INT", "width": "INT", "height": "INT", "size_base": "INT", "extract_size": "INT",
                 "net_size": "INT", "steps": "INT", "noise_seed": "INT", "dilate": "BOOLEAN",
                 "filename_prefix": "STRING", "sketch_strength": "FLOAT", "sketch_mask_threshold": "FLOAT",
                 "reference_mask_threshold": "FLOAT", "background_factor": "FLOAT", "merge_scale": "FLOAT",
                 "reference_scale": "FLOAT", "sketch_scale": "FLOAT", "denoise": "FLOAT"}


def widget_type(node_type: str, name: str) -> str:
    """The frontend's input type of a widget (combos are "COMBO")."""
    return _WIDGET_TYPES.get(name, "COMBO")


_GREEN, _BLUE, _PURPLE = "#232", "#223", "#323"
_BG_COLORS = {_GREEN: "#353", _BLUE: "#335", _PURPLE: "#535"}


def _workflow_uuid(stem: str) -> str:
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"colorizediffusion/example_workflows/{stem}"))


# ----------------------------------------------------------------------------------------------------------
# The one definition
# ----------------------------------------------------------------------------------------------------------
def build(stem: str, options: Options | None = None) -> Graph:
    """The graph of workflow `stem` with `options` (default: as shipped)."""
    if stem not in WORKFLOWS:
        raise KeyError(f"unknown workflow {stem!r}; known: {', '.join(WORKFLOWS)}")
    spec = WORKFLOWS[stem]
    o = options or Options()
    if o.masks not in ("isnet", "files", "images"):
        raise ValueError(f"masks must be isnet, files or images (got {o.masks!r})")
    mode = o.mode or spec.mode
    masks = mode in MASK_MODES
    needs_reference_mask = masks and mode != "foreground enhance" and o.background is None
    g = Graph(stem, spec, o)

    # inputs ---------------------------------------------------------------------------------------------
    if spec.batch:
        sketch_img = g.add("LoadImageDataSetFromFolder", 0, {"folder": o.sketch_folder}, title="Sketches",
                           color=_GREEN)
        sketch_links = {"image": (sketch_img, 0)}
    else:
        sketch_img = g.add("LoadImage", 0, {"image": o.sketch}, title="Sketch", color=_GREEN)
        sketch_links = {"image": (sketch_img, 0), "transparency_mask": (sketch_img, 1)}
    ref_img = g.add("LoadImage", 0, {"image": o.reference}, title="Reference", color=_GREEN)
    bg_img = g.add("LoadImage", 0, {"image": o.background}, title="Background", color=_GREEN) \
        if o.background is not None else None

    # models ---------------------------------------------------------------------------------------------
    ckpt = g.add("ColorizeDiffusionCheckpointLoader", 1,
                 {"ckpt_name": o.checkpoint or CHECKPOINTS[spec.family], "prediction": o.prediction}, color=_BLUE)
    clip = g.add("ColorizeDiffusionLoadOpenCLIPVision", 1,
                 {"clip_name": o.clip_vision, "heads": o.clip_heads, "activation": "gelu", "dtype": "fp32"},
                 color=_BLUE)
    vae = (g.add("VAELoader", 1, {"vae_name": o.vae}, color=_BLUE), 0) if o.vae else (ckpt, 2)

    # preprocessing ----------------------------------------------------------------------------------------
    sketch = g.add("ColorizeDiffusionPrepareSketch", 2,
                   {"method": "none", "polarity": "auto", "width": o.width, "height": o.height,
                    "size_base": o.size_base or SIZE_BASE[spec.family], "monochrome": "auto", "extract_size": 512},
                   sketch_links)
    reference = g.add("ColorizeDiffusionEncodeReference", 2, {}, {"clip_vision": (clip, 0), "image": (ref_img, 0)})
    background = g.add("ColorizeDiffusionEncodeReference", 2, {}, {"clip_vision": (clip, 0), "image": (bg_img, 0)},
                       title="Encode Background") if bg_img is not None else None
    extra_links: dict = {}
    if masks:
        if o.masks == "isnet":
            sketch_mask = g.add("ColorizeDiffusionSketchMask", 2, {"polarity": "auto", "net_size": o.mask_net_size},
                                {"sketch": (sketch, 3)})
        elif o.masks == "files":
            # a mask picture of the original sketch, letterboxed exactly like the sketch (black = background)
            mask_img = g.add("LoadImage", 0, {"image": o.sketch_mask}, title="Sketch mask", color=_GREEN)
            fitted = g.add("ColorizeDiffusionPrepareSketch", 2,
                           {"method": "none", "polarity": "keep", "width": o.width, "height": o.height,
                            "size_base": o.size_base or SIZE_BASE[spec.family], "monochrome": "auto",
                            "extract_size": 512}, {"image": (mask_img, 0)}, title="Fit sketch mask")
            sketch_mask = g.add("ImageToMask", 2, {"channel": o.mask_channel}, {"image": (fitted, 0)},
                                title="Sketch mask")
        else:
            sketch_mask = g.add("ImageToMask", 2, {"channel": o.mask_channel}, {"image": (sketch, 0)},
                                title="Sketch mask")
        extra_links["sketch_mask"] = (sketch_mask, 0)
        if needs_reference_mask:
            if o.masks == "isnet":
                ref_mask = g.add("ColorizeDiffusionReferenceMask", 2, {"dilate": True, "net_size": o.mask_net_size},
                                 {"reference": (ref_img, 0)})
            elif o.masks == "files":
                ref_mask = g.add("LoadImageMask", 0, {"image": o.reference_mask, "channel": o.mask_channel},
                                 title="Reference mask")
            else:
                ref_mask = g.add("ImageToMask", 2, {"channel": o.mask_channel}, {"image": (ref_img, 0)},
                                 title="Reference mask")
            extra_links["reference_mask"] = (ref_mask, 0)
            extra_links["clip_vision"] = (clip, 0)      # encodes the background-only (bleached) reference
    if background is not None:
        extra_links["background"] = (background, 0)

    # conditioning and sampling ----------------------------------------------------------------------------
    cond = g.add("ColorizeDiffusionConditioning", 3,
                 {"mode": mode, "sketch_strength": o.sketch_strength, "sketch_mask_threshold": o.sketch_mask_threshold,
                  "reference_mask_threshold": o.reference_mask_threshold, "background_factor": o.background_factor,
                  "merge_scale": o.merge_scale},
                 {"model": (ckpt, 0), "colorizer": (ckpt, 1), "vae": vae, "sketch": (sketch, 3),
                  "reference": (reference, 0), **extra_links}, color=_PURPLE)
    guider = g.add("ColorizeDiffusionGuider", 4, {"reference_scale": o.reference_scale, "sketch_scale": o.sketch_scale},
                   {"model": (cond, 0), "positive": (cond, 1), "negative": (cond, 2), "sketch_negative": (cond, 3)},
                   color=_PURPLE)
    noise = g.add("RandomNoise", 4, {"noise_seed": o.seed})
    sampler = g.add("KSamplerSelect", 4, {"sampler_name": o.sampler})
    sigmas = g.add("BasicScheduler", 4, {"scheduler": o.scheduler, "steps": o.steps, "denoise": 1.0},
                   {"model": (cond, 0)})
    samples = g.add("SamplerCustomAdvanced", 5, {}, {"noise": (noise, 0), "guider": (guider, 0),
                                                     "sampler": (sampler, 0), "sigmas": (sigmas, 0),
                                                     "latent_image": (cond, 4)})
    image = g.add("VAEDecode", 5, {}, {"samples": (samples, 0), "vae": vae})
    g.add("SaveImage", 6, {"filename_prefix": o.filename_prefix or f"ColorizeDiffusion/{stem}"},
          {"images": (image, 0)})
    return g


# ----------------------------------------------------------------------------------------------------------
# Layout (UI positions; also what the thumbnails draw)
# ----------------------------------------------------------------------------------------------------------
COL_X = (0, 360, 760, 1160, 1560, 1940, 2300)
COL_W = (320, 340, 360, 360, 340, 320, 320)
_ROW_H, _WIDGET_H, _TITLE_H, _GAP = 22, 24, 30, 40
_IMAGE_PREVIEW_H = 230


def node_size(n: Node) -> tuple:
    s = n.schema
    h = _TITLE_H + _ROW_H * max(len(s.sockets), len(s.outputs)) + _WIDGET_H * (len(s.widgets) + s.upload) + 12
    if n.type == "LoadImage":
        h += _IMAGE_PREVIEW_H
    if n.type == "SaveImage":
        h += _IMAGE_PREVIEW_H
    return COL_W[n.col], h


def layout(g: Graph) -> tuple[dict, dict]:
    y = {c: 0 for c in range(len(COL_X))}
    pos, size = {}, {}
    for n in g.nodes:
        w, h = node_size(n)
        pos[n.id] = (COL_X[n.col], y[n.col])
        size[n.id] = (w, h)
        y[n.col] += h + _GAP
    return pos, size


def initial_view(positions: dict, sizes: dict, screen=(1500, 820), origin=(70, 140)) -> dict:
    """The canvas view the template opens with: the whole graph on a 1600x1000 window, below the top bars."""
    width = max(positions[i][0] + sizes[i][0] for i in positions)
    height = max(positions[i][1] + sizes[i][1] for i in positions)
    scale = round(min(screen[0] / width, screen[1] / height, 1.0), 3)
    return {"scale": scale, "offset": [round(origin[0] / scale, 1), round(origin[1] / scale, 1)]}


def execution_order(g: Graph) -> dict:
    """A topological order (the frontend's `order` field)."""
    order, done = {}, set()

    def visit(nid):
        if nid in done:
            return
        for src, _ in g.node(nid).links.values():
            visit(src)
        done.add(nid)
        order[nid] = len(order)

    for n in g.nodes:
        visit(n.id)
    return order


# ----------------------------------------------------------------------------------------------------------
# Serialisation (the exact bytes of the shipped files)
# ----------------------------------------------------------------------------------------------------------
def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def shipped_files() -> dict[str, str]:
    """Relative path -> text of every generated JSON file (UI workflows and their API copies)."""
    out = {}
    for stem in WORKFLOWS:
        g = build(stem)
        out[f"example_workflows/{stem}.json"] = dumps(g.to_ui())
        out[f"tests/workflows/{stem}.api.json"] = dumps(g.to_api())
    return out
