"""The example workflows, defined once, rendered in both ComfyUI formats.

``scripts/build_workflows.py`` writes ``example_workflows/<stem>.json`` (UI/LiteGraph format, what File→Save gives
and what the template browser loads) and ``tests/workflows/<stem>.api.json`` (API format, what ``POST /prompt``
takes) from :func:`build`; the tests build their prompts with the same function, and the HTTP client (``client/``)
reads the written UI files.

A workflow is a graph: the mode is which nodes are wired after Apply Sketch (``model_patches/colorize_diffusion/modes.py``, the one
rule table). The API form needs nothing but this module; the UI form takes the nodes' ``/object_info`` (the
schemas are the one source of truth for input order, widgets and outputs: nothing here repeats them).
``Options()`` gives the shipped graphs: the official app's defaults and the official file names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace

from ..model_patches.colorize_diffusion.modes import OFFICIAL_MODES, official_mode, unfinished
from .advanced_workflows import build_advanced
from .colorflow_workflows import COLORFLOW_FAMILIES, build_colorflow
from .graph import (_BLUE, _GREEN, _PURPLE, GROUPS, IMAGE_LOADER, NOTE, PACK_TITLE, Graph, Node,  # noqa: F401
                    NodeSchema, layout, model_nodes, reference_mask_node, sampler_nodes, sketch_mask_node)
from .pictures import folder_node, picture_node
from .model_files import (CHECKPOINTS, CLIP_VISION, CLIP_VISION_XL, FILE_WIDGETS, MODEL_FILES,  # noqa: F401
                          MODEL_WIDGETS, NETWORK_FILES, TAGGER, TEXT_TOWER, XL_FAMILIES)

# ----------------------------------------------------------------------------------------------------------
# Official defaults (reference-app.md §1.2), file names and where they come from (model_files.py)
# ----------------------------------------------------------------------------------------------------------
SIZE_BASE = {"v1": 512, "v1.5": 512, "v2": 768, "sdxl": 1024, "xlv2": 1024}   # the families' training resolutions
# The XL app's defaults where they differ from the SD2.1 app's (reference-app.md §1.7, §1.11)
XL_DEFAULTS = {"sampler": "dpmpp_3m_sde", "scheduler": "exponential", "clip_vision": CLIP_VISION_XL}
SKETCH_FOLDER = "colorizediffusion_sketches"      # example folder read by the batch workflow
POOL_FOLDER = "colorizediffusion_pool"            # example folder: the chapter workflow's reference pool
EXAMPLE_SKETCH = "colorizediffusion_sketch.png"   # the pack's own pictures (example_workflows/input/), read in place
EXAMPLE_REFERENCE = "colorizediffusion_reference.png"
EXAMPLE_BACKGROUND = "colorizediffusion_background.png"

# Mode names as the command line takes them (short and full) -> the official mode
MODES = {"vanilla": "vanilla", "style": "style enhance", "background": "background enhance",
         "foreground": "foreground enhance", "full": "full"}
MODES.update({m: m for m in OFFICIAL_MODES})


def workflow_stem(mode: str, family: str | None) -> str:
    """The example workflow a mode starts from."""
    if mode == "vanilla":
        return "vanilla"
    if mode == "style enhance":
        return "style_enhance_v2"
    if family == "v1.5" and mode in ("full", "foreground enhance", "background enhance"):
        return "foreground_background_v1_5"
    if mode == "full":
        return "full_enhance_v2"
    return "background_enhance_v2"


@dataclass(frozen=True)
class WorkflowSpec:
    stem: str
    title: str
    family: str            # "v1" | "v1.5" | "v2" | "sdxl" | "xlv2": the checkpoint and the automatic size
    mode: str              # an official mode: which encoder nodes the graph wires
    description: str
    batch: bool = False    # many sketches (a folder), one reference
    background: bool = False   # a separate background picture
    similarity: bool = False   # text manipulation of the reference and attention injection
    sketch_levels: bool = False   # the XL app's per-level sketch strengths (Sketch strength 1..4)
    chapter: bool = False      # a folder of pages, references retrieved per page from a pool, colours under the page
    advanced: bool = False     # every control node of the family (devtools/advanced_workflows.py)


WORKFLOWS: dict[str, WorkflowSpec] = {w.stem: w for w in (
    WorkflowSpec("vanilla", "Colorize a sketch from a reference", "v1", "vanilla",
                 "The simplest graph: a line drawing and a colour reference give the drawing coloured like the "
                 "reference. Works with every ColorizeDiffusion checkpoint; shipped with v1."),
    WorkflowSpec("foreground_background_v1_5", "Character and background apart (v1.5)", "v1.5", "full",
                 "v1.5 (switch): the sketch mask splits the attention, the character takes the reference's "
                 "character, the background its background (foreground and background enhance)."),
    WorkflowSpec("background_enhance_v2", "Background enhance from a background picture (v2)", "v2",
                 "background enhance",
                 "v2: the character is coloured from the reference, the background from a separate picture; the "
                 "sketch mask keeps them apart.", background=True),
    WorkflowSpec("style_enhance_v2", "Style enhance (v2)", "v2", "style enhance",
                 "v2: the style encoder carries more of the reference's rendering (shading, palette, strokes)."),
    WorkflowSpec("full_enhance_v2", "Full enhance (v2)", "v2", "full",
                 "v2: style and background enhance together, the background taken from the reference itself."),
    WorkflowSpec("full_enhance_background_v2", "Full enhance with a background picture (v2)", "v2", "full",
                 "v2: style and background enhance, the background taken from a separate picture.",
                 background=True),
    WorkflowSpec("text_and_injection_v2", "Steer the reference with text, strengthen it by injection (v2)", "v2",
                 "vanilla",
                 "v2: a text manipulation moves the reference's tokens (here: the dress towards blue) and attention "
                 "injection makes the picture follow the reference more closely (one extra UNet pass per step).",
                 similarity=True),
    WorkflowSpec("batch_sketches", "Many sketches, one reference (v2)", "v2", "vanilla",
                 f"Every picture in {SKETCH_FOLDER}/ coloured with one reference; one result per sketch.",
                 batch=True),
    WorkflowSpec("chapter_v2", "A chapter from a reference pool (v2)", "v2", "vanilla",
                 f"Every page in {SKETCH_FOLDER}/ coloured with references retrieved for it from the pool in "
                 f"{POOL_FOLDER}/ (ColorFlow's retrieval, the pool encoded once); the colours are put under the "
                 "original page at its own resolution, lines and lettering kept.", batch=True, chapter=True),
    WorkflowSpec("chapter_colorflow", "A chapter with ColorFlow (sketch pages, PixArt)", "pixart", "colorflow",
                 f"Every page in {SKETCH_FOLDER}/ (line art) coloured by ColorFlow's sketch model: the references "
                 f"retrieved for it from the pool in {POOL_FOLDER}/ around the page on ColorFlow's canvas, "
                 "the PixArt colorizer with its ColorGuider and LoRA, then the guided super-resolution against the "
                 "page itself: sharp lines and lettering at the page's own size.", batch=True, chapter=True),
    WorkflowSpec("shaded_pages_colorflow", "Shaded pages with ColorFlow (line art with grey shading, PixArt)",
                 "pixart", "colorflow",
                 f"Every page in {SKETCH_FOLDER}/ with grey shading coloured by ColorFlow's shading model: the "
                 "page decolorized to lines plus grey levels (Sketch_Shading), the references retrieved for it from "
                 f"{POOL_FOLDER}/, the PixArt colorizer with its ColorGuider and LoRA, then the guided "
                 "super-resolution.", batch=True, chapter=True),
    WorkflowSpec("grey_pages_colorflow", "Grey pages with ColorFlow (screentone, SD1.5)", "sd15", "colorflow",
                 f"Every grey, screentoned page in {SKETCH_FOLDER}/ coloured by ColorFlow's GraySD model (SD1.5 "
                 f"with its ColorGuider and LoRA) from the references retrieved from {POOL_FOLDER}/, then "
                 "sharpened by the guided super-resolution at the page's own size.", batch=True, chapter=True),
    WorkflowSpec("advanced_v2", "Every control: lines, masks, text, strengths, window, attention maps (v2)", "v2",
                 "background enhance",
                 "v2 with every control node: a weight-free line extractor, Reference Pad, the reference mask "
                 "(previewed by Mask Overlay), the reference with its character whitened as the background, text "
                 "manipulation in the app's text form with its Visualize, Block Reference Strength (the reference's "
                 "strength per transformer block), the Guidance Window and the result's Attention Map.",
                 similarity=True, advanced=True),
    WorkflowSpec("vanilla_xl", "Colorize a sketch from a reference (XL)", "xlv2", "vanilla",
                 "ColorizeDiffusion XL at 1024 px: the reference is read by CLIP bigG and the WD tagger together. "
                 "Works with sdxl and xlv2 checkpoints."),
    WorkflowSpec("background_enhance_xl", "Character and background apart (XL v2)", "xlv2", "background enhance",
                 "XL v2: the sketch mask splits the attention; the background is taken from the reference with its "
                 "character whitened out, through the background ReferenceNet and the background LoRA."),
    WorkflowSpec("advanced_xl", "Every control: lines, masks, strengths, window, attention maps (XL v2)", "xlv2",
                 "background enhance",
                 "XL v2 with every control node of XL: a weight-free line extractor, Reference Pad, the reference "
                 "mask (previewed by Mask Overlay), the reference with its character whitened as the background "
                 "(its tokens and ReferenceNet features), Reference Strength, the Guidance Window (honoured by XL, "
                 "as the app) and the result's Attention Map.", advanced=True),
    WorkflowSpec("background_picture_xl", "Background from a background picture (XL v2)", "xlv2",
                 "background enhance",
                 "XL v2: the character is coloured from the reference, the background from a separate picture (its "
                 "tokens and its ReferenceNet features); the sketch mask keeps them apart. Sketch Level Strength holds "
                 "the XL app's four per-level sketch strengths.", background=True, sketch_levels=True),
)}


def workflow_groups() -> dict[str, list]:
    """The workflows of the XL families and ColorFlow's (model_files.OTHER_FILES names them so)."""
    return {"xl": [s for s, w in WORKFLOWS.items() if w.family in XL_FAMILIES],
            "colorflow": [s for s, w in WORKFLOWS.items() if w.family in COLORFLOW_FAMILIES]}


