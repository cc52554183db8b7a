"""The ternac instruction set: one definition shared by the compiler, the interpreter and the RTL.

Pure Python (no torch, no Amaranth), so ``hw/`` may import it to size its decoder.

An instruction is a 128-bit word; its fields, least significant first, are listed in
:data:`FIELDS`. The sequencer fetches one word a instruction from the program memory.

Memory spaces seen by a program
-------------------------------
* ``scratch``: the activation scratchpad, signed 16-bit words (int8 activations are stored
  sign-extended; int16 residual/state values use the full width).
* ``out``: the output buffer, signed 32-bit words (raw accumulators such as logits).
* ``weights``: the packed weight memory, words of ``2 * lanes`` bits, I2 trits
  (see :mod:`golden.packing`), laid out lane-tiled by the compiler.
* ``result``: a single 32-bit register written by ARGMAX and read by the host.

Operations
----------
``MATVEC``  out[j] = sum_i t[j, i] * scratch[src + i] for j < n, i < k, with trits from the
            weight memory at ``wbase`` (tile ``jt`` of ``lanes`` rows starts at word
            ``wbase + jt * k``; word ``wbase + jt*k + i`` holds trits t[jt*lanes + l, i] for
            lanes l). Then, unless ``RAW``, ``scratch[dst + j] = requantize(acc, m, s)``
            (and ReLU if ``RELU``); with ``RAW``, ``out[dst + j] = acc`` (no rounding).
``ARGMAX``  result = the smallest index j < n maximising out[src + j].
``HALT``    stop; the sequencer raises ``done``.

With ``WIDE``, MATVEC requantizes to int16 [-32767, 32767] (residual-stream and
pre-activation outputs) instead of int8 [-127, 127].

An *epilogue* (``epi = 1`` on a requantized MATVEC): the MATVEC's rows are not written;
they stream, row ``j`` as the ``a`` operand of element ``j``, straight into the next
instruction, which must be an elementwise single-pass vector op of the same ``n`` (the
registry's ``epilogue`` ops: SIGMOID, SILU, GELU, ADD, MUL): ``scratch[dst' + j] =
op(y[j], scratch[aux' + j])`` with the second instruction's fields (its ``src`` is not
read; the lowering sets it to the MATVEC's ``src``). The pair executes as one operation
(the RTL runs the vector unit on the requantizer's output stream while the next tile
accumulates) and the program continues after the second instruction. The result must
not overlap the MATVEC's input, and ``b`` is either disjoint from the result or the same
words (in place).
A *tee* (``tee = 1`` on an ADD or MUL, standalone or a MATVEC's epilogue): the result
``y`` is written as usual and also streams into the Norm unit as pass 0 (the statistics
``N``, ``S2``) of an RMSNORM, which the unit then completes (the between-pass work) while
the program goes on. The next Norm-unit instruction must be an RMSNORM with ``reuse`` of
those same ``n`` values (``scratch[dst : dst + n]`` unchanged) and flags ``OUT8`` if
``tee8`` else none; it runs pass 1 alone (its first beat waits for the unit's work). No
other tee, Norm-unit instruction or HALT may come between the two.
A *prologue* (``pro = 1`` on a ``reuse`` RMSNORM with ``OUT8``): the next instruction is a
MATVEC with ``src`` = the RMSNORM's ``dst``, ``k`` = its ``n`` (at least :data:`PRO_MIN_K`)
and ``n >= 1``; the pair (with the MATVEC's epilogue, a triple) executes as one operation:
the RTL feeds the Norm unit's results straight into the lanes as tile 0's activations
while it writes them to ``dst`` as usual, where tiles 1.. read them. The results are those
of the two instructions run one after the other.

A *pair* (``pair = 1`` on a SIGMOID without NEG that is the epilogue of a MATVEC with
``k >= 2 * lanes + 4`` or of one tile, ``n <= lanes``): the epilogue also writes ``scratch[aux + j] = op(-y[j])`` (the same
SIGMOID with NEG) beside ``scratch[dst + j] = op(y[j])``, as the SIGMOID and its NEG twin
would one after the other on the written rows; ``[aux, aux + n)`` is disjoint from
``[dst, dst + n)`` and from the MATVEC's input. (The RTL's requantizer holds each row two
cycles, for the row and its negation, so a tile's rows drain in about ``2L`` cycles, which
a tile of ``k >= 2L + 4`` cycles hides; the one tile of ``n <= L`` rows needs no hiding.)
A *weight-memory operand* (``wb = 1`` on a MUL that is not a MATVEC's epilogue, on
words of an even number of bytes): ``b[j]`` is the signed little-endian 16-bit halfword
``j mod H`` of weight word ``wbase + j // H`` (``H`` = the word's bits / 16; the layout of
an ``EMBED WIDE`` row), read as the MUL streams, instead of ``scratch[aux + j]``; ``aux``
must be 0 (not read). A constant multiplier vector (an RMSNorm's weight applied by a MUL)
then needs no scratch words and no EMBED to stage it.
A *chain* (``chain = 1`` on a SIGMOID, a SILU or a GELU, standalone or a MATVEC's
epilogue; an accelerator built with ``AccelConfig.op_chain``): its results are
not written; result ``j`` streams as the ``a`` operand of element ``j`` into the next
instruction, which must be an ADD or a MUL of the same ``n`` with no ``wb`` and no
``chain`` (its ``src`` is not read; the lowering sets it to the first one's ``dst``):
``scratch[dst' + j] = op'(y[j], scratch[aux' + j])`` with the second instruction's fields
(a ``tee`` included). The two (with the MATVEC, three) execute as one operation: the RTL
runs the Eltwise unit on the Activation unit's output stream. The result must not overlap
the first instruction's input (a standalone one's ``a`` at ``src``, or the MATVEC's) unless
it is the same words, and ``b`` is either disjoint from the result or the same words.
A *chain of three*: the epilogue of a MATVEC of one tile (``n <= lanes``) may chain into
an ADD or MUL that sets ``chain`` too (the middle, whose result is not written either),
which streams into a third ADD or MUL; the third's ``b`` is read through the scratchpad's
port a (AccelConfig.scratch_a_depth's window), and no op of the three tees. The third's
result must not overlap the MATVEC's input, the middle's ``b`` (unless the same words) or
a pair's twins. (:func:`chain_three_refusal`.)
A pair may chain when its MATVEC has one tile (``n <= lanes``): the twins
``scratch[aux + j] = op(-y[j])`` are written as usual and only ``op(y[j])`` streams on;
the second op's result and ``b`` must then be disjoint from the twins.
(:func:`chain_refusal` states the rule on the two instructions.)
*Chaining MATVECs* (no field: an accelerator built with ``AccelConfig.mv_chain``): a MATVEC whose
word follows a MATVEC (after its epilogue, if any) starts reading its input while the first
one's last rows are still written, so it must not read them (the first one's ``dst`` rows,
its epilogue's ``dst`` and a pair's ``aux`` rows); the results are the program order's.
``ternac.lower.check_program`` refuses a program breaking that rule on such a build (and
the cases the cycle model does not cover: golden/cycles.py ``chained_matvec_cycles``).
A norm's weight (RMSNORM, LAYERNORM: ``b = scratch[aux + j]``) must be disjoint from its
result or the same words: the RTL reads it when the unit's ``w * y`` uses it, several
cycles after the element (``ternac.lower.check_program`` refuses a partial overlap).
MATVEC inputs must be int8 activations ([-127, 127]); the RTL feeds the low 8 bits of a
scratch word to the engine. A MATVEC's requantized output must not overlap its own input.

Vector operations (the integer units of golden/intops.py, at the accelerator's integer
parameters; exact semantics in :mod:`golden.vecops`): for ``j < n``, ``a = scratch[src + j]``,
``b = scratch[aux + j]`` (16-bit signed), ``scratch[dst + j] = y`` (16-bit), except DOT
(below: ``a`` of length ``k``, ``b`` of ``n * k``; the lengths are the registry's rules,
``ternac.golden.ops``). The second dyadic pair ``(m2, s2)`` is carried in ``wbase[15:0]``
and ``k[5:0]``. Flags: ``OUT8``
saturates the result to int8 [-127, 127] instead of int16 [-32767, 32767]; ``NEG`` negates
``a`` first (``sigmoid(-x) = 1 - sigmoid(x)``).

``SIGMOID``   y = sat(requantize(sigmoid_q(a, m, s), m2, s2))          (elementwise)
``SILU``      y = gated_q(a, m, s, m2, s2)  (x * sigmoid(x S); GELU: same, 1.702 in (m, s))
``GELU``      as SILU (the gain (m, s) carries 1.702)
``RMSNORM``   y = int_rmsnorm(a, weight=b, bias=0, m, s, eps=0)         (2 passes; with
              ``reuse``: 1 pass, the Norm unit applying the statistics it holds from the
              previous RMSNORM, whose ``a`` must be the same values, ``n`` and flags, or
              from a ``tee``, below)
``LAYERNORM`` y = int_layernorm(a, weight=b, bias=0, m, s, eps=0)       (2 passes)
``SHIFTMAX``  y = shiftmax_q(a, m, s, out_bits=15)                      (3 passes)
``ADD``       y = sat(rhu(a * m, s) + rhu(b * m2, s2))
``MUL``       y = sat(rhu(a * b * m, s))
``SAMPLE``    result = a token drawn from the probabilities scratch[src:src+n] (Q15, from
              SHIFTMAX) with the 32-bit LFSR state held in scratch[aux] (low 16 bits) and
              scratch[aux + 1] (high), which is stepped once and written back
              (golden/sampler.py). Two passes over the vector.
``EMBED``     y = sign-extended byte j of the embedding row ``scratch[src]`` (a token id):
              the row starts at weight word ``wbase + scratch[src] * k``; a word holds
              ``2*lanes/8`` bytes, byte i at bits [8i+7:8i]. With ``WIDE`` (words of an
              even number of bytes): y = the signed little-endian 16-bit halfword j
              (bytes 2j, 2j + 1), one a cycle: an int16 vector (a staged constant) in
              one instruction.
``DOT``       n rows of a k-long dot product, activation by activation: for ``j < n``,
              ``scratch[dst + j] = sat(rhu(sum_{i<k} a[i] * b[j*k + i] * m, s))`` with
              ``a[i] = scratch[src + i]`` (16-bit signed: int8 activations or Q15
              probabilities; negated first with ``NEG``) and ``b[j*k + i] = scratch[aux +
              j*k + i]``, which must hold an int8 value [-127, 127] (as a MATVEC input; the
              RTL multiplies its low 8 bits). ``k`` is the row length (not ``s2``: DOT has
              one dyadic pair), exact in ``golden.widths.dot_acc_width(k)`` bits before
              the requantization. With ``n`` tokens and ``b`` the K rows this is
              ``Q.K^T`` of one query; with ``a`` the probabilities and ``b`` the rows of
              V^T it is ``P.V``. The result must not overlap ``a`` or ``b``.
``DOTT``      DOT against the transpose of ``b``: ``b`` is a (k x n) matrix, row-major, read
              by column: ``scratch[dst + j] = sat(rhu(sum_{i<k} a[i] * b[i*n + j] * m, s))``.
              With ``a`` the Q15 probabilities over k tokens and ``b`` the token-major V of
              a head (k rows of n = d_head), this is ``P.V`` without a transposed copy.

Loops: REPEAT
-------------
``REPEAT``    ``n`` = count (iterations, >= 1), ``k`` = body length (instructions, >= 1),
              ``src``, ``dst``, ``aux`` = the stride table: strides 1, 2 and 3, each a
              12-bit two's complement integer (a field value ``v`` is the stride ``v`` if
              ``v < 2048``, else ``v - 4096``: 4095 is -1). Every other field is 0.
              The next ``k`` instructions (the *body*) execute ``n`` times; then the program
              continues after the body. In iteration ``r`` (from 0) a body instruction
              executes with each address field ``f`` in (``src``, ``dst``, ``aux``,
              ``wbase``) replaced by ``(f + r * stride[e]) mod 2^w`` (``w`` the field's width:
              12 or 20 bits; ``stride[0] = 0``), where ``e`` is that field's 2-bit selector
              in the body instruction's ``rsel`` (src bits [1:0], dst [3:2], aux [5:4], wbase
              [7:6]; :data:`RSEL_FIELDS`). Every other field is used as written. The
              REPEAT itself executes once; it is the program's only control flow.
              Refused (golden.interpreter raises, the lowering never emits; the RTL's
              behaviour is undefined): a count or body length of 0; a body that runs past the
              program's end or holds a REPEAT (no nesting) or a HALT; a body whose last
              instruction is a MATVEC with ``epi`` (the pair must be inside one body); a
              non-zero ``rsel`` outside a body or a non-zero field of a REPEAT other than
              those named; a body whose last instruction sets ``chain``. Execution order is
              the *unrolled* program
              (:func:`expand_program`): every rule above between consecutive instructions
              (an epilogue, ``reuse``, ``tee``) applies to that order, and the cycles of a
              REPEAT program are those of its unrolled stream plus 2 a REPEAT
              (golden/cycles.py). The lowering's post-pass
              (ternac.lower.compress_program) finds such runs in the unrolled program.
"""
from __future__ import annotations

