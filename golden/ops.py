"""The op registry: one entry an accelerator op, read by every part that lists ops.

Pure Python (no torch, no Amaranth), so that hw/ may read it to size its decoder and pick
its units. Each :class:`OpSpec` holds, for one ISA opcode (:class:`ternac.golden.isa.Op`):

* ``golden``: the op's golden function, as a ``"module:function"`` reference resolved on
  first use (:meth:`OpSpec.fn`), so reading the registry does not import torch. The
  interpreter (:mod:`ternac.golden.interpreter`) and the graph evaluation
  (:mod:`ternac.golden.graph`) call this one function; the RTL unit's bench compares against
  it. Vector ops share the signature ``fn(a, b, p) -> y`` with int64 tensors ``a``, ``b`` of
  shape (..., in_len) and (..., b_len) (the scratch words at ``src`` and ``aux``; both
  (..., n) for elementwise ops) and ``p`` a :class:`VecParams`.
* ``unit``: the name of the RTL unit that executes it (``AccelConfig.vector`` names the
  vector units a build carries; ``"engine"`` and ``"sequencer"`` are always present).
  ``hw/vector_units.py`` registers the Amaranth class of each vector unit name and the mode
  it sets for each op.
* ``operands``: scratch vectors read (1: ``a`` only; 2: ``a`` and ``b``).
* ``passes``: times the sequencer streams the operands through the unit.
* ``sums``: the unit holds a sum over ``in_len`` elements (sized by
  ``AccelConfig.max_vector``, which the lowering checks ``in_len`` against).
* ``out_rows``: rows written, as a function of the instruction's ``n`` and ``k`` (``n``
  for elementwise ops; DOT writes ``n`` rows of a ``k``-long dot product each).
* ``in_len``: the length of ``a``, from ``n`` and ``k`` (``n``; DOT: ``k``).
* ``segments``: times ``a`` is streamed in one pass, from ``n`` and ``k`` (1; DOT: ``n``),
  against consecutive elements of ``b``, so ``b_len = segments * in_len`` (:meth:`OpSpec.b_len`;
  DOT: ``n * k``) and a pass streams ``b_len`` elements (:meth:`OpSpec.stream_len`);
  ``b_order`` is ``"row"`` (segment ``j`` reads ``b[j*in_len + i]``) or ``"col"`` (DOTT:
  ``b`` is an (in_len x segments) matrix read by column, ``b[i*segments + j]``). The
  sequencer reads ``a`` at ``src + (e mod in_len)`` and ``b`` at ``aux + e`` for element
  ``e`` of a pass, with ``last`` on the final element of each segment.
* ``out_bits``: bits of the result, from the flags (``OUT8``: 8, else 16; Shiftmax: 15
  unsigned).
* the RTL cycle formula: :meth:`OpSpec.cycle_fn`, the op's entry of
  :data:`ternac.golden.cycles.CYCLES`, read by the cycle model.
* ``epilogue``: the op may run as a MATVEC's epilogue (``Instr.epi``, golden/isa.py): an
  elementwise single-pass op whose ``a`` is the MATVEC's requantized output stream (the
  sequencer feeds the unit from the requantizer; the lowering fuses a MATVEC with its one
  consumer; the interpreter and the cycle model execute the pair as one).
* ``reuse``: the op may set ``Instr.reuse``: one pass (the last) with the statistics its
  unit holds from the previous instruction of the op on the same ``a`` (RMSNORM: the
  lowering sets it where i/f/g projections normalize one vector with different weights).
* ``summary``: one line for docs/architecture.md's op table (a test keeps the table equal to
  this registry).

A new vector op costs its golden function, its RTL unit and one :func:`register` call here.

Source: ../shared/DESIGN.md "One model graph"; hls4ml's layer registry is the model.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from .isa import Flag, Instr, Op

__all__ = ["OpSpec", "VecParams", "REGISTRY", "register", "spec", "vector_ops", "units_of", "op_table_markdown",
           "vec_params", "VECTOR_UNITS", "FIXED_UNITS", "epilogue_ops"]

#: Units every accelerator has (not named in AccelConfig.vector).
FIXED_UNITS = ("engine", "sequencer")


@dataclasses.dataclass(frozen=True)
class VecParams:
    """The constants of a vector instruction, as the ISA carries them.

    m, s : int, dyadic pair (m < 2**16, s < 64); m2, s2 : int, the second pair
    (``wbase[15:0]``, ``k[5:0]``); k : int, the full ``k`` field (DOT's row length);
    flags : int, :class:`ternac.golden.isa.Flag` bits (OUT8, NEG).
    """
    m: int = 0
    s: int = 0
    m2: int = 0
    s2: int = 0
    flags: int = 0
    k: int = 0


def vec_params(ins: Instr) -> VecParams:
    """The :class:`VecParams` of a vector instruction (``m2 = wbase[15:0]``, ``s2 = k[5:0]``)."""
    return VecParams(m=ins.m, s=ins.s, m2=ins.wbase & 0xFFFF, s2=ins.k & 0x3F,
                     flags=ins.flags, k=ins.k)


def _out_bits_flag(flags: int) -> int:
    return 8 if flags & Flag.OUT8 else 16


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One op of the registry (see the module docstring for every field)."""
    op: Op
    golden: str | None
    unit: str
    summary: str
    operands: int = 1
    passes: int = 1
    sums: bool = False
    vector: bool = True
    out_bits: Callable[[int], int] = _out_bits_flag
    out_rows: Callable[[int, int], int] = lambda n, k: n
    in_len: Callable[[int, int], int] = lambda n, k: n
    uses_m2: bool = True
    segments: Callable[[int, int], int] = lambda n, k: 1
    b_order: str = "row"
    epilogue: bool = False
    reuse: bool = False

    @property
    def name(self) -> str:
        return self.op.name

    def b_len(self, n, k):
        """Length of the ``b`` operand: ``segments(n, k) * in_len(n, k)`` (``n`` for
        elementwise ops; DOT: ``n * k``)."""
        return self.segments(n, k) * self.in_len(n, k)

    def stream_len(self, n, k):
        """Elements the sequencer streams through the unit a pass (= :meth:`b_len`)."""
        return self.b_len(n, k)

    def fn(self) -> Callable:
        """The golden function (imported on first call)."""
        mod, _, attr = self.golden.partition(":")
        return getattr(importlib.import_module(mod), attr)

    def cycle_fn(self) -> Callable:
        """The op's cycle formula, ``ternac.golden.cycles.CYCLES[op]`` (imported on first call)."""
        return importlib.import_module("ternac.golden.cycles").CYCLES[self.op]


#: Every op, keyed by opcode.
REGISTRY: dict[Op, OpSpec] = {}


def register(s: OpSpec) -> OpSpec:
    """Add one op to :data:`REGISTRY`.

    Raises
    ------
    ValueError if the opcode is already registered.
    """
    if s.op in REGISTRY:
        raise ValueError(f"op {s.op.name} is registered twice")
    REGISTRY[s.op] = s
    return s


def spec(op) -> OpSpec:
    """The :class:`OpSpec` of an opcode (an :class:`Op`, its value or its name).

    Raises
    ------
    KeyError naming the op if it is not registered.
    """
    try:
        key = Op[op] if isinstance(op, str) else Op(op)
        return REGISTRY[key]
    except (KeyError, ValueError):
        raise KeyError(f"op {op!r} is not in the op registry (ternac.golden.ops)") from None


def vector_ops() -> frozenset:
    """Opcodes executed by a vector unit through the generic vector path."""
    return frozenset(op for op, s in REGISTRY.items() if s.vector)


def epilogue_ops() -> frozenset:
    """Opcodes that may run as a MATVEC's epilogue (``OpSpec.epilogue``)."""
    return frozenset(op for op, s in REGISTRY.items() if s.epilogue)


def units_of(ops) -> tuple[str, ...]:
    """The vector unit names (sorted, unique) that a set of opcodes needs."""
    return tuple(sorted({spec(o).unit for o in ops if spec(o).vector}))


_V = "ternac.golden.vecops:"

# --- The datapath and the sequencer's own ops ----------------------------------------------
register(OpSpec(Op.MATVEC, "ternac.golden.numerics:matvec_op", "engine",
                "y = requantize(sum_i t[j,i] x[i]; m, s) (int8, WIDE int16, RELU) or RAW int32 acc", vector=False, out_bits=lambda f: 32 if f & Flag.RAW else
                (16 if f & Flag.WIDE else 8), in_len=lambda n, k: k))
register(OpSpec(Op.EMBED, "ternac.golden.vecops:embed", "sequencer",
                "y = sign-extended int8 row scratch[src] of a byte table in the weight memory (WIDE: int16 halfwords)", vector=False,
                out_bits=lambda f: 16 if f & Flag.WIDE else 8))
register(OpSpec(Op.ARGMAX, "ternac.golden.vecops:argmax", "sequencer",
                "result = smallest index of the maximum of out[src:src+n]", vector=False, out_bits=lambda f: 32, out_rows=lambda n, k: 0))
register(OpSpec(Op.SAMPLE, "ternac.golden.sampler:sample_index", "sequencer",
                "result = LFSR draw from Q15 probabilities; LFSR state in scratch[aux:aux+2]", vector=False, passes=2, out_bits=lambda f: 32,
                out_rows=lambda n, k: 0))
register(OpSpec(Op.HALT, None, "sequencer", "stop; raise done", vector=False, out_rows=lambda n, k: 0))
register(OpSpec(Op.REPEAT, None, "sequencer", "run the next k instructions n times, their "
                "address fields advanced by strides a selector picks (golden/isa.py)",
                vector=False, out_rows=lambda n, k: 0))

# --- Vector ops ------------------------------------------------------------------------------
register(OpSpec(Op.SIGMOID, _V + "sigmoid", "activation",
                "y = sat(requantize(sigmoid_q(a; m, s); m2, s2)) (NEG: sigmoid(-a))",
                epilogue=True))
register(OpSpec(Op.SILU, _V + "silu", "activation",
                "y = gated_q(a; m, s, m2, s2) = a * sigmoid(a S)", epilogue=True))
register(OpSpec(Op.GELU, _V + "silu", "activation",
                "y = gated_q(a; m, s, m2, s2), 1.702 folded into (m, s) (ShiftGELU)",
                epilogue=True))
register(OpSpec(Op.RMSNORM, _V + "rmsnorm", "norm",
                "y = int_rmsnorm(a, weight=b; m, s), exact isqrt (reuse: pass 1 only, the "
                "previous RMSNORM's statistics of the same a)",
                operands=2, passes=2, sums=True, uses_m2=False, reuse=True))
register(OpSpec(Op.LAYERNORM, _V + "layernorm", "norm",
                "y = int_layernorm(a, weight=b; m, s), exact isqrt",
                operands=2, passes=2, sums=True, uses_m2=False))
register(OpSpec(Op.ADD, _V + "add", "eltwise",
                "y = sat(rhu(a m, s) + rhu(b m2, s2))", operands=2, epilogue=True))
register(OpSpec(Op.MUL, _V + "mul", "eltwise",
                "y = sat(rhu(a b m, s)) (Hadamard product)", operands=2,
                uses_m2=False, epilogue=True))

register(OpSpec(Op.SHIFTMAX, _V + "shiftmax", "shiftmax",
                "y = shiftmax_q(a; m, s), Q15 probabilities",
                passes=3, sums=True, out_bits=lambda f: 15, uses_m2=False))

register(OpSpec(Op.DOT, _V + "dot", "dot",
                "y[j] = sat(rhu(sum_i a[i] b[j k + i] m, s)), i < k, j < n; b int8 (Q.K^T, P.V)",
                operands=2, sums=True, uses_m2=False, in_len=lambda n, k: k,
                segments=lambda n, k: n))

register(OpSpec(Op.DOTT, _V + "dott", "dot",
                "y[j] = sat(rhu(sum_i a[i] b[i n + j] m, s)), b a (k x n) matrix read by column (P.V)",
                operands=2, sums=True, uses_m2=False, in_len=lambda n, k: k,
                segments=lambda n, k: n, b_order="col"))

#: Vector unit names (the values AccelConfig.vector accepts), in registry order.
VECTOR_UNITS: tuple[str, ...] = tuple(dict.fromkeys(s.unit for s in REGISTRY.values() if s.vector))


def op_table_markdown() -> str:
    """docs/architecture.md's op table, made from this registry (a test keeps the two equal):
    one row an op with its unit, operands, passes, semantics and cycle formula."""
    rows = ["| op | unit | operands | passes | epilogue | semantics | cycles (ternac.golden.cycles) |",
            "|---|---|---|---|---|---|---|"]
    for op in sorted(REGISTRY, key=int):
        s = REGISTRY[op]
        try:
            cyc = f"`{s.cycle_fn().__name__}`"
        except (ImportError, KeyError):
            cyc = "-"
        epi = "yes" if s.epilogue else "-"
        rows.append(f"| {s.name} | {s.unit} | {s.operands} | {s.passes} | {epi} | {s.summary} "
                    f"| {cyc} |")
    return "\n".join(rows) + "\n"
