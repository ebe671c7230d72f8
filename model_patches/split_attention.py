"""Cross-attention of one transformer block, as ColorizeDiffusion computes it.

Object-patched in place of `…attn2`; to_q/to_k/to_v/to_out stay reachable (other packs' attn2 patches
and weight patches keep working). Without the colorizer's data it behaves like the module it replaced.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .step_data import STEP_KEY


def _attention(q, k, v, heads, attn_precision, transformer_options):
    from comfy.ldm.modules import attention

    return attention.optimized_attention(q, k, v, heads, attn_precision=attn_precision,
                                         transformer_options=transformer_options)


class SplitCrossAttention(nn.Module):
    """Reference strength before to_out; with a mask, fg/bg branches each with its own LoRA, chosen per token."""

    def __init__(self, attn2: nn.Module, block_index: int, mask_scale: float, lora=None):
        super().__init__()
        self.to_q, self.to_k, self.to_v, self.to_out = attn2.to_q, attn2.to_k, attn2.to_v, attn2.to_out
        self.heads = attn2.heads
        self.dim_head = getattr(attn2, "dim_head", None)
        self.attn_precision = getattr(attn2, "attn_precision", None)
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
            out = _attention(q, k, v, self.heads, self.attn_precision, transformer_options)
            return self.to_out(out * scale)

        ctx_fg, ctx_bg = context.chunk(2, dim=1)
        val_fg, val_bg = value.chunk(2, dim=1)
        fg_branch = "fg" if st.fg_lora else None
        bg_branch = "bg" if st.bg_lora else None
        q_bg = self._project(self.to_q, "q", x, bg_branch)
        q_fg = q_bg if fg_branch == bg_branch else self._project(self.to_q, "q", x, fg_branch)
        bg = _attention(q_bg, self._project(self.to_k, "k", ctx_bg, bg_branch),
                        self._project(self.to_v, "v", val_bg, bg_branch),
                        self.heads, self.attn_precision, transformer_options) * scale * st.bg_scale
        fg = _attention(q_fg, self._project(self.to_k, "k", ctx_fg, fg_branch),
                        self._project(self.to_v, "v", val_fg, fg_branch),
                        self.heads, self.attn_precision, transformer_options) * scale * st.fg_scale
        if st.merge_scale:
            fg = fg * (1 - st.merge_scale) + bg * st.merge_scale
        hw = tuple(transformer_options["activations_shape"][-2:])
        m = step.attention_mask(self.mask_scale, hw).to(fg.dtype)
        # Official comparisons differ by layer type (exactly at the threshold only):
        # LoRA-injected layers where(m > thr, fg, bg); the others where(m < thr, bg, fg).
        foreground = (m > st.threshold) if self._lora else ~(m < st.threshold)
        return self.to_out(torch.where(foreground, fg, bg))