import dataclasses
import enum

__all__ = ["INSTR_BITS", "FIELDS", "Op", "Flag", "Instr", "encode", "decode",
           "encode_program", "decode_program", "RSEL_FIELDS", "REPEAT_STRIDES", "stride_value",
           "stride_field", "rsel_of", "expand_program", "repeat_word", "PRO_MIN_K",
           "prologue_pair", "chain_refusal", "chain_three_refusal", "chain_three_overlap",
           "CHAIN_FIRST",
           "CHAIN_SECOND"]

INSTR_BITS = 128

#: The smallest fan-in of a MATVEC behind a prologue RMSNORM (``pro``): tile 1 reads the
#: Norm unit's results back from scratch right after the unit has taken its last input,
#: while up to its pipeline depth (14 stages) of results are still in flight.
PRO_MIN_K = 32

#: (name, width in bits), least significant first.
FIELDS: tuple[tuple[str, int], ...] = (
    ("op", 5),
    ("flags", 5),
    ("src", 12),     # scratch/out word address of the operand vector
    ("dst", 12),     # scratch/out word address of the result vector
    ("aux", 12),     # second operand address / table index (elementwise and LM ops)
    ("n", 12),       # output length (rows of a matvec, length of a vector op)
    ("k", 12),       # fan-in of a matvec
    ("wbase", 20),   # weight memory word address
    ("m", 16),       # dyadic multiplier (golden.numerics.M_BITS)
    ("s", 6),        # dyadic shift (golden.numerics.S_BITS)
    ("epi", 1),      # MATVEC: the next instruction is its epilogue (see the module docstring)
    ("reuse", 1),    # RMSNORM: reuse the statistics of the previous RMSNORM (same a)
    ("tee", 1),      # ADD/MUL: the result also streams into the Norm unit's pass 0
    ("tee8", 1),     # with tee: the RMSNORM that reuses those statistics has OUT8
    ("rsel", 8),     # REPEAT body: stride selectors, src [1:0] dst [3:2] aux [5:4] wbase [7:6]
    ("pro", 1),      # RMSNORM: the next instruction is a MATVEC taking its result (prologue)
    ("wb", 1),       # MUL: the b operand is an int16 row of the weight memory at wbase
    ("pair", 1),     # SIGMOID epilogue: also writes the sigmoid of the negated rows at aux
    ("chain", 1),    # SIGMOID/SILU/GELU: the results stream into the next instruction, an ADD/MUL
)
assert sum(w for _, w in FIELDS) == INSTR_BITS


