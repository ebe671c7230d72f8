"""Text manipulation of the reference tokens: the text tower's loading, the shared text form, bad input.

The numbers themselves are held to the official ones by the golden level-G cases (tests/test_golden.py)."""
from __future__ import annotations

import pytest
import torch

from colorize_diffusion.errors import ColorizerInputError, ColorizerLoadError
from colorize_diffusion.model_patches.colorize_diffusion import manipulation
from colorize_diffusion.weight_files import read_state_dict
from conftest import GOLDEN

FULL = GOLDEN / "clip" / "tiny-openclip-full.safetensors"


@pytest.fixture(scope="module")
def text():
    return manipulation.load_text_tower(read_state_dict(FULL), heads=4)


def test_text_tower_loads_under_any_prefix_and_needs_its_projection(text):
    sd = read_state_dict(FULL)
    prefixed = {"cond_stage_model.model." + k: v for k, v in sd.items()}
    other = manipulation.load_text_tower(prefixed, heads=4)
    assert torch.equal(other.encode(["a red dress"]), text.encode(["a red dress"]))
    no_projection = {k: v for k, v in sd.items() if k != "text_projection"}
    with pytest.raises(ColorizerLoadError, match="text_projection"):
        manipulation.load_text_tower(no_projection, heads=4)
    with pytest.raises(ColorizerLoadError, match="head count"):
        manipulation.load_text_tower(sd)                       # width 64: no known head count


def test_features_are_unit_vectors_and_differ_by_prompt(text):
    f = text.encode(["blue sky", "a red dress"])
    assert f.shape == (2, 1, 128)
    assert torch.allclose(f.norm(dim=-1), torch.ones(2, 1))
    assert (f[0] - f[1]).abs().max() > 1e-3


def test_text_form_round_trip_and_the_enhanced_quirk():
    line = ("[target] short black hair; [anchor] none; [control] hair; [scale] 6.0; [enhanced] False; "
            "[ts0] 0.5; [ts1] 0.55; [ts2] 0.65; [ts3] 0.95")
    (official,) = manipulation.parse_groups(line)
    (fixed,) = manipulation.parse_groups(line, official_quirks=False)
    assert official.enhance is True and fixed.enhance is False            # the app reads bool("False")
    assert official.thresholds == (0.5, 0.55, 0.65, 0.95) and official.anchor == "none"
    with pytest.raises(ColorizerInputError, match="line 2"):
        manipulation.parse_groups(line + "\n[target] x; [scale] big")


@pytest.mark.parametrize("thresholds,target,message", [
    ((0.5, 0.5, 0.6, 0.9), "hair", "four increasing values"),
    ((0.9, 0.6, 0.5, 0.1), "hair", "four increasing values"),
    ((0.1, 0.2, 0.3, 0.4), "  ", "target prompt"),
])
def test_bad_groups_are_refused_before_any_computation(text, thresholds, target, message):
    group = manipulation.ManipulationGroup(target, "none", "hair", 3.0, False, thresholds)
    with pytest.raises(ColorizerInputError, match=message):
        manipulation.local_group(torch.randn(1, 257, 128), group, text)


def test_a_group_moves_only_local_tokens_towards_the_target(text):
    v = torch.randn(1, 257, 128, generator=torch.Generator().manual_seed(0))
    group = manipulation.ManipulationGroup("blue sky", "none", "the sky", 4.0, False, (0.2, 0.4, 0.6, 0.8))
    r = manipulation.local_group(v, group, text)
    assert torch.equal(r.tokens[:, :1], v[:, :1])
    t = text.encode(["blue sky"])
    moved = (r.tokens[:, 1:] - v[:, 1:]) @ t.transpose(1, 2)
    # the most control-like tokens (band 4) move by +Δ along t, the least (band 0) by -2Δ
    d = float(r.dscale)
    assert torch.allclose(moved[r.band == 4], torch.full_like(moved[r.band == 4], d), atol=1e-4)
    assert torch.allclose(moved[r.band == 0], torch.full_like(moved[r.band == 0], -2 * d), atol=1e-4)


# ------------------------------------------------------------------------------------------ nodes

def _nodes():
    from colorize_diffusion.nodes import node_classes
    return node_classes()


def test_the_text_tower_node_gives_one_managed_patcher_per_file(text):
    """Load Text Tower's value is the file's tower in a ModelPatcher, read once while the file is unchanged, and
    ComfyUI's model management loads it when a manipulation runs."""
    import comfy.model_management as mm

    from colorize_diffusion.model_patches.common import extra_networks

    extra_networks.clear()
    tower = manipulation.load_text_tower_file(str(FULL), heads=4)
    assert manipulation.load_text_tower_file(str(FULL), heads=4) is tower
    assert torch.equal(tower.model.encode(["a red dress"]).cpu(), text.encode(["a red dress"]))
    assert extra_networks.loaded(tower, full=True) is tower.model
    assert any(loaded.model is tower for loaded in mm.current_loaded_models)


def test_manipulation_rows_chain_and_gate_like_the_app(text):
    from colorize_diffusion.model_patches.common import clip_vision

    n = _nodes()
    rows = n["ColorizeDiffusionManipulation"].execute("blue sky", "none", "the sky", 0.0, False, 0.2, 0.4, 0.6, 0.8)[0]
    rows = n["ColorizeDiffusionManipulation"].execute("a red dress", "", "dress", 4.0, True, 0.3, 0.5, 0.7, 0.9,
                                                    previous=rows)[0]
    assert [g.target for g in rows] == ["blue sky", "a red dress"]
    same = n["ColorizeDiffusionManipulationText"].execute(
        "[target] blue sky; [anchor] none; [control] the sky; [scale] 0.0; [enhanced] ; [ts0] 0.2; [ts1] 0.4; "
        "[ts2] 0.6; [ts3] 0.8\n[target] a red dress; [anchor] ; [control] dress; [scale] 4.0; [enhanced] True; "
        "[ts0] 0.3; [ts1] 0.5; [ts2] 0.7; [ts3] 0.9")[0]
    assert same == rows
    vision = clip_vision.load_openclip_vision(str(FULL), heads=4)
    ref = n["ColorizeDiffusionEncodeReference"].execute(vision, torch.rand(1, 64, 48, 3))[0]
    tower = manipulation.load_text_tower_file(str(FULL), heads=4)
    out = n["ColorizeDiffusionManipulateReference"].execute(ref, tower, rows)[0]
    assert torch.equal(out.cls, ref.cls) and not torch.allclose(out.tokens, ref.tokens)
    assert torch.allclose(out.full, manipulation.manipulate(ref.full, rows, text))
    idle = n["ColorizeDiffusionManipulateReference"].execute(ref, tower, rows[:1])[0]   # all scales 0: off
    assert idle is ref
    overlay, bands = n["ColorizeDiffusionVisualizeManipulation"].execute(
        torch.rand(1, 64, 48, 3), vision, tower, "the sky", 0.2, 0.4, 0.6, 0.8, manipulations=rows)
    assert overlay.shape == (1, 64, 48, 3) and bands.shape == (1, 64, 48)
    assert set(torch.unique(bands * 4).tolist()) <= {0, 1, 2, 3, 4} and bands.max() == 1
    with pytest.raises(ColorizerInputError, match="four increasing"):
        n["ColorizeDiffusionManipulation"].execute("x", "none", "y", 1.0, False, 0.5, 0.5, 0.6, 0.9)
