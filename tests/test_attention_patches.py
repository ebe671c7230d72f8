"""The colorizer's attention next to another pack's attn2 replace patch (IP-Adapter's mechanism).

ComfyUI calls a replace patch instead of the block's attn2. Where the colorizer's attention is the plain one
(vanilla mode, reference strength 1) both work and the result is the golden one; where the colorizer needs its
own attention (fg/bg split, a reference strength other than 1) the prompt stops with an error naming the
blocks, never a silent skip of the colorizer's attention.
"""
from __future__ import annotations

import pytest
import torch

import golden_support.unet_runner as unet_runner
from colorize_diffusion.errors import ColorizerInputError
from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import apply_colorizer
from golden_support.compare import check_model_case
from golden_support.discovery import discover_cases
from golden_support.model_eval import guided_step, loaded


class PlainAttentionReplace:
    """A minimal replace patch: the host's own attention on the projected q, k, v (counts its calls)."""

    def __init__(self):
        self.calls = 0

    def __deepcopy__(self, memo):
        return self

    def __call__(self, q, k, v, extra_options):
        from comfy.ldm.modules.attention import optimized_attention

        self.calls += 1
        return optimized_attention(q, k, v, extra_options["n_heads"])


def _case(name):
    golden = next(c for c in discover_cases() if c.name == name)
    return golden.load()


def _run(case, inputs, blocks):
    ckpt = loaded(str(_root() / case["checkpoint"]), case["prediction_type"])
    model = apply_colorizer(ckpt.model, ckpt.colorizer)
    patch = PlainAttentionReplace()
    for kind, number, index in blocks:
        model.set_model_attn2_replace(patch, kind, number, index)
    conds = unet_runner._conds(case, inputs, ckpt.colorizer)
    rec, _, _ = guided_step(model, *conds, inputs["x_t"], [case["timesteps"][0]["comfy_sigma"]], 1.0, 1.0,
                            case["prediction_type"])
    return rec.calls[0][0], patch


def _root():
    from conftest import GOLDEN
    return GOLDEN


ALL_V2_BLOCKS = [("input", 1, 0), ("input", 2, 0), ("input", 4, 0), ("input", 5, 0), ("middle", 0, 0),
                 ("output", 3, 0), ("output", 4, 0), ("output", 5, 0)]


def test_plain_reference_attention_works_with_a_replace_patch():
    case, inputs, expected = _case("B_v2_plain_24x16")
    out, patch = _run(case, inputs, ALL_V2_BLOCKS)
    assert patch.calls >= len(ALL_V2_BLOCKS)
    check_model_case(case, {"out": out}, expected)


@pytest.mark.parametrize("name", ["B_v2_bg_16x24", "B_v2_strength_16x24"])
def test_colorizer_attention_and_a_replace_patch_on_the_same_block_is_an_error(name):
    case, inputs, _ = _case(name)
    with pytest.raises(ColorizerInputError, match=r"replaced the cross-attention of UNet blocks input 1"):
        _run(case, inputs, [("input", 1, 0)])


def test_replace_patch_elsewhere_than_the_colorizer_attention_is_no_conflict():
    """Vanilla mode with a reference strength scales only some blocks: a replace patch on a block left at 1 gives
    the same result as no patch, one on a scaled block is refused."""
    import copy

    case, inputs, _ = _case("B_v2_plain_24x16")
    case = copy.deepcopy(case)
    case.pop("reference_scale_per_block", None)
    for p in case["parameters"]:
        if p.get("ui_name") == "Reference strength":
            p["value"] = 0.5
            break
    else:
        case["parameters"].append({"ui_name": "Reference strength", "value": 0.5})
    keys = _host_keys()
    scaled = unet_runner._conds(case, inputs, loaded(str(_root() / case["checkpoint"]), "v").colorizer)[0]
    scales = scaled[0][1]["model_conds"]["colorize_diffusion_settings"].cond.reference_scales
    untouched = [k for k, s in zip(keys, scales) if s == 1.0]
    touched = [k for k, s in zip(keys, scales) if s != 1.0]
    assert untouched and touched
    plain, _ = _run(case, inputs, [])
    out, patch = _run(case, inputs, untouched)
    assert patch.calls >= len(untouched)
    assert torch.allclose(out, plain, rtol=1e-5, atol=1e-6)
    with pytest.raises(ColorizerInputError, match="replaced the cross-attention"):
        _run(case, inputs, touched[:1])


def _host_keys():
    from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import attn2_patch_key, transformer_blocks

    ckpt = loaded(str(_root() / "models" / "v2-tiny.safetensors"), "v")
    return [attn2_patch_key(path) for _, path, _ in transformer_blocks(ckpt.model.model.diffusion_model)]
