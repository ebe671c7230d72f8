"""Split cross-attention and the v2 skip warp run each branch only on the tokens that select it.

The official code runs both attention branches (and the warp block) on every token, then keeps one per token
by the sketch mask. These tests hold the pack's gathered computation to that formulation, written out here,
on batches whose rows have different masks (the gather groups rows by mask), with and without LoRA, strengths
and a merging scale, and with tokens exactly at the threshold.
"""
from __future__ import annotations

import pytest
import torch

from colorize_diffusion.model_patches.colorize_diffusion.networks.split_lora import AttentionLora, LoraPair
from colorize_diffusion.model_patches.colorize_diffusion.networks.warp_style import WarpModule
from colorize_diffusion.model_patches.colorize_diffusion.settings import AttentionSettings
from colorize_diffusion.model_patches.colorize_diffusion.split_attention import SplitCrossAttention, selection_groups
from colorize_diffusion.model_patches.colorize_diffusion.step_data import STEP_KEY, StepData
from colorize_diffusion.model_patches.colorize_diffusion.unet_patches import warp_where

DIM, CONTEXT_DIM, HEADS, RANK = 64, 48, 4, 8
H, W = 6, 8
THRESHOLD = 0.25     # exactly representable: some mask values below sit exactly on it


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def _attn2():
    from comfy.ldm.modules.attention import CrossAttention

    # eager torch layers: the weights are set here, not loaded (the host may build its own layers lazily)
    attn = CrossAttention(DIM, context_dim=CONTEXT_DIM, heads=HEADS, dim_head=DIM // HEADS, operations=torch.nn)
    return _randomize(attn, 1)


def _lora():
    lora = AttentionLora()
    for proj in ("q", "k", "v"):
        in_dim = DIM if proj == "q" else CONTEXT_DIM
        for branch in ("fg", "bg"):
            lora.pairs[f"{proj}_{branch}"] = LoraPair(in_dim, RANK, DIM, operations=torch.nn)
    return _randomize(lora, 2)


def _masks(batch_patterns: str) -> torch.Tensor:
    """[B,1,H,W] soft masks; 'a', 'b': two different character shapes, '1': all character, '0': none."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 1, H, W, generator=g)
    a[..., 0, :3] = THRESHOLD                     # ties: the layer type decides (> vs not <)
    b = torch.rand(1, 1, H, W, generator=g)
    shapes = {"a": a, "b": b, "1": torch.ones(1, 1, H, W), "0": torch.zeros(1, 1, H, W)}
    return torch.cat([shapes[c] for c in batch_patterns])


def _official_split(attn, lora, x, context, m, st: AttentionSettings, scale: float):
    """Both branches on every token, then chosen per token (the official formulation)."""
    from comfy.ldm.modules.attention import optimized_attention

    def branch(ctx, name):
        q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
        if lora is not None and name is not None:
            q, k, v = (q + lora.delta("q", name, x), k + lora.delta("k", name, ctx), v + lora.delta("v", name, ctx))
        return optimized_attention(q, k, v, HEADS)

    ctx_fg, ctx_bg = context.chunk(2, dim=1)
    fg = branch(ctx_fg, "fg" if st.fg_lora else None) * scale * st.foreground_strength
    bg = branch(ctx_bg, "bg" if st.bg_lora else None) * scale * st.background_strength
    if st.merge_scale:
        fg = fg * (1 - st.merge_scale) + bg * st.merge_scale
    if lora is not None:
        out = torch.where((m > st.threshold)[..., None], fg, bg)
    else:
        out = torch.where((m < st.threshold)[..., None], bg, fg)
    return attn.to_out(out)


@pytest.mark.parametrize("with_lora", [True, False], ids=["lora", "no-lora"])
@pytest.mark.parametrize("merge_scale", [0.0, 0.3])
@pytest.mark.parametrize("rows", ["abab", "a", "1a0b"])
def test_split_attention_equals_both_branches_then_select(with_lora, merge_scale, rows):
    attn, lora = _attn2(), (_lora() if with_lora else None)
    scale = 0.8
    st = AttentionSettings(reference_scales=(scale,) * 16, split=True, threshold=THRESHOLD, foreground_strength=1.3,
                           background_strength=0.7, merge_scale=merge_scale, fg_lora=with_lora, bg_lora=with_lora)
    step = StepData(settings=st, mask=_masks(rows))
    b = len(rows)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(b, H * W, DIM, generator=g)
    context = torch.randn(b, 2 * 5, CONTEXT_DIM, generator=g)       # 5 fg + 5 bg tokens
    options = {STEP_KEY: step, "activations_shape": (b, DIM, H, W)}
    patched = SplitCrossAttention(attn, block_index=3, mask_scale=1.0, lora=lora)

    with torch.no_grad():
        got = patched(x, context=context, transformer_options=options)
        m = step.attention_mask(1.0, (H, W))[..., 0]
        want = _official_split(attn, lora, x, context, m, st, scale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # The tie rule matters: both comparisons are exercised by the mask (values exactly at the threshold).
    assert bool((m == THRESHOLD).any())


def test_split_attention_without_colorizer_data_is_the_wrapped_layer():
    attn = _attn2()
    patched = SplitCrossAttention(attn, block_index=0, mask_scale=1.0)
    g = torch.Generator().manual_seed(5)
    x, context = torch.randn(2, H * W, DIM, generator=g), torch.randn(2, 7, CONTEXT_DIM, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(patched(x, context=context), attn(x, context=context), rtol=0, atol=0)


def test_selection_groups_gather_rows_that_share_a_mask_once():
    select = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    groups = {tuple(rows.tolist()): tokens.tolist() for rows, tokens in selection_groups(select)}
    assert groups == {(0, 2): [0, 2], (1,): [1, 2]}           # the empty row 3 is left out
    [(rows, tokens)] = selection_groups(select[[0, 2]])
    assert rows is None and tokens.tolist() == [0, 2]          # one shared mask: a single gather, all rows


@pytest.mark.parametrize("rows", ["ab1", "aa", "0"])
def test_warp_on_selected_tokens_equals_warp_everywhere_then_select(rows):
    warp = _randomize(WarpModule(DIM, operations=torch.nn), 6)
    b = len(rows)
    g = torch.Generator().manual_seed(7)
    skip = torch.randn(b, DIM, H, W, generator=g)
    hs_bg = torch.randn(b, 2 * H * W, DIM, generator=g)
    select = (_masks(rows) < THRESHOLD).flatten(1)           # warp the background tokens
    given = skip.clone()
    with torch.no_grad():
        got = warp_where(warp, skip, hs_bg, select)
        want = torch.where(select.view(b, 1, H, W), warp(skip, hs_bg), skip)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(skip, given)                          # the skip handed in is not written
