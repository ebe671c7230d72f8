"""The workflow graph (nodes, links, columns) and its two ComfyUI forms: the API form (what ``POST /prompt`` takes)
and the UI form (LiteGraph 0.4, laid out from the nodes' ``/object_info``, what the template browser loads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model_files import MODEL_FILES, MODEL_WIDGETS, NETWORK_FILES
from .pictures import IMAGE_LOADER, picture_node

PACK_TITLE = "ColorizeDiffusion"
NOTE = "Note"     # the frontend's note node (not a backend node: absent from /object_info and from the API form)

# Groups, left to right: what a newcomer reads in order
GROUPS = ("Inputs", "Models", "Preparation", "Encoders", "Sampler", "Output")
_GROUP_COLORS = ("#3f789e", "#8A8", "#b58b2a", "#a1309b", "#444", "#88A")

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
    col: int = 0                     # index into GROUPS
    color: str | None = None         # UI only


@dataclass
class Graph:
    stem: str
    spec: Any              # workflows.WorkflowSpec
    options: Any           # workflows.Options
    parts: Any             # modes.ModeParts
    nodes: list = field(default_factory=list)
    note: str = ""

    def add(self, type_: str, col: int, widgets: dict | None = None, links: dict | None = None,
            title: str | None = None, color: str | None = None) -> int:
        node = Node(len(self.nodes) + 1, type_, dict(widgets or {}), dict(links or {}), title, col, color)
        self.nodes.append(node)
        return node.id

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def find(self, type_: str, title: str | None = None) -> list:
        return [n for n in self.nodes if n.type == type_ and (title is None or n.title == title)]

    @property
    def node_types(self) -> set:
        return {n.type for n in self.nodes}

    # ---------------------------------------------------------------------------------------------- API
    def to_api(self) -> dict:
        out = {}
        for n in self.nodes:
            inputs: dict[str, Any] = dict(n.widgets)
            inputs.update({name: [str(src), slot] for name, (src, slot) in n.links.items()})
            out[str(n.id)] = {"inputs": inputs, "class_type": n.type, "_meta": {"title": n.title or n.type}}
        return out

    # ---------------------------------------------------------------------------------------------- UI
    def to_ui(self, object_info: dict) -> dict:
        """LiteGraph 0.4 format as the ComfyUI frontend (1.32) saves it, from the nodes' /object_info: per node,
        the sockets first (optional ones with shape 7) then one input per widget; widgets_values in widget order
        plus the frontend's extra values (the seed's control_after_generate, the image upload button)."""
        schemas = {n.id: NodeSchema.of(object_info, n.type) for n in self.nodes}
        for n in self.nodes:
            schemas[n.id].check(n)
        links, link_id = [], 0
        in_links: dict[tuple, int] = {}
        out_links: dict[tuple, list] = {}
        for n in self.nodes:           # link ids in node order, then input order
            for name, typ, _ in schemas[n.id].sockets:
                if name in n.links:
                    src, slot = n.links[name]
                    link_id += 1
                    links.append([link_id, src, slot, n.id, [s[0] for s in schemas[n.id].sockets].index(name), typ])
                    in_links[(n.id, name)] = link_id
                    out_links.setdefault((src, slot), []).append(link_id)
        positions, sizes = layout(self, schemas)
        order = execution_order(self)
        ui_nodes = []
        for n in self.nodes:
            schema = schemas[n.id]
            inputs = []
            for name, typ, opt in schema.sockets:
                entry = {"localized_name": name, "name": name}
                if opt:
                    entry["shape"] = 7
                entry.update({"type": typ, "link": in_links.get((n.id, name))})
                inputs.append(entry)
            for name, typ in schema.widgets:
                inputs.append({"localized_name": name, "name": name, "type": typ, "widget": {"name": name},
                               "link": None})
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
            for name, _ in schema.widgets:
                values.append(n.widgets[name])
                if name == schema.seed_widget:
                    values.append(self.options.seed_control)
            if schema.upload:
                values.append("image")
            properties = {"Node name for S&R": n.type}
            models = _models(n)
            if models:
                properties["models"] = models
            node = {"id": n.id, "type": n.type, "pos": list(positions[n.id]), "size": list(sizes[n.id]),
                    "flags": {}, "order": order[n.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                    "properties": properties, "widgets_values": values}
            if n.title:
                node["title"] = n.title
            if n.color:
                node["color"], node["bgcolor"] = n.color, _BG_COLORS.get(n.color, n.color)
            ui_nodes.append(node)
        note_id = len(self.nodes) + 1
        note_pos, note_size = note_box(positions, sizes, self.note)
        group_list = groups(self, positions, sizes, note_pos, note_size)
        ui_nodes.append({"id": note_id, "type": NOTE, "pos": note_pos, "size": note_size, "flags": {},
                         "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
                         "title": "Read me: files and what this graph does", "properties": {},
                         "widgets_values": [self.note], "color": "#432", "bgcolor": "#653"})
        return {"id": _workflow_uuid(self.stem), "revision": 0, "last_node_id": note_id,
                "last_link_id": link_id, "nodes": ui_nodes, "links": links,
                "groups": group_list, "config": {},
                "extra": {"ds": initial_view([g["bounding"] for g in group_list] + [note_pos + note_size]),
                          "info": {"name": self.spec.title, "description": self.spec.description,
                                   "pack": PACK_TITLE}},
                "models": _all_models(self), "version": 0.4}


def _models(n: Node) -> list:
    files = [n.widgets[w] for t, w in MODEL_WIDGETS if t == n.type]
    return [{"name": f, "url": MODEL_FILES[f][0], "directory": MODEL_FILES[f][1]} for f in files if f in MODEL_FILES]


def _all_models(g: Graph) -> list:
    seen, out = set(), []
    for n in g.nodes:
        for m in _models(n):
            if m["name"] not in seen:
                seen.add(m["name"])
                out.append(m)
    return out


WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


SEED_NAMES = ("seed", "noise_seed")     # INT widgets the frontend gives a control_after_generate of its own


def has_seed_control(name: str, widget_type: str, opts: dict) -> bool:
    """Whether the frontend adds a control_after_generate value after this widget (declared, or by its name)."""
    return bool(opts.get("control_after_generate")) or (widget_type == "INT" and name in SEED_NAMES)


@dataclass(frozen=True)
class NodeSchema:
    """What the UI form needs of one node's /object_info entry."""
    sockets: tuple           # ((name, TYPE, optional), ...) in input order
    widgets: tuple           # ((name, widget type), ...) in input order
    outputs: tuple           # ((name, TYPE), ...)
    output_is_list: tuple
    display: str
    seed_widget: str | None
    upload: bool

    @staticmethod
    def of(object_info: dict, node_type: str) -> "NodeSchema":
        if node_type not in object_info:
            raise KeyError(f"{node_type} is not a node of this ComfyUI")
        info = object_info[node_type]
        sockets, widgets, seed, upload = [], [], None, False
        for section in ("required", "optional"):
            for name in info["input_order"].get(section, []):
                spec = info["input"][section][name]
                typ = spec[0]
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                widget_type = "COMBO" if isinstance(typ, list) else typ
                if widget_type in WIDGET_TYPES and not opts.get("forceInput"):
                    widgets.append((name, widget_type))
                    seed = name if has_seed_control(name, widget_type, opts) else seed
                    upload = upload or bool(opts.get("image_upload"))
                else:
                    sockets.append((name, typ, section == "optional"))
        return NodeSchema(tuple(sockets), tuple(widgets), tuple(zip(info["output_name"], info["output"])),
                          tuple(info.get("output_is_list") or ()), info.get("display_name") or node_type, seed,
                          upload)

    def check(self, n: Node) -> None:
        names = {w for w, _ in self.widgets}
        if set(n.widgets) != names:
            raise ValueError(f"{n.type}: widgets {sorted(n.widgets)} != /object_info {sorted(names)}")
        sockets = {s for s, _, _ in self.sockets}
        missing = {s for s, _, opt in self.sockets if not opt} - set(n.links)
        if set(n.links) - sockets or missing:
            raise ValueError(f"{n.type}: unknown inputs {sorted(set(n.links) - sockets)}, unconnected required "
                             f"{sorted(missing)}")


