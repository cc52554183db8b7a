"""Which vector units an accelerator build carries (``AccelConfig.vector``) and the opcodes
each one serves, with the unit's mode for each opcode.

The ops a unit serves are the op registry's (:data:`ternac.golden.ops.REGISTRY`: every
vector op whose ``unit`` is the unit's name); this module adds only what the hardware
needs beyond the registry, in one table (:data:`UNIT_TABLE`): the Amaranth component of
each unit name and the mode it sets for each op. A new vector op is a registry entry and,
if it runs on a new unit, one row here.
"""
from __future__ import annotations

from ternac.golden.isa import Op
from ternac.golden.ops import REGISTRY
from ternac.golden.widths import SHIFTMAX_OUT_BITS
from .activation import ActMode, Activation
from .dot import K_MAX, Dot
from .eltwise import EltMode, Eltwise
from .mulpool import MulPool
from .norm import Norm, NormMode
from .shiftmax import Shiftmax

__all__ = ["UNIT_TABLE", "VECTOR_UNIT_NAMES", "unit_ops", "vector_units_for"]

#: ``{unit name: (factory(cfg, pool=None) -> component, {Op: mode})}``: the RTL of each
#: vector unit name of the registry and the ``mode`` port value for each op it serves (None:
#: the unit has no mode port). ``pool``: a shared hw.mulpool.MulPool to borrow multipliers
#: from (None: the unit's own).
UNIT_TABLE: dict = {
    "activation": (lambda cfg, pool=None: Activation(pool=pool),
                   {Op.SIGMOID: ActMode.SIGMOID, Op.SILU: ActMode.SILU, Op.GELU: ActMode.GELU}),
    # affine=False: the ISA's norms have bias 0 and eps 0 (the sequencer ties them off);
    # layernorm: only where the build has the op (AccelConfig.ops; the LM's has RMSNORM
    # alone).
    "norm": (lambda cfg, pool=None: Norm(max_len=cfg.max_vector, pool=pool, affine=False,
                                         layernorm=Op.LAYERNORM in _op_set(cfg),
                                         work_steps=getattr(cfg, "norm_steps", 1)),
             {Op.RMSNORM: NormMode.RMSNORM, Op.LAYERNORM: NormMode.LAYERNORM}),
    "eltwise": (lambda cfg, pool=None: Eltwise(pool=pool),
                {Op.ADD: EltMode.ADD, Op.MUL: EltMode.MUL}),
    "shiftmax": (lambda cfg, pool=None: Shiftmax(out_bits=SHIFTMAX_OUT_BITS,
                                                 max_len=cfg.max_vector, pool=pool),
                 {Op.SHIFTMAX: None}),
    "dot": (lambda cfg, pool=None: Dot(max_len=min(cfg.max_vector, K_MAX), pool=pool),
            {Op.DOT: None, Op.DOTT: None}),
}

def _op_set(cfg) -> frozenset:
    """The ops a build carries (``AccelConfig.op_set``; every op for a config without it)."""
    ops = getattr(cfg, "op_set", None)
    return frozenset(Op) if ops is None else frozenset(ops)


#: Unit names accepted in AccelConfig.vector.
VECTOR_UNIT_NAMES = tuple(UNIT_TABLE)


def unit_ops(name: str) -> list:
    """The opcodes the registry assigns to the vector unit ``name``, in registry order."""
    return [op for op, s in REGISTRY.items() if s.vector and s.unit == name]


def vector_units_for(cfg) -> list:
    """``[(unit, {Op: mode}), ...]`` for the unit names in ``cfg.vector``: each unit's
    component and, for every op the registry assigns to it, the mode from
    :data:`UNIT_TABLE`.

    Raises
    ------
    ValueError for a unit name with no RTL in :data:`UNIT_TABLE`, or a registry op whose
    unit has no mode for it here.
    """
    units = []
    # One multiplier pool for every unit (they run one at a time); the sequencer adds it
    # to the design, after the units, and lends it to the requantizer, EMBED and SAMPLE.
    pool = MulPool() if getattr(cfg, "vector", ()) else None
    for name in getattr(cfg, "vector", ()):
        if name not in UNIT_TABLE:
            raise ValueError(f"unknown vector unit {name!r}; choose from "
                             f"{', '.join(VECTOR_UNIT_NAMES)}")
        factory, modes = UNIT_TABLE[name]
        ops = unit_ops(name)
        missing = [op.name for op in ops if op not in modes]
        if missing:
            raise ValueError(f"the op registry runs {', '.join(missing)} on the {name!r} "
                             f"unit, but hw/vector_units.py has no mode for it")
        units.append((factory(cfg, pool), {op: modes[op] for op in ops}))
    return units