class Op(enum.IntEnum):
    """Opcodes (5 bits)."""
    HALT = 0
    MATVEC = 1
    ARGMAX = 2
    SIGMOID = 3
    SILU = 4
    GELU = 5
    RMSNORM = 6
    LAYERNORM = 7
    SHIFTMAX = 8
    ADD = 9
    MUL = 10
    EMBED = 11
    SAMPLE = 12
    DOT = 13
    DOTT = 14
    REPEAT = 15


class Flag(enum.IntFlag):
    """Instruction flags (5 bits)."""
    NONE = 0
    RELU = 1   # MATVEC: ReLU after requantization
    RAW = 2    # MATVEC: write the raw accumulators to ``out`` instead of requantizing
    OUT8 = 4   # vector ops: saturate to int8 [-127, 127] instead of int16 [-32767, 32767]
    NEG = 8    # vector ops: negate the ``a`` operand first
    WIDE = 16  # MATVEC: requantize to int16 [-32767, 32767] instead of int8 [-127, 127]


@dataclasses.dataclass(frozen=True)
class Instr:
    """One instruction; field ranges are checked by :func:`encode`."""
    op: Op
    flags: int = 0
    src: int = 0
    dst: int = 0
    aux: int = 0
    n: int = 0
    k: int = 0
    wbase: int = 0
    m: int = 0
    s: int = 0
    epi: int = 0
    reuse: int = 0
    tee: int = 0
    tee8: int = 0
    rsel: int = 0
    pro: int = 0
    wb: int = 0
    pair: int = 0
    chain: int = 0

    def __str__(self) -> str:
        parts = [f"{f}={getattr(self, f)}" for f, _ in FIELDS[1:] if getattr(self, f)]
        return f"{Op(self.op).name:<7} " + " ".join(parts)