_GREEN, _BLUE, _PURPLE = "#232", "#223", "#323"
_BG_COLORS = {_GREEN: "#353", _BLUE: "#335", _PURPLE: "#535"}


def _workflow_uuid(stem: str) -> str:
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"colorizediffusion/example_workflows/{stem}"))


# ----------------------------------------------------------------------------------------------------------
# Mask nodes (shared by the workflows' builders)
# ----------------------------------------------------------------------------------------------------------
def model_nodes(g: Graph, o, checkpoint: str, xl: bool) -> tuple:
    """The Models group's loaders: (checkpoint node, CLIP vision node, VAE link, the tagger link as Apply Sketch's
    input, empty without XL)."""
    ckpt = g.add("ColorizeDiffusionCheckpointLoader", 1, {"ckpt_name": checkpoint, "prediction": o.prediction},
                 color=_BLUE)
    clip = g.add("ColorizeDiffusionLoadOpenCLIPVision", 1,
                 {"clip_name": o.clip_vision, "heads": o.clip_heads, "activation": "gelu", "dtype": "fp32"},
                 color=_BLUE)
    vae = (g.add("VAELoader", 1, {"vae_name": o.vae}, color=_BLUE), 0) if o.vae else (ckpt, 2)
    tagger = {"tagger": (g.add("ColorizeDiffusionLoadWDTagger", 1, {"tagger_name": o.tagger}, color=_BLUE), 0)} \
        if xl else {}
    return ckpt, clip, vae, tagger


