#!/usr/bin/env python3
"""Draw the pack's own example pictures (example_workflows/input/), so the shipped workflows run as soon as the
models are in place. Drawn here, by code, for this pack; they ship under the pack's licence.

    .venv/bin/python scripts/draw_example_inputs.py

A girl with a bob cut and a scarf in front of a hill and a tree: the line drawing (black on white), a coloured
reference of the same kind of character with its own background, and a background picture.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "example_workflows" / "input"
INK = (20, 20, 24)


def _figure(d: ImageDraw.ImageDraw, x: int, y: int, s: float, fill: dict | None, line=INK, width=4):
    """A standing character centred at x, feet near y; `fill` colours the parts (None: line art only)."""
    f = fill or {}

    def ell(box, part):
        d.ellipse([v * s + o for v, o in zip(box, (x, y, x, y))], fill=f.get(part), outline=line, width=width)

    def poly(points, part):
        d.polygon([(px * s + x, py * s + y) for px, py in points], fill=f.get(part), outline=line, width=width)

    poly([(-70, -300), (70, -300), (95, -40), (-95, -40)], "dress")             # dress
    poly([(-60, -40), (-30, -40), (-32, 0), (-58, 0)], "legs")                  # legs
    poly([(30, -40), (60, -40), (58, 0), (32, 0)], "legs")
    poly([(-70, -295), (-120, -170), (-100, -160), (-60, -250)], "skin")         # arms
    poly([(70, -295), (125, -175), (105, -163), (60, -250)], "skin")
    ell((-65, -440, 65, -300), "skin")                                           # face
    poly([(-78, -380), (-70, -455), (0, -480), (70, -455), (78, -380), (55, -430), (-55, -430)], "hair")
    poly([(-75, -305), (75, -305), (60, -280), (-60, -280)], "scarf")            # scarf
    poly([(40, -290), (70, -230), (50, -225), (28, -283)], "scarf")
    for ex in (-28, 28):                                                         # eyes and mouth
        d.ellipse([x + (ex - 9) * s, y - 385 * s, x + (ex + 9) * s, y - 365 * s], fill=line)
    d.arc([x - 20 * s, y - 350 * s, x + 20 * s, y - 330 * s], 20, 160, fill=line, width=width)


def _scenery(d: ImageDraw.ImageDraw, w: int, h: int, fill: dict | None, line=INK, width=4):
    f = fill or {}
    d.polygon([(0, h * 0.72), (w * 0.35, h * 0.6), (w * 0.7, h * 0.68), (w, h * 0.62), (w, h), (0, h)],
              fill=f.get("hill"), outline=line, width=width)
    tx, ty = int(w * 0.84), int(h * 0.64)
    d.rectangle([tx - 12, ty - 120, tx + 12, ty], fill=f.get("trunk"), outline=line, width=width)
    d.ellipse([tx - 70, ty - 250, tx + 70, ty - 100], fill=f.get("leaves"), outline=line, width=width)
    d.ellipse([int(w * 0.08), int(h * 0.08), int(w * 0.08) + 70, int(h * 0.08) + 70], fill=f.get("sun"),
              outline=line, width=width)


def sketch(w=512, h=640, shift=0) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    _scenery(d, w, h, None)
    _figure(d, w // 2 - 40 + shift, int(h * 0.93), 1.0, None)
    return img


REFERENCE_COLOURS = {"dress": (196, 62, 74), "legs": (60, 52, 70), "skin": (250, 222, 200), "hair": (92, 58, 40),
                     "scarf": (246, 196, 66), "hill": (118, 178, 96), "trunk": (110, 76, 50),
                     "leaves": (64, 140, 80), "sun": (255, 224, 120)}


def reference(w=480, h=600) -> Image.Image:
    img = Image.new("RGB", (w, h), (150, 200, 240))
    d = ImageDraw.Draw(img)
    for i in range(h // 2):                                              # a sky that lightens towards the horizon
        c = int(150 + 70 * i / (h / 2))
        d.line([(0, i), (w, i)], fill=(c - 40, c, 245))
    _scenery(d, w, h, REFERENCE_COLOURS, line=(40, 40, 48), width=3)
    _figure(d, w // 2 - 30, int(h * 0.94), 0.92, REFERENCE_COLOURS, line=(40, 40, 48), width=3)
    return img


def background(w=640, h=480) -> Image.Image:
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    for i in range(h):                                                   # an evening sky over the sea
        t = i / h
        d.line([(0, i), (w, i)], fill=(int(250 - 120 * t), int(170 - 60 * t), int(120 + 90 * t)))
    d.rectangle([0, int(h * 0.66), w, h], fill=(40, 70, 120))
    d.ellipse([int(w * 0.6), int(h * 0.45), int(w * 0.6) + 90, int(h * 0.45) + 90], fill=(255, 200, 110))
    return img


def main() -> None:
    (OUT / "colorizediffusion_sketches").mkdir(parents=True, exist_ok=True)
    sketch().save(OUT / "colorizediffusion_sketch.png", optimize=True)
    reference().save(OUT / "colorizediffusion_reference.png", optimize=True)
    background().save(OUT / "colorizediffusion_background.png", optimize=True)
    sketch(512, 640, shift=-30).save(OUT / "colorizediffusion_sketches" / "girl_left.png", optimize=True)
    sketch(512, 640, shift=40).save(OUT / "colorizediffusion_sketches" / "girl_right.png", optimize=True)


if __name__ == "__main__":
    main()
