"""Which vector units an accelerator build carries (``AccelConfig.vector``) and the opcodes
each one serves, with the unit's mode for each opcode."""
from __future__ import annotations

from ternac.golden.isa import Op

__all__ = ["VECTOR_UNIT_NAMES", "vector_units_for"]

#: Unit names accepted in AccelConfig.vector.
VECTOR_UNIT_NAMES = ("activation", "norm", "eltwise", "shiftmax")


def vector_units_for(cfg) -> list:
    """``[(unit, {Op: mode}), ...]`` for the unit names in ``cfg.vector``.

    Raises
    ------
    ValueError for an unknown unit name.
    """
    units = []
    for name in getattr(cfg, "vector", ()):
        if name == "activation":
            from .activation import Activation, ActMode
            units.append((Activation(), {Op.SIGMOID: ActMode.SIGMOID, Op.SILU: ActMode.SILU,
                                         Op.GELU: ActMode.GELU}))
        elif name == "norm":
            from .norm import Norm, NormMode
            units.append((Norm(max_len=cfg.max_vector), {Op.RMSNORM: NormMode.RMSNORM,
                                                          Op.LAYERNORM: NormMode.LAYERNORM}))
        elif name == "eltwise":
            from .eltwise import EltMode, Eltwise
            units.append((Eltwise(), {Op.ADD: EltMode.ADD, Op.MUL: EltMode.MUL}))
        elif name == "shiftmax":
            from ternac.golden.widths import SHIFTMAX_OUT_BITS
            from .shiftmax import Shiftmax
            units.append((Shiftmax(out_bits=SHIFTMAX_OUT_BITS, max_len=cfg.max_vector),
                          {Op.SHIFTMAX: None}))
        else:
            raise ValueError(f"unknown vector unit {name!r}; choose from "
                             f"{', '.join(VECTOR_UNIT_NAMES)}")
    return units
