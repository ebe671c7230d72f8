"""Patching the host UNet for ColorizeDiffusion through ModelPatcher hooks (never touching the given MODEL).

* every attn2 → SplitCrossAttention (object patch; reference strength, split fg/bg attention, LoRA);
* input_block_patch → sketch residuals after input blocks 0/3/6/9/11, before the skip is stored;
* output_block_patch → v2 skip warp (background injection) and the style FiLM of the previous decoder block;
* `diffusion_model.out` → the style FiLM of the last decoder block (v2), then the original head;
* emb_patch → keeps the step's time embedding for the style FiLM;
* DIFFUSION_MODEL wrapper → moves the colorizer's conditioning from the UNet kwargs to transformer_options.
"""
from __future__ import annotations

import functools
import torch
import torch.nn as nn

from ...comfy_compat import on_model_replaced
from ...errors import ColorizerInputError
from ..common.unet_patch import HeadAfter, call_with, set_diffusion_model_wrapper
from .families import spec_of
from .split_attention import (BankSelfAttention, SplitCrossAttention, gather_tokens, scatter_tokens, selection_groups,
                              take_rows)
from .step_data import CURRENT_STEP, STEP_KEY, pop_step_data

WRAPPER_KEY = "colorize_diffusion"
ADDITIONAL_MODELS_KEY = "colorize_diffusion"   # the colorizer's UNet-extras patcher


def _is(module, name: str) -> bool:
    return type(module).__name__ == name


def transformer_blocks(diffusion_model) -> list[tuple[int, str, float]]:
    """(official block index, module path of attn2's parent, mask scale factor) in depth-first order."""
    found, level = [], 0
    groups = [("input_blocks", b) for b in diffusion_model.input_blocks]
    groups.append(("middle_block", diffusion_model.middle_block))
    groups += [("output_blocks", b) for b in diffusion_model.output_blocks]
    counters = {"input_blocks": 0, "output_blocks": 0}
    for kind, block in groups:
        layers = list(block)
        for li, layer in enumerate(layers):
            if _is(layer, "SpatialTransformer"):
                for ti, tb in enumerate(layer.transformer_blocks):
                    if kind == "middle_block":
                        path = f"middle_block.{li}.transformer_blocks.{ti}"
                    else:
                        path = f"{kind}.{counters[kind]}.{li}.transformer_blocks.{ti}"
                    found.append((len(found), path, 0.5 ** level))
        if any(_is(layer, "Downsample") for layer in layers):
            level += 1
        if any(_is(layer, "Upsample") for layer in layers):
            level -= 1
        if kind in counters:
            counters[kind] += 1
    return found


def attn2_patch_key(path: str) -> tuple[str, int, int]:
    """ComfyUI's attn2 replace-patch key (block name, number, transformer index) of a transformer block path."""
    parts = path.split(".")
    kind = {"input_blocks": "input", "middle_block": "middle", "output_blocks": "output"}[parts[0]]
    return kind, 0 if kind == "middle" else int(parts[1]), int(parts[-1])


def sketch_hint_blocks(diffusion_model) -> tuple[int, ...]:
    """Input blocks after which the sketch residuals are added: the stem, each downsample, the last block."""
    ids = [0] + [i for i, b in enumerate(diffusion_model.input_blocks) if any(_is(layer, "Downsample") for layer in b)]
    ids.append(len(diffusion_model.input_blocks) - 1)
    return tuple(ids)


class StyledOutput(HeadAfter):
    """The UNet head, preceded by the style FiLM of the last decoder block when the step carries style."""

    def __init__(self, out: nn.Module, style_module: nn.Module, index: int):
        super().__init__(out, index)
        self._style = (style_module,)

    def before(self, h):
        step = CURRENT_STEP.get()
        if step is not None and step.style is not None:
            h = self._style[0](h, step.style[self.index], step.time_emb)
        return h