def prologue_pair(ins: Instr, nxt: Instr | None) -> bool:
    """Whether ``ins`` and the instruction after it (``nxt``, None past the end) may run as a
    prologue (the ``pro`` field, module docstring): ``ins`` a ``reuse`` RMSNORM with flags
    OUT8 alone, ``nxt`` a MATVEC reading its result (``src`` = its ``dst``) with ``k`` = its
    ``n`` >= :data:`PRO_MIN_K` and ``n`` >= 1. The one statement of the rule: the lowering
    sets ``pro`` where it holds, the interpreter and ``check_program`` refuse ``pro`` where it
    does not."""
    return (ins.op == Op.RMSNORM and bool(ins.reuse) and ins.flags == int(Flag.OUT8)
            and nxt is not None and nxt.op == Op.MATVEC and nxt.src == ins.dst
            and nxt.k == ins.n and nxt.n >= 1 and nxt.k >= PRO_MIN_K)


#: The operations that may set ``chain`` (their results stream into the next instruction),
#: and the operations that may take such a stream (module docstring).
CHAIN_FIRST = frozenset({Op.SIGMOID, Op.SILU, Op.GELU})
CHAIN_SECOND = frozenset({Op.ADD, Op.MUL})


def chain_refusal(ins: Instr, nxt: Instr | None) -> str | None:
    """Why ``ins`` (which sets ``chain``) and the instruction after it (``nxt``, None past
    the end) may not run as a chain (module docstring), one sentence; None when they may.
    ``ins`` is a chain's first op (a SIGMOID, SILU or GELU) or the middle of a chain of
    three (an ADD or MUL; where a middle may stand is :func:`chain_three_refusal`'s rule).
    The one statement of the rule on the two words (the interpreter raises it,
    ``ternac.lower.check_program`` refuses it; the address rules are the interpreter's)."""
    middle = ins.op in CHAIN_SECOND
    if middle:
        if ins.tee or ins.tee8 or ins.wb or ins.epi or ins.pair or ins.pro or ins.reuse:
            return ("sets chain as the middle of a chain of three, which an ADD or MUL with "
                    "tee, tee8, wb, epi, pair, pro or reuse may not")
    elif ins.op not in CHAIN_FIRST or ins.tee or ins.tee8 or ins.wb:
        return ("sets chain, which only a SIGMOID, a SILU, a GELU or (the middle of a chain "
                "of three) an ADD or MUL may")
    if nxt is None or nxt.op not in CHAIN_SECOND or nxt.n != ins.n:
        return (f"sets chain, but the next instruction ({nxt}) is not an ADD or MUL of "
                f"n={ins.n}")
    if nxt.wb or nxt.epi or nxt.pair or nxt.pro or nxt.reuse or \
            (nxt.tee8 and not nxt.tee):
        return (f"sets chain, but the next instruction ({nxt}) sets wb, epi, pair, pro, "
                f"reuse or tee8 without tee, which a chained ADD or MUL may not")
    if (middle or nxt.chain) and (nxt.tee or nxt.tee8):
        return (f"sets chain, but the next instruction ({nxt}) tees, which no op of a chain "
                f"of three may")
    if middle and nxt.chain:
        return (f"sets chain as the middle of a chain of three, but the next instruction "
                f"({nxt}) sets chain too: a chain has at most three ops")
    return None


