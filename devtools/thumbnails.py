"""Thumbnails of the example workflows: a drawing of the graph itself (nodes, links, the workflow's name).

Honest by construction: no result picture, only the nodes the template contains, at their saved positions.
Needs Pillow (a ComfyUI requirement).
"""
from __future__ import annotations

import io

from .graph import GROUPS, Graph, NodeSchema, layout

SIZE = (640, 400)
BACKGROUND = (32, 32, 36)
NODE_FILL = (53, 53, 58)
NODE_EDGE = (90, 90, 96)
TEXT = (235, 235, 235)
SUBTEXT = (170, 170, 178)
TITLE_FILLS = {"#232": (51, 85, 51), "#223": (51, 51, 95), "#323": (85, 51, 85)}
DEFAULT_TITLE_FILL = (70, 70, 76)
LINK_COLOURS = {"IMAGE": (100, 181, 246), "MASK": (129, 199, 132), "MODEL": (179, 157, 219), "VAE": (255, 97, 97),
                "CLIP_VISION": (168, 218, 181), "LATENT": (255, 156, 249), "CONDITIONING": (255, 204, 128),
                "COLORIZER": (255, 213, 79), "COLORIZER_SKETCH": (77, 208, 225),
                "COLORIZER_REFERENCE": (240, 98, 146)}
DEFAULT_LINK = (160, 160, 160)


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:          # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, font, width: float) -> str:
    """`text` cut (with an ellipsis) to `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _short(title: str) -> str:
    for prefix, short in (("ColorizeDiffusion ", ""), ("Load ColorizeDiffusion ", "Load "),
                          ("SamplerCustomAdvanced", "SamplerCustomAdv.")):
        if title.startswith(prefix):
            return short + title[len(prefix):]
    return title


def render(g: Graph, object_info: dict) -> bytes:
    """JPEG bytes of the diagram of `g` (nodes laid out from their /object_info), its groups titled."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", SIZE, BACKGROUND)
    d = ImageDraw.Draw(img)
    schemas = {n.id: NodeSchema.of(object_info, n.type) for n in g.nodes}
    pos, size = layout(g, schemas)
    header = 56
    x1 = max(pos[i][0] + size[i][0] for i in pos)
    y1 = max(pos[i][1] + size[i][1] for i in pos)
    margin = 14
    sx = (SIZE[0] - 2 * margin) / x1
    sy = min((SIZE[1] - header - 14 - margin) / y1, 1.6 * sx)     # a diagram: rows may stretch a little
    ox = (SIZE[0] - x1 * sx) / 2
    oy = header + 14

    def box(nid):
        (x, y), (w, h) = pos[nid], size[nid]
        return ox + x * sx, oy + y * sy, ox + (x + w) * sx, oy + (y + h) * sy

    # links under the nodes
    for n in g.nodes:
        for name, (src, slot) in n.links.items():
            typ = schemas[src].outputs[slot][1]
            sx0, sy0, sx1, sy1 = box(src)
            tx0, ty0, tx1, ty1 = box(n.id)
            socket_idx = [s[0] for s in schemas[n.id].sockets].index(name)
            a = (sx1, sy0 + (14 + 9 * slot) * 1.0)
            b = (tx0, ty0 + (14 + 9 * socket_idx) * 1.0)
            mid = (a[0] + b[0]) / 2
            pts = [a, (mid, a[1]), (mid, b[1]), b]
            d.line(pts, fill=LINK_COLOURS.get(typ, DEFAULT_LINK), width=2)

    font, small, big = _font(10), _font(9), _font(20)
    for col, title in enumerate(GROUPS):        # group titles over their columns
        xs = [box(n.id) for n in g.nodes if n.col == col]
        if xs:
            d.text((min(b[0] for b in xs), oy - 13), title, fill=SUBTEXT, font=font)
    for n in g.nodes:
        x0, y0, x1_, y1_ = box(n.id)
        d.rounded_rectangle((x0, y0, x1_, y1_), radius=4, fill=NODE_FILL, outline=NODE_EDGE)
        d.rounded_rectangle((x0, y0, x1_, y0 + 12), radius=4, fill=TITLE_FILLS.get(n.color, DEFAULT_TITLE_FILL))
        title = _short(n.title or schemas[n.id].display)
        d.text((x0 + 3, y0 + 1), _fit(title, font, x1_ - x0 - 5), fill=TEXT, font=font)
        # the values that define this workflow, in the node body
        for k, key in enumerate(_shown_widgets(n)):
            d.text((x0 + 3, y0 + 15 + 11 * k), _fit(_label(key, n.widgets[key]), small, x1_ - x0 - 5), fill=SUBTEXT,
                   font=small)

    d.text((margin, 10), f"ColorizeDiffusion - {g.spec.title}", fill=TEXT, font=big)
    d.text((margin, 36), "workflow graph (example_workflows/" + g.stem + ".json)", fill=SUBTEXT, font=_font(11))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


_SHOWN = {"ColorizeDiffusionCheckpointLoader": ("ckpt_name",), "ColorizeDiffusionSplitAttention": ("threshold",),
          "ColorizeDiffusionGuider": ("reference_scale", "sketch_scale"), "BasicScheduler": ("steps",),
          "LoadImage": ("image",), "ColorizeDiffusionLoadImage": ("image",), "SaveImage": ("filename_prefix",),
          "ColorizeDiffusionLoadOpenCLIPVision": ("clip_name",), "LoadImageDataSetFromFolder": ("folder",),
          "ColorizeDiffusionExamplePicture": ("picture",), "ColorizeDiffusionExamplePictureFolder": ("folder",),
          "KSamplerSelect": ("sampler_name",)}


_LABELS = {"reference_scale": "reference cfg", "sketch_scale": "sketch cfg", "steps": "steps",
           "threshold": "mask threshold"}


def _label(key: str, value) -> str:
    return f"{_LABELS[key]} {value}" if key in _LABELS else str(value)


def _shown_widgets(n) -> tuple:
    return _SHOWN.get(n.type, ())