def sampler_nodes(g: Graph, o, model: tuple, pair: dict, applied: int) -> int:
    """The Sampler group: ColorizeDiffusion Guider over `model` with the conditioning `pair`, the noise, sampler and
    sigmas of `o` (workflows.Options), sampling the latent Apply Sketch (`applied`) prepared; gives the samples node."""
    guider = g.add("ColorizeDiffusionGuider", 4, {"reference_scale": o.reference_scale, "sketch_scale": o.sketch_scale},
                   {"model": model, **pair}, color=_PURPLE)
    noise = g.add("RandomNoise", 4, {"noise_seed": o.seed})
    sampler = g.add("KSamplerSelect", 4, {"sampler_name": o.sampler})
    sigmas = g.add("BasicScheduler", 4, {"scheduler": o.scheduler, "steps": o.steps, "denoise": 1.0},
                   {"model": (applied, 0)})
    return g.add("SamplerCustomAdvanced", 4, {}, {"noise": (noise, 0), "guider": (guider, 0),
                                                  "sampler": (sampler, 0), "sigmas": (sigmas, 0),
                                                  "latent_image": (applied, 3)})


def sketch_mask_node(g: Graph, o, sketch: int, size_base: int, resampling: str) -> int:
    """The sketch's character mask as `o.masks` asks (workflows.Options): ISNet, a picture, or the sketch itself."""
    if o.masks == "isnet":
        return g.add("ColorizeDiffusionSketchMask", 2, {"polarity": "auto", "net_size": o.mask_net_size,
                                                        "weights": NETWORK_FILES["ColorizeDiffusionSketchMask"]},
                     {"sketch": (sketch, 3)})
    if o.masks == "files":
        # a mask picture of the original sketch, letterboxed exactly like the sketch (black = background)
        mask_img = picture_node(g, o.sketch_mask, "Sketch mask", _GREEN)
        fitted = g.add("ColorizeDiffusionPrepareSketch", 2,
                       {"method": "none", "polarity": "keep", "width": o.width, "height": o.height,
                        "size_base": size_base, "monochrome": "auto", "extract_size": 512,
                        "resampling": resampling}, {"image": (mask_img, 0)}, title="Fit sketch mask")
        return g.add("ImageToMask", 2, {"channel": o.mask_channel}, {"image": (fitted, 0)}, title="Sketch mask")
    return g.add("ImageToMask", 2, {"channel": o.mask_channel}, {"image": (sketch, 0)}, title="Sketch mask")


