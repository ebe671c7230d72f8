"""v1.5 ("switch") context helpers: the threshold embedder and the ClusterTransformer (model-spec §1.2, §3.6).

* `thresh_embedder.` — official `ScalarEmbedder(embed_dim, out_dim)`: LDM `timestep_embedding(thr, embed_dim)`
  ([cos, sin], max_period 10000, computed in fp32) → Linear → SiLU → Linear, output `[N, 1, out_dim]`.
* `transformer.` — official `ClusterTransformer(dim, token_length, layers)`: learned queries `embedding`
  `[T, dim]` repeated over the batch; per layer `x = Attn(LN1(x), ctx) + x; x = MLP(LN2(x)) + x`
  (MLP = Linear, SiLU, Linear; attention heads of 64 channels, to_q/k/v without bias); no final norm.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from comfy.ldm.modules.attention import CrossAttention
from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

from ....errors import ColorizerLoadError
from .common import operations_or_default, count_indexed, load_prefixed, state_shape

THRESH_PREFIX = "thresh_embedder."
CLUSTER_PREFIX = "transformer."
HEAD_DIM = 64


class ScalarEmbedder(nn.Module):
    """`forward(thresholds [N] or a sequence of floats) -> [N, 1, out_dim]`."""

    def __init__(self, embed_dim: int, hidden_dim: int, out_dim: int, *, dtype=None, device=None,
                 operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        self.embed_dim = embed_dim
        self.embed_layer = nn.Sequential(
            ops.Linear(embed_dim, hidden_dim, dtype=dtype, device=device),
            nn.SiLU(),
            ops.Linear(hidden_dim, out_dim, dtype=dtype, device=device),
        )

    compute_dtype: torch.dtype | None = None   # official: fp32 (needs manual_cast ops if the weights are not)

    def forward(self, thresholds, device=None) -> torch.Tensor:
        """`device`: where to compute (the patcher's load device; the weights may stay elsewhere under ComfyUI's
        dynamic VRAM, which casts them per layer), default the weights' device."""
        w = self.embed_layer[0].weight
        if not torch.is_tensor(thresholds):
            thresholds = torch.tensor(list(thresholds) if isinstance(thresholds, Sequence) else [thresholds],
                                      dtype=torch.float32)
        t = thresholds.reshape(-1).to(device=device or w.device, dtype=torch.float32)
        emb = timestep_embedding(t, self.embed_dim).unsqueeze(1)   # [N, 1, embed_dim], fp32
        return self.embed_layer(emb.to(self.compute_dtype or w.dtype))


class ClusterTransformer(nn.Module):
    """`forward(tokens [B, N, context_dim]) -> [B, token_length, dim]`."""

    def __init__(self, dim: int, token_length: int, layers: int, heads: int, context_dim: int,
                 mlp_dim: int, *, dtype=None, device=None, operations=None):
        super().__init__()
        ops = operations_or_default(operations)
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleList([
                ops.LayerNorm(dim, dtype=dtype, device=device),
                ops.LayerNorm(dim, dtype=dtype, device=device),
                CrossAttention(query_dim=dim, context_dim=context_dim, heads=heads, dim_head=dim // heads,
                               dtype=dtype, device=device, operations=ops),
                nn.Sequential(
                    ops.Linear(dim, mlp_dim, dtype=dtype, device=device),
                    nn.SiLU(),
                    ops.Linear(mlp_dim, dim, dtype=dtype, device=device),
                ),
            ]))
        self.embedding = nn.Parameter(torch.empty(token_length, dim, dtype=dtype, device=device))

    compute_dtype: torch.dtype | None = None   # official: fp32 (needs manual_cast ops if the weights are not)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        dtype = self.compute_dtype or self.embedding.dtype
        ctx = tokens.to(dtype)
        x = self.embedding.to(device=ctx.device, dtype=dtype).unsqueeze(0).repeat(ctx.shape[0], 1, 1)
        for norm1, norm2, attn, ff in self.layers:
            x = attn(norm1(x), context=ctx) + x
            x = ff(norm2(x)) + x
        return x


def build_threshold_embedder(sd: dict, prefix: str = THRESH_PREFIX, *, dtype=None, device=None,
                             operations=None) -> ScalarEmbedder:
    """Build the ScalarEmbedder from the shapes under `prefix`, load it and pop its keys from `sd`."""
    hidden, embed_dim = state_shape(sd, prefix + "embed_layer.0.weight", "threshold embedder")
    out_dim = state_shape(sd, prefix + "embed_layer.2.weight", "threshold embedder")[0]
    module = ScalarEmbedder(embed_dim, hidden, out_dim, dtype=dtype, device="meta", operations=operations)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)


def build_cluster_transformer(sd: dict, prefix: str = CLUSTER_PREFIX, *, dtype=None, device=None,
                              operations=None) -> ClusterTransformer:
    """Build the ClusterTransformer from the shapes under `prefix`, load it and pop its keys from `sd`."""
    token_length, dim = state_shape(sd, prefix + "embedding", "ClusterTransformer queries")
    n_layers = count_indexed(sd, prefix + "layers.")
    if n_layers == 0:
        raise ColorizerLoadError(f"checkpoint has no key {prefix}layers.0.*")
    inner, _ = state_shape(sd, prefix + "layers.0.2.to_q.weight")
    context_dim = state_shape(sd, prefix + "layers.0.2.to_k.weight")[1]
    mlp_dim = state_shape(sd, prefix + "layers.0.3.0.weight")[0]
    if inner != dim or dim % HEAD_DIM:
        raise ColorizerLoadError(f"{prefix}layers.0.2.to_q.weight: expected [{dim}, {dim}] with {dim} a "
                                 f"multiple of {HEAD_DIM}, found {[inner, dim]}")
    module = ClusterTransformer(dim, token_length, n_layers, dim // HEAD_DIM, context_dim, mlp_dim,
                                dtype=dtype, device="meta", operations=operations)
    return load_prefixed(module, sd, prefix, dtype=dtype, device=device)

