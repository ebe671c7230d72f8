"""Colour Under Page: the colours at the page's own size under its lines; black stays black, the letterbox is
undone, nothing of the page is lost."""
from __future__ import annotations

import pytest
import torch

from colorize_diffusion.errors import ColorizerInputError

from chain_support import node


def _page():
    page = torch.ones(1, 150, 110, 3)                   # white paper
    page[:, 40:42, :, :] = 0.0                           # a black line
    page[:, 100:110, 20:60, :] = 0.0                     # lettering block
    page[:, 60:80, 60:100, :] = 0.5                      # screentone grey
    return page


def test_colours_sit_under_the_page_at_its_own_size():
    page = _page()
    _, width, height, sketch = node("ColorizeDiffusionPrepareSketch", image=page, width=128, height=128,
                                    polarity="invert")
    left, top, w, h = sketch.crop_box
    colours = torch.zeros(1, height, width, 3)
    colours[..., 2] = 1.0                                # blue letterbox padding ...
    colours[:, top:top + h, left:left + w] = torch.tensor([1.0, 0.2, 0.1])   # ... red where the drawing is
    out, flat, lines = node("ColorizeDiffusionColourUnderPage", colours=colours, page=page, sketch=sketch)
    assert out.shape == page.shape and flat.shape == (1, 150, 110, 4) and lines.shape == (1, 150, 110, 4)
    black = page[0].sum(-1) == 0
    assert torch.equal(out[0][black], torch.zeros_like(out[0][black]))      # lines and lettering exactly black
    white = page[0].sum(-1) == 3
    assert (out[0][white][:, 2] < 0.15).all(), "the blue letterbox padding leaked into the page"
    assert torch.allclose(out[0][white], torch.tensor([1.0, 0.2, 0.1]), atol=0.02)
    assert torch.allclose(lines[0][..., 3], 1 - page[0].mean(-1), atol=1e-6)   # the line layer keeps the page
    (lum,) = node("ColorizeDiffusionColourUnderPage", colours=colours, page=page, sketch=sketch, mode="luminance")[:1]
    assert torch.equal(lum[0][black], torch.zeros_like(lum[0][black]))
    y = (lum[0] * torch.tensor([0.299, 0.587, 0.114])).sum(-1)
    grey = page[0, 60:80, 60:100, 0]
    assert torch.allclose(y[60:80, 60:100], grey, atol=0.02), "luminance mode must keep the page's lightness"


def test_a_picture_smaller_than_the_drawing_box_is_named():
    page = _page()
    _, _, _, sketch = node("ColorizeDiffusionPrepareSketch", image=page, width=128, height=128, polarity="invert")
    with pytest.raises(ColorizerInputError, match="smaller than the sketch's drawing box"):
        node("ColorizeDiffusionColourUnderPage", colours=torch.rand(1, 64, 64, 3), page=page, sketch=sketch)
