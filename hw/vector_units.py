"""Which vector units an accelerator build carries (AccelConfig.vector) and the opcodes each
one serves."""
from __future__ import annotations

from golden.isa import Op

__all__ = ["vector_units_for"]


def vector_units_for(cfg) -> list:
    """``[(unit, {Op: mode}), ...]`` for the unit names in ``cfg.vector``.

    Raises
    ------
    ValueError for an unknown unit name.
    """
    units = []
    for name in getattr(cfg, "vector", ()):
        raise ValueError(f"unknown vector unit {name!r}")
    return units