def chain_three_refusal(first: Instr | None, before: Instr | None, lanes: int) -> str | None:
    """Why an ADD or MUL that sets ``chain`` (the middle of a chain of three; ``first``
    the instruction before it, ``before`` the one before that, None where there is none)
    may not run there, one sentence; None when it may: ``first`` a SIGMOID, SILU or GELU
    with ``chain``, the epilogue of ``before``, a MATVEC of one tile (``n <= lanes``; the
    third op's ``b`` is read through the scratchpad's port a, which the MATVEC has finished
    reading then). The interpreter raises it, ``ternac.lower.check_program`` refuses it."""
    if (first is None or first.op not in CHAIN_FIRST or not first.chain or before is None
            or before.op != Op.MATVEC or not before.epi or before.n > lanes):
        return (f"is the middle of a chain of three, which only the epilogue of a MATVEC of "
                f"one tile (n <= lanes = {lanes}) may start")
    return None


def chain_three_overlap(mv: Instr, first: Instr, middle: Instr, third: Instr) -> str | None:
    """Why the addresses of a chain of three (``mv`` the MATVEC, ``first``, ``middle``,
    ``third`` as executed) are undefined, one sentence (of the third); None when they are
    not: the third's result over the MATVEC's input, over part of the middle's ``b`` (the
    same words are fine: each is read before it is written) or a chained pair's second
    results, or the third's ``b`` over those second results (written meanwhile). The
    interpreter raises it, ``ternac.lower.check_program`` refuses it."""
    lo, hi = third.dst, third.dst + third.n
    spans = [(mv.src, mv.src + mv.k, "its MATVEC's input", False),
             (middle.aux, middle.aux + middle.n, "the middle op's b", True)]
    if first.pair:
        spans.append((first.aux, first.aux + first.n, "the pair's second results", False))
        if third.aux < first.aux + first.n and first.aux < third.aux + third.n:
            return (f"ends a chain of three reading b at [{third.aux}, "
                    f"{third.aux + third.n}) over the pair's second results [{first.aux}, "
                    f"{first.aux + first.n}), written meanwhile, which the ISA does not "
                    f"define")
    for a, b, what, same_ok in spans:
        if lo < b and a < hi and not (same_ok and lo == a):
            return (f"ends a chain of three writing scratch words [{lo}, {hi}) over {what} "
                    f"[{a}, {b}), which the ISA does not define")
    return None


