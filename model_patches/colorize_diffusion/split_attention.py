"""Cross-attention of one transformer block, as ColorizeDiffusion computes it.

Object-patched in place of `…attn2`; to_q/to_k/to_v/to_out stay reachable (other packs' attn2 patches
and weight patches keep working). Without the colorizer's data it behaves like the module it replaced.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...comfy_compat import attention_kwargs
from .step_data import STEP_KEY


def _attention(q, k, v, heads, attn_precision, transformer_options, host_kwargs):
    from comfy.ldm.modules import attention

    return attention.optimized_attention(q, k, v, heads, attn_precision=attn_precision,
                                         transformer_options=transformer_options, **host_kwargs)


def selection_groups(select: torch.Tensor) -> list:
    """The True entries of a token selection `select` [B, N] as (rows, tokens) index pairs for gathering.

    Rows with the same selection share one gather (one mask for the whole batch, e.g. the guidance passes of
    one image, gives a single group); `rows` is None for "every row". Empty groups are left out.
    """
    if select.shape[0] == 1:
        groups = [(None, select[0])]
    else:
        patterns, which = torch.unique(select, dim=0, return_inverse=True)
        if patterns.shape[0] == 1:
            groups = [(None, patterns[0])]
        else:
            groups = [((which == g).nonzero().squeeze(1), patterns[g]) for g in range(patterns.shape[0])]
    groups = [(rows, row.nonzero().squeeze(1)) for rows, row in groups]
    return [(rows, tokens) for rows, tokens in groups if tokens.numel()]


def take_rows(t: torch.Tensor, rows):
    return t if rows is None else t[rows]


def gather_tokens(t: torch.Tensor, rows, tokens) -> torch.Tensor:
    """t[rows][:, tokens] for t [B, N, C]."""
    t = take_rows(t, rows)
    return t if tokens.numel() == t.shape[1] else t[:, tokens]


def scatter_tokens(out: torch.Tensor, rows, tokens, value: torch.Tensor) -> None:
    """out[rows][:, tokens] = value, in place."""
    if rows is None:
        out[:, tokens] = value.to(out.dtype)
    else:
        out[rows[:, None], tokens] = value.to(out.dtype)


class SplitCrossAttention(nn.Module):
    """Reference strength before to_out; with a mask, fg/bg branches each with its own LoRA, chosen per token."""

    def __init__(self, attn2: nn.Module, block_index: int, mask_scale: float, lora=None):
        super().__init__()
        # The host module's children under their own names (to_q/to_k/to_v/to_out, and `comfy_attention` on newer
        # hosts), so weight patches, backups and partial unloads find the key paths they expect, and its plain
        # attributes (heads, dim_head, attn_precision, ...), which the host's transformer block may read.
        for name, child in attn2.named_children():
            self.add_module(name, child)
        for name, value in vars(attn2).items():
            if not name.startswith("_") and name != "training" and not isinstance(value, nn.Module):
                setattr(self, name, value)
        self.attn_precision = getattr(attn2, "attn_precision", None)
        self._host_kwargs = attention_kwargs(attn2)
        self.block_index = block_index
        self.mask_scale = mask_scale
        # Kept out of the module tree: the original is restored by ComfyUI, the LoRA belongs to the
        # colorizer's own ModelPatcher.
        self._wrapped = (attn2,)
        self._lora = (lora,) if lora is not None else ()

    def __deepcopy__(self, memo):
        return self

    def _project(self, linear, proj: str, x, branch: str | None):
        y = linear(x)
        if branch is not None and self._lora:
            y = y + self._lora[0].delta(proj, branch, x)
        return y

    def forward(self, x, context=None, value=None, mask=None, transformer_options={}):
        step = transformer_options.get(STEP_KEY)
        if step is None:
            return self._wrapped[0](x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        st = step.settings
        scale = st.reference_scales[self.block_index]
        value = context if value is None else value
        if not st.split:
            q, k, v = self.to_q(x), self.to_k(context), self.to_v(value)
            out = _attention(q, k, v, self.heads, self.attn_precision, transformer_options, self._host_kwargs)
            return self.to_out(out * scale if scale != 1 else out)

        # fg/bg branches each computed only for the tokens that select it (exact: attention, projections and
        # LoRA act per query token); with a merging scale the bg branch is needed on the fg tokens too.
        ctx_fg, ctx_bg = context.chunk(2, dim=1)
        val_fg, val_bg = value.chunk(2, dim=1)
        fg_branch = (st.lora_label or "fg") if st.fg_lora else None
        bg_branch = (st.lora_label or "bg") if st.bg_lora else None
        hw = tuple(transformer_options["activations_shape"][-2:])
        if st.rule == "soft":
            return self.to_out(self._soft_blend(step, x, hw, (ctx_fg, val_fg, fg_branch), (ctx_bg, val_bg, bg_branch),
                                                scale, transformer_options))
        bg_groups, fg_groups = step.cached(("attention groups", self.mask_scale, hw, bool(self._lora), x.dtype),
                                           lambda: self._token_groups(step, hw, x.dtype))
        out = None
        for is_fg, groups, ctx, val, branch, strength in (
                (False, bg_groups, ctx_bg, val_bg, bg_branch, st.background_strength),
                (True, fg_groups, ctx_fg, val_fg, fg_branch, st.foreground_strength)):
            for rows, tokens in groups:
                y = self._branch(gather_tokens(x, rows, tokens), take_rows(ctx, rows), take_rows(val, rows), branch,
                                 transformer_options) * scale * strength
                if out is None:
                    out = y.new_empty(x.shape[0], x.shape[1], y.shape[-1])
                if is_fg and st.merge_scale:   # bg (already in `out`) was computed on every token
                    y = y * (1 - st.merge_scale) + gather_tokens(out, rows, tokens) * st.merge_scale
                scatter_tokens(out, rows, tokens, y)
        return self.to_out(out)

    def _soft_blend(self, step, x, hw, fg, bg, scale, transformer_options):
        """xlv2: both halves on every token, blended by the soft mask: (fg(1-merge) + bg·merge)·m + bg·(1-m)."""
        st = step.settings
        out_bg = self._branch(x, bg[0], bg[1], bg[2], transformer_options) * (scale * st.background_strength)
        out_fg = self._branch(x, fg[0], fg[1], fg[2], transformer_options) * (scale * st.foreground_strength)
        out_fg = out_fg * (1 - st.merge_scale) + out_bg * st.merge_scale
        m = step.attention_mask(self.mask_scale, hw).to(x.dtype)
        return out_fg * m + out_bg * (1 - m)

    def _token_groups(self, step, hw, dtype):
        """(bg, fg) selection groups of this block's resolution and comparison rule."""
        st = step.settings
        m = step.attention_mask(self.mask_scale, hw)[..., 0].to(dtype)
        # Official comparisons differ by layer type (exactly at the threshold only):
        # LoRA-injected layers where(m > thr, fg, bg); the others where(m < thr, bg, fg); sdxl's biased attention
        # (merging scale 0) m > thr.
        above = st.rule == "above" and not st.merge_scale
        foreground = (m > st.threshold) if (self._lora or above) else ~(m < st.threshold)
        bg_tokens = torch.ones_like(foreground) if st.merge_scale else ~foreground
        return selection_groups(bg_tokens), selection_groups(foreground)

    def _branch(self, x, context, value, branch, transformer_options):
        q = self._project(self.to_q, "q", x, branch)
        k = self._project(self.to_k, "k", context, branch)
        v = self._project(self.to_v, "v", value, branch)
        return _attention(q, k, v, self.heads, self.attn_precision, transformer_options, self._host_kwargs)


