"""Attention maps of one UNet evaluation, as the XL app's "Attention Map Visualization" shows them.

For a query token (a cell of a 16-pixel grid on the generated picture) and chosen transformer blocks: the
cross-attention over the reference tokens (shown on the reference picture: the tokens are laid out on their square
grid, 16×16 for the SD2.1 families' 256 local tokens, 14×14 for XL's 196) or the self-attention over the picture's
own tokens at that block's resolution (shown on the picture), softmax(q·kᵀ/√d) per head, aggregated over the heads
by mean or max. The maps are read from the patched model's own attention modules (forward pre-hooks: their inputs
give q and k through their own projections), so they are those of the colorized UNet, LoRA and split included
(where the split sends a query to the background half, its cross-attention map is over the background tokens).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import ColorizerInputError
from .guidance import guider
from .step_data import STEP_KEY
from .unet_patches import transformer_blocks

CELL = 16                     # the app's query grid: one cell per 16 pixels
AGGREGATIONS = ("mean", "max")
KINDS = ("cross", "self")


@dataclass(frozen=True)
class Query:
    row: int                  # cell of the 16-pixel grid on the generated picture
    col: int

    def token(self, size: tuple, grid: tuple) -> int:
        """Index of the token at a block of grid (h, w) for a picture of size (H, W) pixels."""
        height, width = size
        y = min(int(self.row * CELL / height * grid[0]), grid[0] - 1)
        x = min(int(self.col * CELL / width * grid[1]), grid[1] - 1)
        return y * grid[1] + x


def parse_blocks(text: str, count: int) -> list:
    """'all', or block indices and ranges ('0,4-6,69') in the official depth-first numbering."""
    text = (text or "").strip().lower()
    if text in ("", "all"):
        return list(range(count))
    out = []
    for part in text.replace(" ", "").split(","):
        try:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ColorizerInputError(f"blocks: {part!r} is not an index or a range (e.g. 0,4-6)") from None
    bad = [b for b in out if not 0 <= b < count]
    if bad:
        raise ColorizerInputError(f"blocks {bad} do not exist: this UNet has transformer blocks 0-{count - 1}")
    return sorted(set(out))


def attention_probabilities(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q·kᵀ/√d) per head: q [B, N, C], k [B, M, C] → [B, heads, N, M] (float32)."""
    b, n, c = q.shape
    d = c // heads
    qh = q.float().reshape(b, n, heads, d).transpose(1, 2)
    kh = k.float().reshape(b, k.shape[1], heads, d).transpose(1, 2)
    return torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1)


def aggregate(probs: torch.Tensor, how: str) -> torch.Tensor:
    if how not in AGGREGATIONS:
        raise ColorizerInputError(f"head aggregation must be one of {AGGREGATIONS}, got {how!r}")
    return probs.mean(0) if how == "mean" else probs.amax(0)


