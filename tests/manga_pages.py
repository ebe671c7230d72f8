"""Synthetic manga pages and line art, drawn deterministically the way real chapters look, for the sketch
polarity tests.

A page is a grid of panels separated by gutters (white, or black as many chapters print them), each panel holding
a drawing: curved outlines 1-4 px wide, hatching, large black fills (hair, clothes, night skies) with white
highlight strokes, flat grey tones, screentone dot screens (dark dots on light, light dots on a dark tone), speech
balloons with lettering, sound effects. Colour pages add flat colour fills under the ink. A scanned page adds a
tinted paper, a little blur and noise.

`page(kind, seed)` -> ([H, W, 3] float32 in [0, 1], what the page is) and `CASES`: every (kind, polarity) pair with
the polarity `auto` must decide (`invert` for dark lines on light paper, `keep` for light lines on dark paper).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

INK, PAPER = 0.0, 1.0


def _curve(rng, h, w, x0, y0, x1, y1):
    """Points of a smooth random stroke inside the box (x0, y0)-(x1, y1)."""
    n = int(rng.integers(3, 7))
    xs = rng.uniform(x0, x1, n)
    ys = rng.uniform(y0, y1, n)
    t = np.linspace(0, 1, 40)
    # a Bezier-like smoothing of the control points (de Casteljau)
    pts = np.stack([xs, ys], 1)
    out = []
    for s in t:
        p = pts.copy()
        while len(p) > 1:
            p = p[:-1] * (1 - s) + p[1:] * s
        out.append(p[0])
    return np.round(np.array(out)).astype(np.int32)


def _figure(img, rng, box, ink, paper, fills=True, tones=True):
    """A character-like drawing in box (x0, y0, x1, y1): outlines, hatching, fills, tones, a face."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    side = min(bw, bh)
    cx, cy = x0 + bw // 2, y0 + bh // 2
    lw = max(1, side // 90)
    if tones and rng.random() < 0.8:                                       # flat grey tone (clothes, shadow)
        g = float(rng.uniform(0.55, 0.85))
        tone = paper + (ink - paper) * (1 - g)
        pts = np.array([[cx - bw // 3, y1 - 2], [cx - bw // 5, cy], [cx + bw // 5, cy], [cx + bw // 3, y1 - 2]])
        cv2.fillPoly(img, [pts.astype(np.int32)], (tone,) * 3)
    if fills and rng.random() < 0.85:                                      # black fill (hair) + white highlights
        axes = (max(2, bw // 5), max(2, bh // 6))
        cv2.ellipse(img, (cx, cy - bh // 6), axes, 0, 180, 360, (ink,) * 3, -1, cv2.LINE_AA)
        for _ in range(3):
            px = int(cx + rng.integers(-axes[0] // 2, axes[0] // 2 + 1))
            cv2.line(img, (px, cy - bh // 6 - axes[1] + 3), (px + int(rng.integers(-4, 5)), cy - bh // 6 - 2),
                     (paper,) * 3, max(1, lw), cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy - bh // 8), (max(3, bw // 6), max(3, bh // 7)), 0, 0, 360, (ink,) * 3, lw + 1,
                cv2.LINE_AA)                                                 # face outline
    for ex in (-1, 1):                                                      # eyes
        cv2.ellipse(img, (cx + ex * bw // 14, cy - bh // 8), (max(1, bw // 40), max(2, bh // 30)), 0, 0, 360,
                    (ink,) * 3, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(6, 12))):                               # body and cloth outlines
        pts = _curve(rng, bh, bw, x0 + 2, cy - bh // 10, x1 - 2, y1 - 2)
        cv2.polylines(img, [pts], False, (ink,) * 3, int(rng.integers(1, 3)) * lw, cv2.LINE_AA)
    if rng.random() < 0.6:                                                  # hatching (shadow)
        hx, hy = int(rng.integers(x0, max(x0 + 1, x1 - bw // 3))), int(rng.integers(cy, max(cy + 1, y1 - bh // 4)))
        step = int(rng.integers(3, 6))
        for k in range(0, bw // 3, step):
            cv2.line(img, (hx + k, hy), (hx + k + bh // 8, hy + bh // 5), (ink,) * 3, 1, cv2.LINE_AA)


def _screentone(img, rng, box, ink, paper, light_dots: bool):
    """A dot screen in box: dark dots on the paper, or a dark tone with light dots left in it."""
    x0, y0, x1, y1 = box
    pitch = int(rng.integers(4, 7))
    r = max(1, pitch // 3)
    if light_dots:
        cv2.rectangle(img, (x0, y0), (x1, y1), (ink + (paper - ink) * 0.25,) * 3, -1)
        dot = paper
    else:
        dot = ink
    for y in range(y0 + pitch // 2, y1, pitch):
        off = pitch // 2 if (y // pitch) % 2 else 0
        for x in range(x0 + off, x1, pitch):
            cv2.circle(img, (x, y), r, (dot,) * 3, -1, cv2.LINE_AA)


def _balloon(img, rng, box, ink, paper):
    """A speech balloon with a tail and a few lines of lettering."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx, cy = x0 + bw // 2, y0 + bh // 2
    axes = (max(6, bw // 2 - 2), max(6, bh // 2 - 2))
    tail = np.array([[cx - 4, cy + axes[1] - 3], [cx + 4, cy + axes[1] - 3], [cx + 10, cy + axes[1] + 12]])
    cv2.fillPoly(img, [tail.astype(np.int32)], (paper,) * 3)
    cv2.ellipse(img, (cx, cy), axes, 0, 0, 360, (paper,) * 3, -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy), axes, 0, 0, 360, (ink,) * 3, 1 + bw // 120, cv2.LINE_AA)
    scale = max(0.25, bh / 140)
    lines = int(rng.integers(2, 4))
    letters = np.zeros(img.shape[:2], np.uint8)                            # cv2 letters on 8-bit only
    for i in range(lines):
        word = "".join(rng.choice(list("ABCDEFGHKMNRSTWY!?"), int(rng.integers(4, 8))))
        ty = int(cy - axes[1] * 0.45 + i * axes[1] * 0.9 / max(1, lines - 1))
        cv2.putText(letters, word, (cx - int(axes[0] * 0.6), ty), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1,
                    cv2.LINE_AA)
    a = (letters.astype(np.float32) / 255)[..., None]
    img[:] = img * (1 - a) + ink * a


def _colour_fill(img, rng, box):
    """Flat colour under the ink of a colour page: skin, hair, clothes, sky (multiplied under the lines)."""
    x0, y0, x1, y1 = box
    colours = [(0.98, 0.85, 0.75), (0.35, 0.55, 0.9), (0.9, 0.3, 0.35), (0.5, 0.8, 0.45), (0.95, 0.8, 0.3),
               (0.3, 0.25, 0.45)]
    layer = np.ones_like(img)
    for _ in range(int(rng.integers(3, 6))):
        c = colours[int(rng.integers(0, len(colours)))]
        cx, cy = int(rng.integers(x0, x1)), int(rng.integers(y0, y1))
        axes = (int(rng.integers(8, max(9, (x1 - x0) // 2))), int(rng.integers(8, max(9, (y1 - y0) // 2))))
        cv2.ellipse(layer, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, c, -1)
    sub = (slice(y0, y1), slice(x0, x1))
    img[sub] = img[sub] * layer[sub]


def _panels(rng, h, w, gutter, margin):
    """Panel boxes of a page: 2-4 tiers, 1-3 panels per tier."""
    boxes = []
    tiers = int(rng.integers(2, 5))
    cuts = np.sort(rng.uniform(0.2, 0.8, tiers - 1)) if tiers > 1 else np.array([])
    ys = [margin] + [int(margin + c * (h - 2 * margin)) for c in cuts] + [h - margin]
    for t in range(tiers):
        n = int(rng.integers(1, 4))
        xc = np.sort(rng.uniform(0.25, 0.75, n - 1))
        xs = [margin] + [int(margin + c * (w - 2 * margin)) for c in xc] + [w - margin]
        for i in range(n):
            bx0, bx1 = xs[i] + (gutter // 2 if i else 0), xs[i + 1] - (gutter // 2 if i < n - 1 else 0)
            by0, by1 = ys[t] + (gutter // 2 if t else 0), ys[t + 1] - (gutter // 2 if t < tiers - 1 else 0)
            if bx1 - bx0 > 12 and by1 - by0 > 12:
                boxes.append((bx0, by0, bx1, by1))
    return boxes


# kind -> what the page has
KINDS = {
    "lineart": dict(panels=False, fills=False, tones=False),              # a single drawing, lines only
    "sketch_tones": dict(panels=False, fills=True, tones=True),           # a drawing with fills and tones
    "page_white_gutters": dict(gutter="white"),
    "page_black_gutters": dict(gutter="black"),                            # black between the panels
    "page_heavy_black": dict(gutter="black", night=0.25),                  # night panels: black skies
    "page_screentone": dict(gutter="white", screens=3),
    "page_dark_screentone": dict(gutter="black", screens=3, light_dots=True),
    "page_balloons": dict(gutter="white", balloons=4),
    "page_colour": dict(gutter="white", colour=True),
    "page_colour_black_gutters": dict(gutter="black", colour=True, balloons=2),
    "page_scan": dict(gutter="white", screens=2, balloons=2, scan=True),    # scanned: tinted paper, blur, noise
    "page_everything": dict(gutter="black", screens=2, balloons=3, night=0.2, scan=True),
}


def page(kind: str, seed: int = 0, h: int = 320, w: int = 224) -> torch.Tensor:
    """One page of `kind` (KINDS), dark ink on light paper, [H, W, 3] float32 in [0, 1]."""
    spec = KINDS[kind]
    rng = np.random.default_rng([seed, list(KINDS).index(kind)])
    img = np.full((h, w, 3), PAPER, np.float32)
    if spec.get("panels", True) is False:
        _figure(img, rng, (w // 8, h // 10, w - w // 8, h - h // 12), INK, PAPER, spec["fills"], spec["tones"])
    else:
        margin = max(6, min(h, w) // 25)
        gutter = max(4, min(h, w) // 40)
        if spec["gutter"] == "black":
            img[:] = INK
        boxes = _panels(rng, h, w, gutter, margin)
        night, dark_area, area = spec.get("night", 0.0), 0, (h - 2 * margin) * (w - 2 * margin)
        for box in boxes:
            x0, y0, x1, y1 = box
            dark_panel = rng.random() < 0.5 and dark_area + (x1 - x0) * (y1 - y0) <= night * area
            dark_area += dark_panel * (x1 - x0) * (y1 - y0)
            ink, paper = INK, PAPER
            img[y0:y1, x0:x1] = paper
            inner = (x0 + 3, y0 + 3, x1 - 3, y1 - 3)
            if dark_panel:                  # a night panel: black sky, white stars and speed lines, the figure inked
                img[y0:y1, x0:x1] = INK
                for _ in range(int(rng.integers(8, 20))):
                    pts = _curve(rng, y1 - y0, x1 - x0, x0, y0, x1, y1)
                    cv2.polylines(img, [pts[:int(rng.integers(5, 40))]], False, (PAPER,) * 3, 1, cv2.LINE_AA)
                fx0, fx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
                cv2.ellipse(img, ((fx0 + fx1) // 2, (y0 + y1) // 2), (max(3, (fx1 - fx0) // 2), (y1 - y0) // 3),
                            0, 0, 360, (PAPER,) * 3, -1)
                inner = (fx0, y0 + (y1 - y0) // 6, fx1, y1 - (y1 - y0) // 6)
            if spec.get("screens") and not dark_panel and rng.random() < 0.7:
                sx0, sy0 = int(rng.integers(x0, (x0 + x1) // 2)), int(rng.integers(y0, (y0 + y1) // 2))
                _screentone(img, rng, (sx0, sy0, min(x1, sx0 + (x1 - x0) // 2), min(y1, sy0 + (y1 - y0) // 2)),
                            ink, paper, spec.get("light_dots", False) and rng.random() < 0.6)
            _figure(img, rng, inner, ink, paper)
            if spec.get("colour") and not dark_panel:
                _colour_fill(img, rng, box)
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (INK,) * 3, max(1, min(h, w) // 200))  # panel border
        for _ in range(spec.get("balloons", 0)):
            box = boxes[int(rng.integers(0, len(boxes)))]
            bw, bh = max(24, (box[2] - box[0]) // 2), max(16, (box[3] - box[1]) // 3)
            bx = int(rng.integers(box[0], max(box[0] + 1, box[2] - bw)))
            by = int(rng.integers(box[1], max(box[1] + 1, box[3] - bh)))
            _balloon(img, rng, (bx, by, bx + bw, by + bh), INK, PAPER)
    if spec.get("scan"):
        img = cv2.GaussianBlur(img, (3, 3), 0.7)
        tint = np.array([0.93, 0.91, 0.86], np.float32)                     # yellowed paper, grey-ish ink
        img = 0.1 + img * (tint - 0.1)
        img = img + rng.normal(0, 0.025, img.shape).astype(np.float32)
    return torch.from_numpy(np.clip(img, 0, 1).astype(np.float32))


# line art of every kind: how the drawing is given -> (transform of the page, what `auto` must decide)
POLARITY_FORMS = {
    "dark_on_light": (lambda x: x, "invert"),              # ink on paper, as printed
    "light_on_dark": (lambda x: 1 - x, "keep"),            # white lines on black (an inverted scan, a chalk sketch)
}

CASES = [(kind, form, seed) for kind in KINDS for form in POLARITY_FORMS for seed in range(3)]


def case(kind: str, form: str, seed: int, h: int = 320, w: int = 224) -> tuple[torch.Tensor, str]:
    """The picture of one case and the polarity `auto` must choose for it."""
    transform, want = POLARITY_FORMS[form]
    return transform(page(kind, seed, h, w)), want
