"""Polarity `auto` on pages drawn the way real chapters look (tests/manga_pages.py): black and white gutters, large
black fills and night panels, grey tones, screentone dots (dark on light and light on a dark tone), balloons with
lettering, colour pages, scans; each as dark lines on light paper and as light lines on dark (an inverted scan)."""
from __future__ import annotations

import logging

import pytest
import torch

import manga_pages
from colorize_diffusion.nodes import preprocess_nodes as P
from colorize_diffusion.preprocess import sketch


@pytest.mark.parametrize("kind,form,seed", manga_pages.CASES)
def test_auto_polarity_is_right_and_certain_on_every_page(kind, form, seed):
    page, want = manga_pages.case(kind, form, seed)
    decision = sketch.polarity_decision(page)
    assert decision.polarity == want, decision.note()
    assert decision.certain, decision.note()


def test_pages_are_deterministic_and_differ_by_seed_and_kind():
    a = manga_pages.page("page_everything", 1)
    assert torch.equal(a, manga_pages.page("page_everything", 1))
    assert not torch.equal(a, manga_pages.page("page_everything", 2))
    assert not torch.equal(a, manga_pages.page("page_black_gutters", 1))
    assert a.shape == (320, 224, 3) and 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("kind", ["page_black_gutters", "page_everything", "page_colour_black_gutters"])
def test_full_size_colorflow_page(kind):
    """At a ColorFlow page's size (1024x1600) the frame and panel sizes scale with the page: same decisions."""
    page = manga_pages.page(kind, 0, h=1600, w=1024)
    assert sketch.polarity_decision(page).polarity == "invert"
    assert sketch.polarity_decision(1 - page).polarity == "keep"


def test_explicit_choices_stay_on_every_kind():
    for kind in manga_pages.KINDS:
        for form in manga_pages.POLARITY_FORMS:
            page, _ = manga_pages.case(kind, form, 0)
            assert sketch.decide_polarity(page, "keep") == "keep"
            assert sketch.decide_polarity(page, "invert") == "invert"


def _as_much_ink_as_paper() -> torch.Tensor:
    """A page whose left half is drawn dark on light and right half light on dark: no side wins."""
    page = manga_pages.page("page_white_gutters", 0)
    half = page.shape[1] // 2
    return torch.cat([page[:, :half], 1 - page[:, half:]], 1)


def test_uncertain_page_takes_the_common_case_and_says_so(caplog):
    page = _as_much_ink_as_paper()
    decision = sketch.polarity_decision(page)
    assert not decision.certain and decision.polarity == "invert"
    assert abs(decision.paper - 0.5) < sketch.PAPER_UNCERTAIN
    with caplog.at_level(logging.WARNING):
        _, _, _, prepared = P.PrepareSketch.execute(page[None], width=256, height=384)
    assert prepared.polarity == ("invert",)
    assert "uncertain" in caplog.text and "keep" in caplog.text        # what it did, and what to set otherwise
    caplog.clear()
    with caplog.at_level(logging.WARNING):                               # an explicit choice: no warning, as given
        _, _, _, prepared = P.PrepareSketch.execute(page[None], width=256, height=384, polarity="keep")
    assert prepared.polarity == ("keep",) and "uncertain" not in caplog.text


def test_certain_pages_log_nothing_and_the_node_uses_the_decision(caplog):
    pages = torch.stack([manga_pages.case("page_scan", "dark_on_light", 0)[0],
                         manga_pages.case("page_heavy_black", "light_on_dark", 0)[0]])
    with caplog.at_level(logging.WARNING):
        _, _, _, prepared = P.PrepareSketch.execute(pages, width=224, height=320)
    assert prepared.polarity == ("invert", "keep") and "uncertain" not in caplog.text
    # both come out as light lines on a dark ground: most of each sketch is below zero
    assert ((prepared.sketch < 0).float().mean((1, 2, 3)) > 0.5).all()