class MapRecorder:
    """Forward pre-hooks on the attention modules of chosen blocks; keeps, per block, the aggregated map of the
    query token in the first row of the call (the conditional pass)."""

    def __init__(self, kind: str, query: Query, size: tuple, how: str):
        if kind not in KINDS:
            raise ColorizerInputError(f"attention type must be one of {KINDS}, got {kind!r}")
        self.kind, self.query, self.size, self.how = kind, query, size, how
        self.maps: dict[int, tuple] = {}          # block -> (map [M], key grid (h, w) or None, query grid)
        self._handles = []

    def attach(self, modules: dict) -> None:
        """`modules`: block index -> the attention module (attn2 for cross, attn1 for self)."""
        for index, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(index, module), with_kwargs=True))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, index, module):
        def hook(mod, args, kwargs):
            x = args[0] if args else kwargs["x"]
            context = kwargs.get("context", args[1] if len(args) > 1 else None)
            options = kwargs.get("transformer_options") or {}
            hw = tuple(options.get("activations_shape", (0, 0, 0, 0))[-2:])
            if not hw or hw[0] * hw[1] != x.shape[1]:
                side = int(round(math.sqrt(x.shape[1])))
                hw = (side, x.shape[1] // side)
            token = self.query.token(self.size, hw)
            with torch.no_grad():
                q = mod.to_q(x[:1, token:token + 1])
                keys = x[:1] if self.kind == "self" or context is None else context[:1]
                if self.kind == "cross":
                    keys = _half_of(mod, keys, token, hw, options)
                k = mod.to_k(keys)
                probs = attention_probabilities(q, k, int(getattr(mod, "heads")))[0, :, 0]     # [heads, M]
            grid = hw if self.kind == "self" else _square(probs.shape[-1])
            self.maps[index] = (aggregate(probs, self.how).cpu(), grid, hw)
            return None
        return hook


def _half_of(module, context, token, hw, options):
    """The context a query attends to: all of it, or with the split attention the half its mask value picks."""

    step = options.get(STEP_KEY)
    if step is None or not step.settings.split or step.mask is None or not hasattr(module, "mask_scale"):
        return context
    fg, bg = context.chunk(2, dim=1)
    m = float(step.attention_mask(module.mask_scale, hw)[0, token, 0])
    return fg if m > step.settings.threshold else bg


def _square(n: int):
    side = int(math.isqrt(n))
    return (side, side) if side * side == n else None


def heatmap_overlay(picture: torch.Tensor, values: torch.Tensor, grid, box=None, alpha: float = 0.6) -> torch.Tensor:
    """`values` [M] laid out on `grid` (h, w) (square tokens; a non-square count is shown as one row), normalised,
    jet-coloured and blended over `picture` [H, W, 3] in [0, 1]; an optional red box (y0, x0, y1, x1) in pixels."""
    import cv2
    import numpy as np

    h, w = grid if grid is not None else (1, values.numel())
    v = values[: h * w].reshape(h, w).numpy().astype(np.float64)
    v = (v - v.min()) / (v.max() - v.min() + 1e-12)
    height, width = picture.shape[:2]
    v = cv2.resize((v * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    heat = cv2.cvtColor(cv2.applyColorMap(v, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    out = (1 - alpha) * picture.float().cpu().numpy() + alpha * heat
    if box is not None:
        y0, x0, y1, x1 = box
        out = np.ascontiguousarray(out)
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), (1.0, 0.0, 0.0), max(1, min(height, width) // 128))
    return torch.from_numpy(np.clip(out, 0, 1).astype(np.float32))


def evaluate_once(model, positive, negative, latent: torch.Tensor, progress: float, seed: int) -> None:
    """One UNet evaluation of the conditional pass on `latent` re-noised to the step at `progress` (0 = the first
    step, 1 = the last) with the noise of `seed`."""
    import comfy.samplers

    sampling = model.get_model_object("model_sampling")
    t = torch.tensor([(1.0 - progress) * 999.0])
    sigma = float(sampling.sigma(t).reshape(-1)[0])
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(int(seed)))

    def one_call(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        return model_k(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))

    g = guider(model, positive, negative, None, 1.0, 1.0)
    g.sample(noise, latent, comfy.samplers.KSAMPLER(one_call), torch.tensor([sigma, 0.0]), seed=int(seed),
             disable_pbar=True)


def attention_maps(model, positive, negative, size: tuple, latent: torch.Tensor, base: torch.Tensor, attention: str,
                   query: Query, blocks: str, heads: str, step: float, seed: int) -> torch.Tensor:
    """The Attention Map node's pictures: one evaluation of `latent` [1, C, h, w] (generation `size` (H, W))
    re-noised to `step`, recording the cross- (`attention` "cross", shown on the reference) or self-attention
    ("self", shown on the picture, the query cell boxed) of `query` in each block of `blocks`; `base` [H', W', 3]
    is the picture shown. Returns [n_blocks, H', W', 3]."""
    height, width = size
    if query.row * CELL >= height or query.col * CELL >= width:
        raise ColorizerInputError(f"query cell ({query.row}, {query.col}) is outside the {width}x{height} picture "
                                  f"(at most row {(height - 1) // CELL}, column {(width - 1) // CELL})")
    found = transformer_blocks(model.get_model_object("diffusion_model"))
    chosen = parse_blocks(blocks, len(found))
    which = "attn2" if attention == "cross" else "attn1"
    modules = {i: model.get_model_object(f"diffusion_model.{found[i][1]}.{which}") for i in chosen}
    recorder = MapRecorder(attention, query, (height, width), heads)
    recorder.attach(modules)
    try:
        evaluate_once(model, positive, negative, latent, step, seed)
    finally:
        recorder.detach()
    box = None
    if attention == "self":
        sy, sx = base.shape[0] / height, base.shape[1] / width
        box = (query.row * CELL * sy, query.col * CELL * sx, (query.row + 1) * CELL * sy, (query.col + 1) * CELL * sx)
    out = []
    for index in chosen:
        values, grid, _ = recorder.maps[index]
        out.append(heatmap_overlay(base, values, grid, box))
    return torch.stack(out)