BANK_THRESHOLD = 0.05     # the official decoder attn1 keeps its default threshold (the UI never sets it)


class BankSelfAttention(nn.Module):
    """xlv2 decoder self-attention with the background ReferenceNet's bank: where the soft sketch mask is above 0.05
    a token attends to its own picture's tokens (the plain self-attention), elsewhere to the bank only (official:
    one attention over [tokens, bank] with a -inf bias on the other half). Without a bank: the module it replaced."""

    def __init__(self, attn1: nn.Module, bank_index: int, mask_scale: float):
        super().__init__()
        for name, child in attn1.named_children():
            self.add_module(name, child)
        for name, value in vars(attn1).items():
            if not name.startswith("_") and name != "training" and not isinstance(value, nn.Module):
                setattr(self, name, value)
        self.attn_precision = getattr(attn1, "attn_precision", None)
        self._host_kwargs = attention_kwargs(attn1)
        self.bank_index = bank_index
        self.mask_scale = mask_scale
        self._wrapped = (attn1,)

    def __deepcopy__(self, memo):
        return self

    def forward(self, x, context=None, value=None, mask=None, transformer_options={}):
        step = transformer_options.get(STEP_KEY)
        if step is None or step.banks is None or step.mask is None:
            return self._wrapped[0](x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        bank = step.banks.bank(self.bank_index).to(device=x.device, dtype=x.dtype)
        hw = tuple(transformer_options["activations_shape"][-2:])
        own, to_bank = step.cached(("bank groups", self.mask_scale, hw, x.dtype), lambda: self._groups(step, hw, x.dtype))
        q = self.to_q(x)
        ctx = x if context is None else context
        k_own, v_own = self.to_k(ctx), self.to_v(ctx if value is None else value)
        # projected once per stored bank row, then shared by every pass and picture of the call
        k_bank, v_bank = (step.banks.expand_rows(t, x.shape[0]) for t in (self.to_k(bank), self.to_v(bank)))
        out = torch.empty_like(q)
        for groups, k, v in ((own, k_own, v_own), (to_bank, k_bank, v_bank)):
            for rows, tokens in groups:
                y = _attention(gather_tokens(q, rows, tokens), take_rows(k, rows), take_rows(v, rows), self.heads,
                               self.attn_precision, transformer_options, self._host_kwargs)
                scatter_tokens(out, rows, tokens, y)
        return self.to_out(out)

    def _groups(self, step, hw, dtype):
        m = step.attention_mask(self.mask_scale, hw)[..., 0].to(dtype)
        own = m > BANK_THRESHOLD
        return selection_groups(own), selection_groups(~own)