@dataclass(frozen=True)
class Options:
    """What a run may change. Defaults = the shipped example workflows (official app defaults)."""
    checkpoint: str | None = None            # None: CHECKPOINTS[family]
    family: str | None = None                # the checkpoint's family (None: the workflow's)
    prediction: str = "auto"
    clip_vision: str = CLIP_VISION           # XL workflows: clip_vision_g.safetensors when left at this default
    tagger: str = TAGGER                     # XL: the WD tagger file in models/colorizediffusion/tagger
    clip_heads: int = 0                      # 0 = infer (ViT-H/14: 16)
    text_tower: str = TEXT_TOWER             # the text-manipulation workflow: a full OpenCLIP file in clip_vision
    text_heads: int = 0                      # 0 = from its width
    vae: str | None = None                   # None: the checkpoint's VAE; else a file of models/vae (Load VAE)
    masks: str = "isnet"                     # isnet: the pack's ISNet nodes; files: the pictures sketch_mask
    #                                          (of the original sketch; letterboxed like it) and reference_mask
    #                                          (of the reference, same size); images: ImageToMask of the
    #                                          prepared sketch / the reference picture (tests without ISNet)
    sketch: str = EXAMPLE_SKETCH             # an example picture, or a file of input/
    reference: str = EXAMPLE_REFERENCE
    background: str | None = None            # a separate background picture (None: the workflow's own)
    sketch_mask: str = "sketch_mask.png"     # masks == "files"
    reference_mask: str = "reference_mask.png"
    mask_channel: str = "red"                # channel of the mask pictures (masks files/images)
    sketch_folder: str = SKETCH_FOLDER       # batch workflow: an example folder, or a folder of input/
    pool_folder: str = POOL_FOLDER           # chapter workflow: the reference pool folder
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
    pool_resolution: str = "512x800"         # ColorFlow workflows: Reference Pool's page size
    colorflow_base: str | None = None        # ColorFlow workflows: a diffusers folder of models/diffusers as the
    #                                          base (tests: the tiny bases) instead of ComfyUI's loaders
    colorflow_text: str | None = None        # ... and a diffusers folder whose text encoder (and VAE) to use

    def with_(self, **changes) -> "Options":
        return replace(self, **changes)


