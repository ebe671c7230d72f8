"""Looking a family's spec up in a product's table (colorize_diffusion/families.py, colorflow/families.py)."""
from __future__ import annotations

from ...errors import ColorizerLoadError


def spec_from(table: dict, family, product: str):
    """`family` as a spec of `table`: a spec as it is, or a family name (tests, workflow builders) looked up."""
    if not isinstance(family, str):
        return family
    spec = table.get(family)
    if spec is None:
        raise ColorizerLoadError(f"unknown {product} family {family!r}; known: {', '.join(table)}")
    return spec