def encode(ins: Instr) -> int:
    """Pack an instruction into a 128-bit integer.

    Raises
    ------
    ValueError naming the field whose value does not fit its width.
    """
    word, pos = 0, 0
    for name, width in FIELDS:
        v = int(getattr(ins, name))
        if not 0 <= v < (1 << width):
            raise ValueError(f"instruction field {name}={v!r} does not fit {width} bits "
                             f"(in {Op(ins.op).name})")
        word |= v << pos
        pos += width
    return word


def decode(word: int) -> Instr:
    """Unpack a 128-bit integer into an :class:`Instr`.

    Raises
    ------
    ValueError if the opcode is unknown.
    """
    vals, pos = {}, 0
    for name, width in FIELDS:
        vals[name] = (word >> pos) & ((1 << width) - 1)
        pos += width
    try:
        vals["op"] = Op(vals["op"])
    except ValueError:
        raise ValueError(f"unknown opcode {vals['op']!r} in instruction word {word:#034x}") from None
    return Instr(**vals)


def encode_program(prog: list[Instr]) -> list[int]:
    """Encode a list of instructions into 128-bit words."""
    return [encode(i) for i in prog]


def decode_program(words: list[int]) -> list[Instr]:
    """Decode 128-bit words into instructions."""
    return [decode(w) for w in words]


