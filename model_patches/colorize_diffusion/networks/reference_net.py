"""The xlv2 background ReferenceNet (official `refnet.modules.unet.ReferenceNet`, prefix `bg_encoder.`).

An SDXL-shaped UNet without cross-attention (no `attn2`/`norm2`), without `out`, its decoder cut after the first
full-resolution output block; 6 input channels (background latent, sketch mask, reference mask) and a 1024-d `y`
(crop scales). It is run once per prompt at timestep 0; each decoder transformer block's `norm1` output is kept
as that block's bank, read by the same block of the colorizing UNet (golden_xl README §4.1).

Built from ComfyUI's own UNet blocks (the colorizing UNet's layout, read from the file), so its maths is the
host's.
"""
from __future__ import annotations

import torch
from torch import nn

from ....errors import ColorizerLoadError
from .common import count_indexed, load_prefixed, state_shape

DEFAULT_PREFIX = "bg_encoder."


class BankRecorder:
    """ComfyUI `attn1_patch` that keeps the self-attention input (norm1 output) of every decoder block."""

    def __init__(self):
        self.banks = []

    def __call__(self, n, context, value, extra_options):
        if extra_options.get("block", ("",))[0] == "output":
            self.banks.append(n)
        return n, context, value


class NoCrossAttention(nn.Module):
    """Stands in for the attn2 the ReferenceNet does not have (no weights; adds nothing). ComfyUI's transformer block
    skips a missing attn2 but then adds the self-attention output a second time, so it is replaced, not removed."""

    def forward(self, x, context=None, value=None, transformer_options=None, **kwargs):
        return torch.zeros_like(x)


class ReferenceNet(nn.Module):
    def __init__(self, unet_model: nn.Module, output_blocks: int):
        super().__init__()
        self.model_channels = unet_model.model_channels
        self.time_embed = unet_model.time_embed
        self.label_emb = unet_model.label_emb
        self.input_blocks = unet_model.input_blocks
        self.middle_block = unet_model.middle_block
        self.output_blocks = nn.ModuleList(list(unet_model.output_blocks)[:output_blocks])
        for module in self.modules():
            if type(module).__name__ == "BasicTransformerBlock":
                module.attn2 = NoCrossAttention()
                module.norm2 = nn.Identity()
        last = [i for i, b in enumerate(self.output_blocks) if any(type(m).__name__ == "SpatialTransformer" for m in b)]
        self._last_attention_block = last[-1] if last else -1

    @property
    def dtype(self):
        return self.input_blocks[0][0].weight.dtype

    def banks(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Banks of every decoder transformer block (DFS order) for input `x` [B,6,h,w] and `y` [B,1024]."""
        from comfy.ldm.modules.diffusionmodules.openaimodel import forward_timestep_embed
        from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

        dtype = self.dtype
        t = torch.zeros(x.shape[0], device=x.device)
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        emb = (emb + self.label_emb(y.to(device=x.device, dtype=self.label_emb[0][0].weight.dtype))).to(dtype)
        recorder = BankRecorder()
        opts = {"patches": {"attn1_patch": [recorder]}}
        h, hs = x.to(dtype), []
        for i, block in enumerate(self.input_blocks):
            opts["block"] = ("input", i)
            h = forward_timestep_embed(block, h, emb, None, opts)
            hs.append(h)
        opts["block"] = ("middle", 0)
        h = forward_timestep_embed(self.middle_block, h, emb, None, opts)
        for i, block in enumerate(self.output_blocks):
            if i > self._last_attention_block:
                break                            # the rest writes no bank
            opts["block"] = ("output", i)
            h = torch.cat([h, hs.pop()], 1)
            out_shape = hs[-1].shape if hs else None
            h = forward_timestep_embed(block, h, emb, None, opts, out_shape)
        return recorder.banks


def build_from_state_dict(sd: dict, unet_config: dict, prefix: str = DEFAULT_PREFIX, *, dtype=None, device=None,
                          operations=None) -> ReferenceNet:
    """The ReferenceNet of an xlv2 file: the colorizing UNet's layout (`unet_config`, ComfyUI's detected config)
    with the input channels, `y` width and decoder length of the `prefix` keys."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    in_channels = state_shape(sd, prefix + "input_blocks.0.0.weight", "background ReferenceNet")[1]
    adm = state_shape(sd, prefix + "label_emb.0.0.weight", "background ReferenceNet")[1]
    n_out = count_indexed(sd, prefix + "output_blocks.")
    if n_out == 0:
        raise ColorizerLoadError(f"checkpoint has no key {prefix}output_blocks.0.*")
    config = {k: v for k, v in unet_config.items() if k not in ("dtype", "out_channels")}
    config.update(in_channels=in_channels, adm_in_channels=adm, out_channels=4, num_classes="sequential",
                  context_dim=config.get("context_dim") or 64)
    unet = UNetModel(**config, dtype=dtype, device="meta", operations=operations)
    module = ReferenceNet(unet, n_out)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)