class ColorizerUNetPatch:
    """The block-level patches and the diffusion-model wrapper; shared (not copied) by model clones."""

    def __init__(self, family: str, unet_extras, hint_blocks: tuple, attention_blocks: tuple):
        self.family = family
        self.hint_index = {block: k for k, block in enumerate(hint_blocks)}
        self.attention_blocks = attention_blocks     # (official block index, host attn2 patch key) per block
        self._extras = (unet_extras,)

    def __deepcopy__(self, memo):
        return self

    @property
    def warp_modules(self):
        return self._extras[0].warp_modules

    @property
    def style_modules(self):
        return self._extras[0].style_modules

    def diffusion_model_wrapper(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        step = pop_step_data(kwargs)
        if step is None:
            raise ColorizerInputError(
                "this MODEL was patched by 'ColorizeDiffusion Apply Sketch': connect the positive and negative of "
                "that node (or of the last ColorizeDiffusion node chained after it) to the sampler, not other "
                "conditionings")
        if step.settings.unfinished:
            raise ColorizerInputError(step.settings.unfinished)
        if step.controls is not None and len(step.controls) != len(self.hint_index):
            raise ColorizerInputError(f"expected {len(self.hint_index)} sketch residuals, got {len(step.controls)}")
        passes = len(transformer_options.get("cond_or_uncond") or (0,))
        latent_batch, prepared = x.shape[0] // passes, step.settings.batch
        if prepared > 1 and latent_batch != prepared:     # ComfyUI would cut or cycle the prepared rows silently
            raise ColorizerInputError(
                f"the latent being sampled holds {latent_batch} pictures, but Apply Sketch prepared {prepared} "
                "(sketches × samples_per_sketch): sample Apply Sketch's own latent, or change samples_per_sketch "
                "there instead of the batch size of another latent node")
        self._check_attention_replacements(step, transformer_options)
        window = step.settings.window
        if window is not None and window.off_at(timesteps.flatten()[0]):
            # the official zero context: one zero token (the split attention needs one per half); with no bias
            # in to_k/to_v and the LoRA, any number of zero tokens gives the same output
            context = context.new_zeros(context.shape[0], 2 if step.settings.split else 1, context.shape[-1])
        transformer_options = {**transformer_options, STEP_KEY: step}
        return call_with(CURRENT_STEP, step, executor, x, timesteps, context, y, control, transformer_options,
                         **kwargs)

    def _check_attention_replacements(self, step, transformer_options):
        """Another node's attn2 replace patch (IP-Adapter's mechanism) makes ComfyUI call it instead of the block's
        attn2, so the colorizer's attention would be skipped there. Where that attention is the plain one (no
        fg/bg split, reference strength 1) the result is the same and both work; elsewhere: a clear error."""
        replaced = transformer_options.get("patches_replace", {}).get("attn2", {})
        if not replaced:
            return
        st = step.settings
        clash = [key for index, key in self.attention_blocks
                 if (key in replaced or key[:2] in replaced) and (st.split or st.reference_scales[index] != 1)]
        if clash:
            where = ", ".join(f"{kind} {number}" + (f".{t}" if t else "") for kind, number, t in clash)
            raise ColorizerInputError(
                f"another node replaced the cross-attention of UNet blocks {where} (an attention-replacing patch, "
                "such as IP-Adapter's), where ColorizeDiffusion needs its own reference attention (foreground/"
                "background split or a reference strength other than 1). Apply that node to a MODEL without "
                "these ColorizeDiffusion options, or leave it out of this graph")

    def emb_patch(self, emb, model_channels, transformer_options):
        step = transformer_options.get(STEP_KEY)
        if step is not None:
            step.time_emb = emb
        return emb

    def input_block_patch(self, h, transformer_options):
        step = transformer_options.get(STEP_KEY)
        block = transformer_options.get("block")
        if step is not None and step.controls is not None and block[0] == "input" and block[1] in self.hint_index:
            residual = step.controls[self.hint_index[block[1]]]
            if residual.shape != h.shape:
                raise ColorizerInputError(
                    f"sketch residual {tuple(residual.shape)} does not fit the UNet features {tuple(h.shape)} after "
                    f"input block {block[1]}: the sketch must have the latent's size ×8 (same batch)")
            h = h + residual.to(h.dtype)
        return h

    def output_block_patch(self, h, hsp, transformer_options):
        step = transformer_options.get(STEP_KEY)
        if step is None:
            return h, hsp
        j = transformer_options["block"][1]
        if step.style is not None and j >= 1:
            h = self.style_modules[j - 1](h, step.style[j - 1], step.time_emb)
        if step.hs_bg is not None and step.mask is not None:
            hw = tuple(hsp.shape[-2:])
            groups = step.cached(("warp groups", hw, hsp.dtype), lambda: selection_groups(
                ~(step.skip_mask(hw).to(hsp.dtype) > step.settings.threshold).flatten(1)))
            hsp = warp_where(self.warp_modules[j], hsp, step.hs_bg[j], groups)
        return h, hsp


def warp_where(warp, skip, hs_bg, select):
    """`where(select, warp(skip, hs_bg), skip)` with the warp block run only on the selected skip tokens.

    Exact: apart from its attention keys (hs_bg, all of them), the block acts on each skip token on its own.
    `skip` [B,C,H,W], `hs_bg` [B,H·W',C], `select` [B,H·W] bool, or its `selection_groups`.
    """
    groups = selection_groups(select) if isinstance(select, torch.Tensor) else select
    out = skip.clone(memory_format=torch.contiguous_format)
    src = skip.flatten(2).transpose(1, 2)          # [B, HW, C]
    dst = out.flatten(2).transpose(1, 2)           # a view: writing it writes `out`
    for rows, tokens in groups:
        scatter_tokens(dst, rows, tokens,
                       warp.forward_tokens(gather_tokens(src, rows, tokens), take_rows(hs_bg, rows).to(src.dtype)))
    return out


def apply_colorizer(model, colorizer):
    """A clone of `model` patched for `colorizer`; the given MODEL is left as it was."""
    m = model.clone()
    _install(m, colorizer.family, colorizer.unet_extras, m.get_model_object)
    m.set_additional_models(ADDITIONAL_MODELS_KEY, [colorizer.unet_extras_patcher])
    on_model_replaced(m, WRAPPER_KEY, functools.partial(retarget_multigpu_clone, colorizer.family))
    return m


def _install(m, family: str, extras, module_at) -> None:
    """Add the colorizer's object, block and wrapper patches to patcher `m`, built on the modules `module_at(name)`
    gives and on the networks of `extras`; patches of an earlier `_install` on `m` are replaced."""
    diffusion_model = module_at("diffusion_model")
    blocks = transformer_blocks(diffusion_model)
    for index, path, mask_scale in blocks:
        name = f"diffusion_model.{path}.attn2"
        lora_key = f"{path}.attn2".replace(".", "/")
        lora = extras.lora[lora_key] if lora_key in extras.lora else None
        m.add_object_patch(name, SplitCrossAttention(module_at(name), index, mask_scale, lora))
    if spec_of(family).reference_net:    # the decoder self-attentions read the background ReferenceNet's banks
        decoder = [(index, path, scale) for index, path, scale in blocks if path.startswith("output_blocks.")]
        for bank_index, (_, path, mask_scale) in enumerate(decoder):
            name = f"diffusion_model.{path}.attn1"
            m.add_object_patch(name, BankSelfAttention(module_at(name), bank_index, mask_scale))
    if extras.style_modules is not None:
        last = len(extras.style_modules) - 1
        m.add_object_patch("diffusion_model.out",
                           StyledOutput(module_at("diffusion_model.out"), extras.style_modules[last], last))
    patch = ColorizerUNetPatch(family, extras, sketch_hint_blocks(diffusion_model),
                               tuple((index, attn2_patch_key(path)) for index, path, _ in blocks))
    patches = m.model_options["transformer_options"].get("patches", {})
    for name in ("emb_patch", "input_block_patch", "output_block_patch"):
        if name in patches:
            patches[name] = [p for p in patches[name] if not isinstance(getattr(p, "__self__", None),
                                                                        ColorizerUNetPatch)]
    m.set_model_emb_patch(patch.emb_patch)
    m.set_model_input_block_patch(patch.input_block_patch)
    m.set_model_output_block_patch(patch.output_block_patch)
    set_diffusion_model_wrapper(m, WRAPPER_KEY, patch.diffusion_model_wrapper)


def retarget_multigpu_clone(family: str, original, clone) -> None:
    """ComfyUI's multi-GPU clones (deep-cloned, then matched to the main patcher on every sampling) and the
    non-dynamic delegate of hooked conditioning give `clone` a model of its own, and the multi-GPU ones a fresh copy
    of the colorizer's networks (their reload recipes); the patches copied from `original` still point at the
    original's modules. Rebuild them on the clone's own modules, so each computes with its own weights."""
    import comfy.utils

    extras = clone.get_additional_models_with_key(ADDITIONAL_MODELS_KEY)[0].model
    _install(clone, family, extras, lambda name: comfy.utils.get_attr(clone.model, name))
