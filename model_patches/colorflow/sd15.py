"""ColorFlow's grey-page colorizer on ComfyUI's own SD1.5 UNet: the ColorGuider's residuals added where the official
UNet adds them, computed once per UNet call from the call's own rows.

Where each residual goes (the official UNet, in ComfyUI's block terms):
* encoder: residual 0 to the conv_in output *after* it was kept as skip 0 (`input_block_patch_after_skip` of input
  block 0); residual i to the output of input block i before it is kept as a skip (`input_block_patch`);
* mid: after the middle block (`output_block_patch` of output block 0, before the skip is concatenated);
* decoder: one after every resnet(+attention) and one after every upsampler. A residual after a whole output block
  is added before the next one (`output_block_patch`) or, after the last, before the head (`out`); the one between
  an output block's attention and its upsampler by the upsampler itself (an object patch that adds it first).

The guider's inputs travel in the conditioning (`model_conds`, batched like the latent rows), so each row of a call
(negative, positive, any order) gets the guider output of its own conditioning latents.
"""
from __future__ import annotations

import contextvars
import functools
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ColorizerInputError
from ..common.unet_patch import HeadAfter, call_with, set_diffusion_model_wrapper
from .conditioning import GUIDE_KEY, SCALE_KEY, check_guide_size

WRAPPER_KEY = "colorflow_sd"
ADDITIONAL_MODELS_KEY = "colorflow_guider"


@dataclass
class Residuals:
    down: list
    mid: torch.Tensor
    up: list


CURRENT: contextvars.ContextVar = contextvars.ContextVar("colorflow_residuals", default=None)


def _add(h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return h + r.to(h.dtype)


@functools.lru_cache(maxsize=None)
def _upsample_after_residual():
    """The class of an output block's upsampler preceded by the decoder residual of the resnet(+attention) before
    it: a subclass of ComfyUI's Upsample, so that the UNet still hands it the skip's size (odd latent sizes)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import Upsample

    class UpsampleAfterResidual(Upsample):
        def __init__(self, upsample: nn.Module, index: int):
            nn.Module.__init__(self)          # the upsampler's own layers under their names (weight key paths)
            self._upsample = (upsample,)
            for name, child in upsample.named_children():
                self.add_module(name, child)
            self.index = index

        def __deepcopy__(self, memo):
            return self

        def forward(self, x, output_shape=None):
            res = CURRENT.get()
            if res is not None:
                x = _add(x, res.up[self.index])
            return self._upsample[0](x, output_shape=output_shape)

    return UpsampleAfterResidual


class HeadAfterResidual(HeadAfter):
    """The UNet head (`out`), preceded by the last decoder residual."""

    def before(self, h):
        res = CURRENT.get()
        return _add(h, res.up[self.index]) if res is not None else h


def decoder_layout(diffusion_model) -> list:
    """Per output block: (index of its residual after the resnet(+attention), index after its upsampler or None,
    position of the upsampler layer in the block or None)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import Upsample

    layout, n = [], 0
    for block in diffusion_model.output_blocks:
        ups = [i for i, layer in enumerate(block) if isinstance(layer, Upsample)]
        after_res = n
        n += 1
        after_up = None
        if ups:
            after_up = n
            n += 1
        layout.append((after_res, after_up, ups[0] if ups else None))
    return layout


class GuiderPatch:
    """The block patches and the diffusion-model wrapper (shared by clones)."""

    def __init__(self, guider_patcher, layout: list, encoder_blocks: int):
        self.guider_patcher = guider_patcher
        self.layout = layout
        self.encoder_blocks = encoder_blocks

    def guider_residuals(self, x, timesteps, guide, scale: float) -> Residuals:
        guider = self.guider_patcher.model
        p = next(guider.parameters())
        # the timesteps stay float32 (the official embedding's precision): in bf16 751 would become 752
        down, mid, up = guider(x.to(p.dtype), timesteps.float(), guide.to(device=p.device, dtype=p.dtype), scale)
        if len(down) != self.encoder_blocks or len(up) != sum(1 + (u is not None) for _, u, _ in self.layout):
            raise ColorizerInputError(
                f"the ColorGuider gives {len(down)} encoder and {len(up)} decoder residuals, this UNet has "
                f"{self.encoder_blocks} input blocks and another decoder: the guider belongs to another base model")
        return Residuals(down, mid, up)

    def diffusion_model_wrapper(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        guide = kwargs.pop(GUIDE_KEY, None)
        scale = kwargs.pop(SCALE_KEY, 1.0)
        if guide is None:
            return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        check_guide_size(guide, x)
        return call_with(CURRENT, self.guider_residuals(x, timesteps, guide, float(scale)), executor,
                         x, timesteps, context, y, control, transformer_options, **kwargs)

    def input_block_patch(self, h, transformer_options):
        res, (_, index) = CURRENT.get(), transformer_options.get("block", ("input", 0))
        return _add(h, res.down[index]) if res is not None and index > 0 else h

    def input_block_patch_after_skip(self, h, transformer_options):
        res, (_, index) = CURRENT.get(), transformer_options.get("block", ("input", 0))
        return _add(h, res.down[0]) if res is not None and index == 0 else h

    def output_block_patch(self, h, hsp, transformer_options):
        res, (_, index) = CURRENT.get(), transformer_options.get("block", ("output", 0))
        if res is None:
            return h, hsp
        if index == 0:
            return _add(h, res.mid), hsp
        after_res, after_up, _ = self.layout[index - 1]
        return _add(h, res.up[after_up if after_up is not None else after_res]), hsp


def apply_guider(model, guider_patcher, lora_patches: dict | None = None):
    """A clone of the SD1.5 MODEL `model` with the guider's residuals (and the LoRA's weight patches)."""
    import comfy.utils

    m = model.clone()
    dm = m.get_model_object("diffusion_model")
    if not hasattr(dm, "output_blocks") or not hasattr(dm, "input_blocks"):
        raise ColorizerInputError(f"this MODEL is a {type(dm).__name__}, not an SD1.5 UNet: the grey-page ColorFlow "
                                  "colorizer (GraySD) patches Stable Diffusion 1.5")
    layout = decoder_layout(dm)
    patch = GuiderPatch(guider_patcher, layout, len(dm.input_blocks))
    for k, (after_res, _, up_pos) in enumerate(layout):
        if up_pos is not None:
            name = f"diffusion_model.output_blocks.{k}.{up_pos}"
            m.add_object_patch(name, _upsample_after_residual()(comfy.utils.get_attr(m.model, name), after_res))
    last_res, last_up, _ = layout[-1]
    m.add_object_patch("diffusion_model.out",
                       HeadAfterResidual(m.get_model_object("diffusion_model.out"),
                                         last_up if last_up is not None else last_res))
    m.set_model_input_block_patch(patch.input_block_patch)
    m.set_model_input_block_patch_after_skip(patch.input_block_patch_after_skip)
    m.set_model_output_block_patch(patch.output_block_patch)
    set_diffusion_model_wrapper(m, WRAPPER_KEY, patch.diffusion_model_wrapper)
    m.set_additional_models(ADDITIONAL_MODELS_KEY, [guider_patcher])
    if lora_patches:
        m.add_patches(lora_patches, 1.0)
    return m
