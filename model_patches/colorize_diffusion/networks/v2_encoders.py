"""v2 reference encoders (official `refnet.modules.unet.UNetEncoder`, prefixes `bg_encoder.` / `style_encoder.`).

The encoder half of an SD2 UNet — `time_embed`, `label_emb` (`num_classes: sequential`, y = the 512-d size
embedding), the input blocks — built from ComfyUI's own ldm blocks so its maths equals the host UNet's,
plus one "zero layer" per input block (model-spec §2.4, §3.7, §3.8):

* background encoder: 1×1 conv, flattened to tokens `[B, h·w, C]`;
* style encoder: Linear on the spatial mean `[B, C] -> [B, D]`.

Both lists are reversed, so index j belongs to UNet decoder block j. The encoders are run once per generation
at timestep 0 with cross-attention to a given context (no mask, reference scale 1).
"""
from __future__ import annotations

import torch
from torch import nn

from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, TimestepEmbedSequential
from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

from ....errors import ColorizerLoadError
from .common import operations_or_default, count_indexed, load_prefixed, state_shape

BG_PREFIX = "bg_encoder."
STYLE_PREFIX = "style_encoder."
HEAD_DIM = 64
SIZE_EMBED_DIM = 256


def size_embedding(ref_hw, gen_hw, dim: int = SIZE_EMBED_DIM) -> torch.Tensor:
    """Official `get_size_embedding` → `[1, 2·dim]` float32 (the `y` of `label_emb`).

    `ref_hw` = pixel size (h, w) of the reference / background tensor as given to the model (after margin
    padding); `gen_hw` = generation size (H, W) in pixels. If the reference is smaller than the generation in
    either dimension, `ih = oh + max(H, W)`, `iw = ow / oh · ih`, else `ih, iw = oh, ow`; then
    `cat(timestep_embedding(ih/H), timestep_embedding(iw/W))` (ratios computed in Python floats, embedded
    as float32 like `torch.Tensor([rh, rw])`).
    """
    oh, ow = (int(v) for v in ref_hw)
    height, width = (int(v) for v in gen_hw)
    if oh < height or ow < width:
        ih = oh + max(height, width)
        iw = ow / oh * ih
    else:
        ih, iw = oh, ow
    ratios = torch.tensor([ih / height, iw / width], dtype=torch.float32)
    emb = timestep_embedding(ratios, dim)          # [2, dim]: row 0 = rh, row 1 = rw
    return emb.reshape(1, 2 * dim)


class ReferenceUNetEncoder(nn.Module):
    """`forward(x [B,4,h,w], context [B,N,C], y [B,adm], timestep=0) -> list of 12 tensors (decoder order)`.

    `blocks` describes input blocks 1..n: dicts with `kind` "res" (`out`, `scale_shift`, optional
    transformer `heads`, `depth`, `context_dim`, `linear`) or "down" (`out`). `zero` is "conv" (bg) or
    "linear" (style) with `zero_out` the output sizes of the style Linears.
    """

    def __init__(self, in_channels: int, model_channels: int, time_embed_dim: int, adm_in_channels,
                 blocks: list[dict], zero: str, zero_out: list[int] | None = None, *,
                 dtype=None, device=None, operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        kw = dict(dtype=dtype, device=device)
        self.model_channels = model_channels
        self.zero_kind = zero
        self.time_embed = nn.Sequential(ops.Linear(model_channels, time_embed_dim, **kw), nn.SiLU(),
                                        ops.Linear(time_embed_dim, time_embed_dim, **kw))
        self.label_emb = None
        if adm_in_channels is not None:
            self.label_emb = nn.Sequential(nn.Sequential(
                ops.Linear(adm_in_channels, time_embed_dim, **kw), nn.SiLU(),
                ops.Linear(time_embed_dim, time_embed_dim, **kw)))
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(
            ops.Conv2d(in_channels, model_channels, 3, padding=1, **kw))])
        chans, ch = [model_channels], model_channels
        for b in blocks:
            if b["kind"] == "down":
                layers = [Downsample(ch, True, dims=2, out_channels=b["out"], operations=ops, **kw)]
            else:
                layers = [ResBlock(ch, time_embed_dim, 0.0, out_channels=b["out"], dims=2,
                                   use_scale_shift_norm=b["scale_shift"], operations=ops, **kw)]
                if b.get("heads"):
                    layers.append(SpatialTransformer(
                        b["out"], b["heads"], HEAD_DIM, depth=b["depth"], context_dim=b["context_dim"],
                        use_linear=b["linear"], use_checkpoint=False, operations=ops, **kw))
            self.input_blocks.append(TimestepEmbedSequential(*layers))
            ch = b["out"]
            chans.append(ch)
        if zero == "conv":
            self.zero_layers = nn.ModuleList(ops.Conv2d(c, c, 1, **kw) for c in chans)
        else:
            self.zero_layers = nn.ModuleList(ops.Linear(c, d, **kw) for c, d in zip(chans, zero_out))

    compute_dtype: torch.dtype | None = None   # set to compute in another dtype than the weights'

    @property
    def dtype(self) -> torch.dtype:
        """dtype the inputs are cast to: `compute_dtype` if set, else the weights' dtype."""
        return self.compute_dtype or self.input_blocks[0][0].weight.dtype

    def forward(self, x: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None = None,
                timestep: float | torch.Tensor = 0, transformer_options: dict | None = None
                ) -> list[torch.Tensor]:
        dtype, b = self.dtype, x.shape[0]
        if not torch.is_tensor(timestep):
            timestep = torch.full((b,), float(timestep), device=x.device)
        t_emb = timestep_embedding(timestep.reshape(-1).to(x.device), self.model_channels)
        te_dtype = self.compute_dtype or self.time_embed[0].weight.dtype   # official: time_embed stays fp32
        emb = self.time_embed(t_emb.to(te_dtype)).to(dtype)
        if self.label_emb is not None:
            if y is None:
                raise ValueError("this encoder needs y (the size embedding)")
            emb = emb + self.label_emb(y.to(device=x.device, dtype=dtype))
        emb = emb.expand(b, -1) if emb.shape[0] == 1 else emb
        opts = {} if transformer_options is None else transformer_options
        ctx = context.to(dtype) if context is not None else None
        h = x.to(dtype)
        hints = []
        for block, zero in zip(self.input_blocks, self.zero_layers):
            h = block(h, emb, ctx, opts)
            if self.zero_kind == "conv":
                hints.append(zero(h).flatten(2).transpose(1, 2).contiguous())   # b c h w -> b (h w) c
            else:
                hints.append(zero(h.mean(dim=[2, 3])))
        hints.reverse()
        return hints