#: The address fields a REPEAT body instruction may advance, in the order of their 2-bit
#: selectors in ``rsel`` (bits [1:0], [3:2], [5:4], [7:6]).
RSEL_FIELDS: tuple[str, ...] = ("src", "dst", "aux", "wbase")
#: Entries of a REPEAT's stride table (in its src, dst and aux fields; selector 0 = none).
REPEAT_STRIDES = 3
_STRIDE_BITS = 12
_FIELD_W = dict(FIELDS)


def stride_value(field_value: int) -> int:
    """The signed stride a REPEAT's 12-bit stride-table field holds (two's complement)."""
    v = int(field_value) & ((1 << _STRIDE_BITS) - 1)
    return v - (1 << _STRIDE_BITS) if v >= 1 << (_STRIDE_BITS - 1) else v


def stride_field(stride: int) -> int:
    """The 12-bit field value of a signed stride in [-2048, 2047].

    Raises
    ------
    ValueError for a stride outside that range.
    """
    if not -(1 << (_STRIDE_BITS - 1)) <= int(stride) < 1 << (_STRIDE_BITS - 1):
        raise ValueError(f"REPEAT stride {stride!r} is outside [-2048, 2047]")
    return int(stride) & ((1 << _STRIDE_BITS) - 1)


def rsel_of(selectors: dict) -> int:
    """The ``rsel`` value of ``{field: entry}`` (fields of :data:`RSEL_FIELDS`, entries 0..3)."""
    v = 0
    for i, f in enumerate(RSEL_FIELDS):
        e = int(selectors.get(f, 0))
        if not 0 <= e <= REPEAT_STRIDES:
            raise ValueError(f"stride selector {e!r} of {f} is outside 0..{REPEAT_STRIDES}")
        v |= e << (2 * i)
    return v


def repeat_word(count: int, body: int, strides=()) -> Instr:
    """A REPEAT of ``body`` instructions ``count`` times with the signed ``strides`` (up to
    :data:`REPEAT_STRIDES`, entries 1, 2, 3 in order).

    Raises
    ------
    ValueError for more than three strides or one outside [-2048, 2047].
    """
    strides = list(strides)
    if len(strides) > REPEAT_STRIDES:
        raise ValueError(f"a REPEAT holds at most {REPEAT_STRIDES} strides, not {len(strides)}")
    vals = [stride_field(s) for s in strides] + [0] * (REPEAT_STRIDES - len(strides))
    return Instr(Op.REPEAT, n=int(count), k=int(body), src=vals[0], dst=vals[1], aux=vals[2])


