"""The foreground/background LoRA pairs injected into attn2.to_q/to_k/to_v (v1.5: 16 blocks, v2: decoder)."""
from __future__ import annotations

import torch.nn as nn

from .common import operations_or_default, load_prefixed

PROJECTIONS = ("q", "k", "v")
BRANCHES = ("fg", "bg")


class LoraPair(nn.Module):
    """y += up(down(x)) for one projection and one branch (scale 1, no bias)."""

    def __init__(self, in_dim, rank, out_dim, dtype=None, device=None, operations=None):
        super().__init__()
        self.down = operations.Linear(in_dim, rank, bias=False, dtype=dtype, device=device)
        self.up = operations.Linear(rank, out_dim, bias=False, dtype=dtype, device=device)

    def forward(self, x):
        return self.up(self.down(x))


class AttentionLora(nn.Module):
    """The LoRA of one attn2 layer: pairs[f"{proj}_{branch}"]."""

    def __init__(self):
        super().__init__()
        self.pairs = nn.ModuleDict()

    def delta(self, proj: str, branch: str, x):
        pair = self.pairs[f"{proj}_{branch}"] if f"{proj}_{branch}" in self.pairs else None
        return None if pair is None else pair(x)


def extract_lora(sd: dict, unet_prefix: str, *, dtype=None, device=None, operations=None) -> nn.ModuleDict:
    """Pop every `…attn2.to_{q,k,v}.lora_{down,up}_{fg,bg}.weight` under `unet_prefix`.

    Returns a ModuleDict keyed by the attn2 path relative to the diffusion model with '.' replaced by '/'
    (e.g. 'output_blocks/3/1/transformer_blocks/0/attn2').
    """
    operations = operations_or_default(operations)
    found: dict[str, dict[str, dict]] = {}
    for key in [k for k in sd if k.startswith(unet_prefix) and ".lora_" in k]:
        rel = key[len(unet_prefix):]
        module_path, proj_name, lora_name, _ = rel.rsplit(".", 3)   # …attn2, to_q, lora_down_fg, weight
        kind, branch = lora_name[len("lora_"):].split("_")           # down|up, fg|bg
        proj = proj_name[len("to_"):]
        found.setdefault(module_path, {}).setdefault(f"{proj}_{branch}", {})[kind] = (key, sd.pop(key))
    layers = nn.ModuleDict()
    for module_path, pairs in sorted(found.items()):
        lora = AttentionLora()
        prefix = f"{unet_prefix}{module_path}."
        sub = {}
        for name, parts in sorted(pairs.items()):
            (_, down), (_, up) = parts["down"], parts["up"]
            lora.pairs[name] = LoraPair(int(down.shape[1]), int(down.shape[0]), int(up.shape[0]),
                                        dtype=dtype, device="meta", operations=operations)
            sub[f"{prefix}pairs.{name}.down.weight"] = down
            sub[f"{prefix}pairs.{name}.up.weight"] = up
        layers[module_path.replace(".", "/")] = load_prefixed(lora, sub, prefix, dtype=dtype, device=device)
    return layers