def _block_spec(sd: dict, p: str) -> dict:
    """Describe input block `p` (`prefix + input_blocks.i.`) from its keys."""
    if p + "0.op.weight" in sd:
        return {"kind": "down", "out": state_shape(sd, p + "0.op.weight")[0]}
    if p + "0.in_layers.2.weight" not in sd:
        raise ColorizerLoadError(f"{p}0: neither a ResBlock ({p}0.in_layers.2.weight) nor a conv Downsample "
                                 f"({p}0.op.weight) in the checkpoint")
    out = state_shape(sd, p + "0.in_layers.2.weight")[0]
    spec = {"kind": "res", "out": out,
            "scale_shift": state_shape(sd, p + "0.emb_layers.1.weight")[0] == 2 * out}
    if p + "1.proj_in.weight" in sd:
        shape = state_shape(sd, p + "1.proj_in.weight")
        inner = shape[0]
        if inner % HEAD_DIM:
            raise ColorizerLoadError(f"{p}1.proj_in.weight: {inner} channels is not a multiple of the "
                                     f"head size {HEAD_DIM} (shape {shape})")
        depth = count_indexed(sd, p + "1.transformer_blocks.")
        spec.update(heads=inner // HEAD_DIM, depth=depth, linear=len(shape) == 2,
                    context_dim=state_shape(sd, p + "1.transformer_blocks.0.attn2.to_k.weight")[1])
    return spec


def build_from_state_dict(sd: dict, prefix: str, *, dtype=None, device=None,
                          operations=None) -> ReferenceUNetEncoder:
    """Build the bg (`bg_encoder.`) or style (`style_encoder.`) encoder from the shapes under `prefix`, load
    it and pop its keys from `sd`. Zero-layer kind and sizes come from the weights (conv → bg, Linear →
    style; style D per layer as stored)."""
    time_embed_dim, model_channels = state_shape(sd, prefix + "time_embed.0.weight", "reference encoder")
    in_channels = state_shape(sd, prefix + "input_blocks.0.0.weight")[1]
    adm = None
    if prefix + "label_emb.0.0.weight" in sd:
        adm = state_shape(sd, prefix + "label_emb.0.0.weight")[1]
    n_blocks = count_indexed(sd, prefix + "input_blocks.")
    blocks = [_block_spec(sd, f"{prefix}input_blocks.{i}.") for i in range(1, n_blocks)]
    n_zero = count_indexed(sd, prefix + "zero_layers.")
    if n_zero != n_blocks:
        raise ColorizerLoadError(f"{prefix}zero_layers: {n_zero} layers for {n_blocks} input blocks")
    first = state_shape(sd, prefix + "zero_layers.0.weight")
    zero = "conv" if len(first) == 4 else "linear"
    zero_out = [state_shape(sd, f"{prefix}zero_layers.{i}.weight")[0] for i in range(n_zero)]
    module = ReferenceUNetEncoder(in_channels, model_channels, time_embed_dim, adm, blocks, zero, zero_out,
                                  dtype=dtype, device="meta", operations=operations)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)