def expand_program(program) -> list[tuple[int, Instr]]:
    """The execution order of a program: ``[(pc, instruction as executed)]`` up to and
    including the first HALT (or the last instruction, if it runs off the end), with every
    REPEAT unrolled (the REPEAT words themselves left out; a body instruction's address
    fields advanced as the module docstring says and its ``rsel`` cleared). A program
    without REPEAT comes back as it is (``pc`` = its index).

    Raises
    ------
    ValueError naming the instruction, for a REPEAT the ISA refuses (module docstring).
    """
    prog = list(program)
    out: list[tuple[int, Instr]] = []
    pc = 0
    while pc < len(prog):
        ins = prog[pc]
        if ins.op == Op.REPEAT:
            if pc > 0 and prog[pc - 1].op == Op.RMSNORM and prog[pc - 1].pro:
                raise ValueError(f"instruction {pc} ({ins}) is a REPEAT right after a RMSNORM "
                                 f"with a prologue (instruction {pc - 1}); its MATVEC must be "
                                 f"the next word in the program")
            if pc > 0 and prog[pc - 1].op == Op.MATVEC and prog[pc - 1].epi:
                # The sequencer decodes the word after an epilogue MATVEC as its epilogue.
                raise ValueError(f"instruction {pc} ({ins}) is a REPEAT right after a MATVEC "
                                 f"with an epilogue (instruction {pc - 1}); the epilogue must "
                                 f"be the next word in the program")
            if pc > 0 and prog[pc - 1].chain:
                raise ValueError(f"instruction {pc} ({ins}) is a REPEAT right after an "
                                 f"instruction with chain (instruction {pc - 1}); the ADD or "
                                 f"MUL it streams into must be the next word in the program")
            count, body = ins.n, ins.k
            bad = [f for f, _ in FIELDS
                   if f not in ("op", "src", "dst", "aux", "n", "k") and getattr(ins, f)]
            if bad:
                raise ValueError(f"instruction {pc} ({ins}) is a REPEAT with field {bad[0]} "
                                 f"set; a REPEAT holds only n, k, src, dst and aux")
            if count < 1 or body < 1:
                raise ValueError(f"instruction {pc} ({ins}) is a REPEAT of {body} instructions "
                                 f"{count} times; both must be >= 1")
            if pc + body >= len(prog):
                raise ValueError(f"instruction {pc} ({ins}) repeats {body} instructions, past "
                                 f"the program's end ({len(prog)} instructions)")
            strides = [0, stride_value(ins.src), stride_value(ins.dst), stride_value(ins.aux)]
            block = prog[pc + 1:pc + 1 + body]
            for j, b in enumerate(block):
                if b.op in (Op.REPEAT, Op.HALT):
                    raise ValueError(f"instruction {pc + 1 + j} ({b}) is a {b.op.name} inside "
                                     f"the body of the REPEAT at {pc}, which the ISA refuses")
            if block[-1].op == Op.RMSNORM and block[-1].pro:
                raise ValueError(f"the body of the REPEAT at {pc} ends with a RMSNORM with a "
                                 f"prologue (instruction {pc + body}); the pair must be inside "
                                 f"one body")
            if block[-1].op == Op.MATVEC and block[-1].epi:
                raise ValueError(f"the body of the REPEAT at {pc} ends with a MATVEC with an "
                                 f"epilogue (instruction {pc + body}); the pair must be inside "
                                 f"one body")
            if block[-1].chain:
                raise ValueError(f"the body of the REPEAT at {pc} ends with an instruction "
                                 f"with chain (instruction {pc + body}); the chain must be "
                                 f"inside one body")
            for r in range(count):
                for j, b in enumerate(block):
                    f = {}
                    for i, name in enumerate(RSEL_FIELDS):
                        e = (b.rsel >> (2 * i)) & 3
                        if e:
                            w = _FIELD_W[name]
                            f[name] = (getattr(b, name) + r * strides[e]) % (1 << w)
                    out.append((pc + 1 + j, dataclasses.replace(b, rsel=0, **f)))
            pc += 1 + body
            continue
        if ins.rsel:
            raise ValueError(f"instruction {pc} ({ins}) has stride selectors (rsel) outside "
                             f"a REPEAT body")
        out.append((pc, ins))
        if ins.op == Op.HALT:
            break
        pc += 1
    return out