def reference_mask_node(g: Graph, o, ref_img: int, xl: bool = False) -> int:
    if o.masks == "isnet":       # the XL app dilates 21x21 and binarises; the SD2.1 app dilates 11x11
        weights = NETWORK_FILES["ColorizeDiffusionReferenceMask"]
        return g.add("ColorizeDiffusionReferenceMask", 2, {"dilate": True, "net_size": o.mask_net_size,
                                                           "dilation": 21 if xl else 11, "binarize": xl,
                                                           "weights": weights},
                     {"reference": (ref_img, 0)})
    if o.masks == "files":
        return g.add("LoadImageMask", 0, {"image": o.reference_mask, "channel": o.mask_channel},
                     title="Reference mask")
    return g.add("ImageToMask", 2, {"channel": o.mask_channel}, {"image": (ref_img, 0)}, title="Reference mask")


# ----------------------------------------------------------------------------------------------------------
# Layout (UI positions; also what the thumbnails draw)
# ----------------------------------------------------------------------------------------------------------
COL_X = (0, 380, 780, 1180, 1580, 1960)
COL_W = (320, 340, 360, 360, 340, 320)
TOP = 60                                    # room for the group titles
_ROW_H, _WIDGET_H, _TITLE_H, _GAP = 22, 24, 30, 40
_IMAGE_PREVIEW_H = 230
NOTE_SIZE = (320, 330)


def node_size(n: Node, schema: NodeSchema) -> tuple:
    h = _TITLE_H + _ROW_H * max(len(schema.sockets), len(schema.outputs)) + \
        _WIDGET_H * (len(schema.widgets) + schema.upload) + 12
    if n.type in ("LoadImage", IMAGE_LOADER, "SaveImage", "PreviewImage"):
        h += _IMAGE_PREVIEW_H
    return COL_W[n.col], h


def layout(g: Graph, schemas: dict) -> tuple[dict, dict]:
    y = {c: TOP for c in range(len(COL_X))}
    pos, size = {}, {}
    for n in g.nodes:
        w, h = node_size(n, schemas[n.id])
        pos[n.id] = (COL_X[n.col], y[n.col])
        size[n.id] = (w, h)
        y[n.col] += h + _GAP
    return pos, size


def note_box(positions: dict, sizes: dict, text: str) -> tuple[list, list]:
    """The read-me note: under the inputs."""
    bottom = max([positions[i][1] + sizes[i][1] for i in positions if positions[i][0] == COL_X[0]] or [TOP])
    lines = sum(1 + len(line) // 44 for line in text.splitlines())
    return [COL_X[0], bottom + _GAP], [NOTE_SIZE[0], max(NOTE_SIZE[1], 30 + 17 * lines)]


def groups(g: Graph, positions: dict, sizes: dict, note_pos, note_size) -> list:
    out = []
    for col, title in enumerate(GROUPS):
        boxes = [(positions[n.id], sizes[n.id]) for n in g.nodes if n.col == col]
        if col == 0:
            boxes.append((tuple(note_pos), tuple(note_size)))
        if not boxes:
            continue
        x0 = min(p[0] for p, _ in boxes) - 15
        y0 = min(p[1] for p, _ in boxes) - 45
        x1 = max(p[0] + s[0] for p, s in boxes) + 15
        y1 = max(p[1] + s[1] for p, s in boxes) + 15
        out.append({"id": len(out) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                    "color": _GROUP_COLORS[col], "font_size": 24, "flags": {}})
    return out


def initial_view(boxes: list, screen=(1500, 780), origin=(70, 190)) -> dict:
    """The canvas view the template opens with: every box ([x, y, w, h]: the groups with their titles, the note) on
    a 1600x1000 window, below the top bars."""
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    width = max(b[0] + b[2] for b in boxes) - min(x0, 0)
    height = max(b[1] + b[3] for b in boxes) - min(y0, 0)
    scale = round(min(screen[0] / width, screen[1] / height, 1.0), 3)
    return {"scale": scale, "offset": [round(origin[0] / scale - min(x0, 0), 1),
                                       round(origin[1] / scale - min(y0, 0), 1)]}


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