OPTION_NAMES = tuple(f.name for f in fields(Options))

# ----------------------------------------------------------------------------------------------------------
# The one definition
# ----------------------------------------------------------------------------------------------------------
def build(stem: str, options: Options | None = None) -> Graph:
    """The graph of workflow `stem` with `options` (default: as shipped)."""
    if stem not in WORKFLOWS:
        raise KeyError(f"unknown workflow {stem!r}; known: {', '.join(WORKFLOWS)}")
    spec = WORKFLOWS[stem]
    o = options or Options()
    if spec.family in COLORFLOW_FAMILIES:
        return build_colorflow(stem, spec, o, Graph, {"inputs": _GREEN, "models": _BLUE, "encoders": _PURPLE})
    if o.masks not in ("isnet", "files", "images"):
        raise ValueError(f"masks must be isnet, files or images (got {o.masks!r})")
    family = o.family or spec.family
    xl = family in XL_FAMILIES
    if xl:       # the XL app's defaults wherever the options were left at the SD2.1 app's
        defaults = Options()
        o = replace(o, **{k: v for k, v in XL_DEFAULTS.items() if getattr(o, k) == getattr(defaults, k)})
    parts = official_mode(MODES.get(o.mode, o.mode) if o.mode else spec.mode, family)
    problem = unfinished(family, parts)
    if problem:
        raise ValueError(problem)
    background_file = o.background if o.background is not None else (EXAMPLE_BACKGROUND if spec.background else None)
    needs_reference_mask = parts.background and background_file is None
    g = Graph(stem, spec, o, parts)
    if spec.advanced:
        build_advanced(g, o, family, xl, o.checkpoint or CHECKPOINTS[family], o.size_base or SIZE_BASE[family])
        g.note = _note(g, family, None)
        return g

    # inputs ---------------------------------------------------------------------------------------------
    if spec.batch:
        sketch_img = folder_node(g, o.sketch_folder, "Sketches", _GREEN)
        sketch_links = {"image": (sketch_img, 0)}
    else:
        sketch_img = picture_node(g, o.sketch, "Sketch", _GREEN)
        sketch_links = {"image": (sketch_img, 0), "transparency_mask": (sketch_img, 1)}
    ref_img = picture_node(g, o.reference, "Reference", _GREEN) if not spec.chapter else None
    bg_img = picture_node(g, background_file, "Background", _GREEN) if background_file is not None else None

    # models ---------------------------------------------------------------------------------------------
    ckpt, clip, vae, tagger = model_nodes(g, o, o.checkpoint or CHECKPOINTS[family], xl)

    # preparation ------------------------------------------------------------------------------------------
    size_base = o.size_base or SIZE_BASE[family]
    sketch = g.add("ColorizeDiffusionPrepareSketch", 2,
                   {"method": "none", "polarity": "auto", "width": o.width, "height": o.height,
                    "size_base": size_base, "monochrome": "auto", "extract_size": 512,
                    "resampling": "pillow" if xl else "tensor"}, sketch_links)
    if spec.chapter:          # a reference per page, retrieved from the pool (encoded once for the chapter)
        pool = g.add("ColorizeDiffusionReferencePool", 2, {"resolution": "512x800", "folder": o.pool_folder},
                     {"clip_vision": (clip, 0)})
        retrieved = g.add("ColorizeDiffusionRetrieveReferences", 2, {"top_k": 3},
                          {"pool": (pool, 0), "clip_vision": (clip, 0), "page": (sketch_img, 0)})
        ref_source = (retrieved, 2)
    else:
        ref_source = (ref_img, 0)
    reference = g.add("ColorizeDiffusionEncodeReference", 2, {},
                      {"clip_vision": (clip, 0), "image": ref_source, **tagger})
    if spec.similarity:
        tower = g.add("ColorizeDiffusionLoadTextTower", 1, {"clip_name": o.text_tower, "heads": o.text_heads},
                      color=_BLUE)
        rows = g.add("ColorizeDiffusionManipulation", 2,
                     {"target": "a blue dress", "anchor": "a red dress", "control": "dress", "target_scale": 3.0,
                      "enhance": False, "threshold_0": 0.5, "threshold_1": 0.55, "threshold_2": 0.65,
                      "threshold_3": 0.95})
        reference = g.add("ColorizeDiffusionManipulateReference", 2, {},
                          {"reference": (reference, 0), "text_tower": (tower, 0), "manipulations": (rows, 0)})
    background = g.add("ColorizeDiffusionEncodeReference", 2, {},
                       {"clip_vision": (clip, 0), "image": (bg_img, 0), **tagger},
                       title="Encode Background") if bg_img is not None else None
    sketch_mask = sketch_mask_node(g, o, sketch, size_base, "pillow" if xl else "tensor") if parts.split else None
    ref_mask = reference_mask_node(g, o, ref_img, xl) if needs_reference_mask else None

    # encoders: the mode is which of them are wired ------------------------------------------------------
    applied = g.add("ColorizeDiffusionApplySketch", 3, {"sketch_strength": o.sketch_strength,
                                                        "samples_per_sketch": 1},
                    {"model": (ckpt, 0), "colorizer": (ckpt, 1), "sketch": (sketch, 3), "reference": (reference, 0)},
                    color=_PURPLE)
    pair = {"positive": (applied, 1), "negative": (applied, 2)}
    if spec.sketch_levels:
        levels = g.add("ColorizeDiffusionSketchLevelStrength", 3, {f"level_{i}": 1.0 for i in range(1, 5)}, pair,
                       color=_PURPLE)
        pair = {"positive": (levels, 0), "negative": (levels, 1)}
    if parts.split:
        split = g.add("ColorizeDiffusionSplitAttention", 3,
                      {"threshold": o.sketch_mask_threshold, "foreground_strength": 1.0, "background_strength": 1.0,
                       "merge_scale": o.merge_scale, "foreground_enhance": parts.foreground,
                       "strengths_all_families": False}, {**pair, "sketch_mask": (sketch_mask, 0)}, color=_PURPLE)
        pair = {"positive": (split, 0), "negative": (split, 1)}
    if parts.background:
        links = {**pair, "vae": vae}
        if background is not None:
            links["background"] = (background, 0)
        else:
            links.update({"clip_vision": (clip, 0), "reference_mask": (ref_mask, 0), **tagger})
        if xl and family == "xlv2" and background is not None:      # the ReferenceNet reads the reference mask too
            links["reference_mask"] = (reference_mask_node(g, o, ref_img, xl), 0)
        bg = g.add("ColorizeDiffusionBackgroundEncoder", 3,
                   {"reference_mask_threshold": o.reference_mask_threshold, "background_factor": o.background_factor,
                    "latent_copy": False}, links, color=_PURPLE)
        pair = {"positive": (bg, 0), "negative": (bg, 1)}
    if parts.style:
        links = {**pair, "vae": vae}
        if background is not None:
            links["background"] = (background, 0)
        style = g.add("ColorizeDiffusionStyleEncoder", 3, {"merge_scale": o.merge_scale}, links, color=_PURPLE)
        pair = {"positive": (style, 0), "negative": (style, 1)}

    model = (applied, 0)
    if spec.similarity:
        injected = g.add("ColorizeDiffusionAttentionInjection", 3,
                         {"reference_fidelity": 0.5, "sketch_fidelity": 0.0, "start": 0.0, "seed": 0},
                         {"model": model, "colorizer": (ckpt, 1), "vae": vae, "reference_image": (ref_img, 0),
                          "latent": (applied, 3)}, color=_PURPLE)
        model = (injected, 0)

    # sampler and output -----------------------------------------------------------------------------------
    samples = sampler_nodes(g, o, model, pair, applied)
    image = g.add("VAEDecode", 5, {}, {"samples": (samples, 0), "vae": vae})
    if spec.chapter:          # the colours under the original page, at its own resolution
        image = g.add("ColorizeDiffusionColourUnderPage", 5, {"mode": "multiply"},
                      {"colours": (image, 0), "page": (sketch_img, 0), "sketch": (sketch, 3)})
    g.add("SaveImage", 5, {"filename_prefix": o.filename_prefix or f"ColorizeDiffusion/{stem}"},
          {"images": (image, 0)})
    g.note = _note(g, family, background_file)
    return g


def _note(g: Graph, family: str, background_file: str | None) -> str:
    """What a newcomer needs before the first Run: which files go where, and what the graph does."""
    files = [f"- {n.widgets['ckpt_name']}: models/colorizediffusion/" for n in g.find("ColorizeDiffusionCheckpointLoader")]
    clip_name = next(n.widgets["clip_name"] for n in g.find("ColorizeDiffusionLoadOpenCLIPVision"))
    files.append(f"- {clip_name}: models/clip_vision/")
    for n in g.find("ColorizeDiffusionLoadWDTagger"):
        files.append(f"- {n.widgets['tagger_name']} (SmilingWolf/wd-v1-4-swinv2-tagger-v2 model.safetensors): "
                     "models/colorizediffusion/tagger/")
    if family in XL_FAMILIES:
        files.append("- XL checkpoints: download from Hugging Face tellurion/ColorizeDiffusionXL into "
                     "models/colorizediffusion/ and pick the file in the loader")
    if g.spec.similarity:
        files.append(f"- {g.options.text_tower} (the full OpenCLIP ViT-H-14, for its text tower): models/clip_vision/")
    for node_type, name in NETWORK_FILES.items():
        if node_type in g.node_types:
            files.append(f"- {name}: models/colorizediffusion/preprocessors/")
    pictures = ("the pictures of " + SKETCH_FOLDER + "/" if g.spec.batch else "Sketch") + \
        (f", the reference pool in {POOL_FOLDER}/" if g.spec.chapter else ", Reference") + \
        (", Background" if background_file else "")
    return "\n".join([
        g.spec.title, "", g.spec.description, "",
        "Model files (Run offers the downloads when they are missing):", *files, "",
        f"Pictures: {pictures} - the pack's own examples, read in place by the Example Picture nodes; for yours, "
        "replace them with ColorizeDiffusion Load Image (a folder: Load Image Dataset from Folder).",
        "The encoder nodes wired after Apply Sketch are the mode: remove or add Split Attention, Background "
        "Encoder and Style Encoder to change it.",
        f"Checkpoint family {family}; Guider: reference scale 4 and sketch scale 1 are the official defaults.",
    ])


# ----------------------------------------------------------------------------------------------------------
# Serialisation (the exact bytes of the shipped files)
# ----------------------------------------------------------------------------------------------------------
def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def shipped_files(object_info: dict) -> dict[str, str]:
    """Relative path -> text of every generated JSON file (UI workflows and their API copies)."""
    out = {}
    for stem in WORKFLOWS:
        g = build(stem)
        out[f"example_workflows/{stem}.json"] = dumps(g.to_ui(object_info))
        out[f"tests/workflows/{stem}.api.json"] = dumps(g.to_api())
    return out
