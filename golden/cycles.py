"""The cycle model: RTL cycles of each instruction and of a program, without simulating.

Pure Python (no torch, no Amaranth). Every formula is read off the RTL (hw/sequencer.py and
the units it drives) and counts what the sequencer's ``cycles`` output counts: the cycles
with ``busy`` high, from the FETCH after ``start`` to the EXEC of HALT. The IDLE
cycle in which ``start`` is taken is not counted (it clears the counter), so a program's
count is exactly :data:`START_CYCLES` (that one FETCH, which puts ``pc`` = 0 on the program
memory's address) plus the sum of its instructions' counts.

Every instruction costs :data:`ISSUE_CYCLES` = 2 (the sequencer's DECODE and EXEC states,
one cycle each: DECODE registers the 128-bit word, EXEC dispatches on the opcode) plus the
cycles of its own states before the sequencer goes to DECODE again: the next word is
already on the program memory's output then (pc changes only at the end of DECODE, so it
is addressed from EXEC on), so no instruction but the first needs a FETCH. Each formula
below returns the whole, issue cycles included; HALT is the issue cycles alone (EXEC drops
``busy``).

Formulas are plain functions keyed by opcode in :data:`CYCLES`, each taking the
:class:`~ternac.golden.isa.Instr` and, as keyword-only arguments, the accelerator
parameters it needs: ``lanes`` and ``weight_format`` (MATVEC, EMBED: ``"i2"`` or ``"t3"``,
the streamer's format, :data:`STREAMER_LATENCY`) and a vector unit's ``latency``
(defaults: :data:`UNIT_TIMING`, the RTL units' values). Two ops depend on data:

* RMSNORM / LAYERNORM: the Norm unit normalizes the variance word in a loop of one
  2-bit shift a cycle, and LayerNorm's ``S1^2`` takes one cycle a bit of ``|S1|``. Given
  the input vector, :func:`norm_data` gives the exact counts; without it the formula
  gives a data-independent bound (``bound="max"`` or ``"min"``).
* SAMPLE: the cumulative-sum scan stops at the drawn index; given the drawn index
  (``hit``, the result register) the count is exact, else a bound.

:func:`program_cycles` sums a program and breaks it down by opcode name; with no data it
reports the upper bound as ``total`` (and the lower bound as ``total_min``), so the
prediction never undercounts the RTL.

Calling convention for every formula (so an op registry can hold them as ``cycles=``):
``fn(ins, **params)`` where params are any of ``lanes``, ``weight_format``, ``latency``,
``bound`` and the
op's data keywords (``normalize_steps``, ``s1_abs``, ``hit``); :func:`instr_cycles` passes
each function only the keywords it declares.

Source: hw/sequencer.py (FSM IDLE -> FETCH -> DECODE -> EXEC -> op state -> DECODE),
hw/streamer.py, hw/engine.py, hw/requant.py, hw/activation.py, hw/eltwise.py, hw/norm.py,
hw/shiftmax.py, hw/divider.py, hw/dot.py, hw/vector.py (pass_control). Checked against the
RTL by tests/test_cycles.py (single ops in Amaranth's simulator, whole programs in
Verilator) and, for DOT, tests/test_dot.py.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

from .isa import Flag, Instr, Op, expand_program
from .ops import REGISTRY as _REG, spec as _spec
from .tritcode import t3_word_bits
from .widths import NORM_ISQRT_BITS, SM_RECIP_FRAC_BITS

__all__ = ["ISSUE_CYCLES", "START_CYCLES", "UNIT_TIMING", "STREAMER_LATENCY", "REQUANT_LATENCY",
           "WEIGHT_FORMATS", "weight_word_bits", "CYCLES", "halt_cycles", "matvec_cycles",
           "argmax_cycles", "repeat_cycles", "embed_cycles", "activation_cycles", "eltwise_cycles",
           "norm_cycles", "shiftmax_cycles", "sample_cycles", "dot_cycles",
           "norm_normalize_steps", "prologue_cycles", "chained_matvec_cycles", "chain_pair",
           "chain_latency", "chain_cycles", "CHAIN_LINK_CYCLES",
           "norm_data", "norm_work_cycles", "sample_data", "instr_cycles", "program_cycles"]

#: DECODE + EXEC: the sequencer's cost of issuing any instruction (cycles).
ISSUE_CYCLES = 2
#: The FETCH after ``start`` (pc = 0 addressed): once a run, counted in the first instruction.
START_CYCLES = 1

#: Weight formats of the streamer (golden.image.Format: I2_TILED, T3).
WEIGHT_FORMATS = ("i2", "t3")
#: Cycles from a weight command accepted by the PackedWeightStreamer to the cycle before
#: its first word is valid on the streamer's output, by format: I2 the read issue (the
#: word is on the memory's output the cycle after), T3 also the memory read and the
#: registered ROM decode into its FIFO (hw/streamer.py ``PackedWeightStreamer.LATENCY``;
#: tests/test_t3.py checks the two agree).
STREAMER_LATENCY = {"i2": 1, "t3": 3}
#: Cycles from an accumulator accepted by the Requantizer to its int8/int16 result: the
#: product, the barrel shift, the increment and saturation tests, the selection
#: (hw/requant.py ``Requantizer.LATENCY``).
REQUANT_LATENCY = 4


def weight_word_bits(lanes: int, weight_format: str = "i2") -> int:
    """Bits of a weight word: ``2 * lanes`` (I2) or ``8 * lanes / 5`` (T3).

    Raises
    ------
    ValueError for an unknown format, or T3 lanes that are not a multiple of 5.
    """
    _check_format(weight_format)
    return t3_word_bits(lanes) if weight_format == "t3" else 2 * int(lanes)


def _check_format(weight_format: str) -> None:
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight format must be one of {', '.join(WEIGHT_FORMATS)}, not "
                         f"{weight_format!r}")

#: ``{unit: (passes, latency)}`` of the RTL vector units: ``passes`` the times the sequencer
#: streams a vector through the unit, ``latency`` the cycles from an accepted beat of the
#: final pass to its output (no stalls). hw/activation.py ``Activation().latency``
#: (``1 + SHIFT_EXP_STAGES + ceil((SIG_FRAC_BITS - 1) / steps_per_stage) + 5``, two steps
#: a stage: 21), hw/eltwise.py ``Eltwise.latency``, hw/norm.py ``Norm.latency``, hw/shiftmax.py
#: (1 input register, 1 for ``mx - x``, 8 of shift-exp, ``e * R``, the rounding stage and the
#: output register: 13), hw/dot.py ``Dot.latency``. tests/test_cycles.py checks these
#: against the hw classes (tests/test_dot.py the Dot unit's).
_LATENCY = {"activation": 21, "eltwise": 7, "norm": 13, "shiftmax": 13, "dot": 6}
#: (passes come from the op registry, golden.ops, the one place they are stated.)
UNIT_TIMING: dict[str, tuple[int, int]] = {
    unit: (next(sp.passes for sp in _REG.values() if sp.unit == unit), lat)
    for unit, lat in _LATENCY.items()}

#: A chain (golden/isa.py ``chain``): cycles from the first unit's output to the Eltwise
#: unit's input (hw/sequencer.py registers the result beside its b's scratch read).
CHAIN_LINK_CYCLES = 1


def chain_latency(ins: Instr, second: Instr, latencies: Mapping[str, int] | None = None,
                  third: Instr | None = None) -> int:
    """The latency of a chain, ``ins`` (a SIGMOID, SILU or GELU with ``chain``) streaming
    into ``second`` (its ADD or MUL) and, for a chain of three (``second`` sets ``chain``),
    on into ``third``: an element's cycles from entering the first unit to the last
    Eltwise unit's result, ``U1 + CHAIN_LINK_CYCLES + U2`` (``+ CHAIN_LINK_CYCLES + U3``;
    the units' latencies, :data:`UNIT_TIMING` unless ``latencies`` says otherwise).
    Source: hw/sequencer.py (``ch_*``, ``c3_*``)."""
    lat = 0
    ops = (ins, second) if third is None else (ins, second, third)
    for i in ops:
        unit = _spec(i.op).unit
        u = (latencies or {}).get(unit)
        lat += UNIT_TIMING[unit][1] if u is None else u
    return lat + CHAIN_LINK_CYCLES * (len(ops) - 1)


def chain_cycles(ins: Instr, second: Instr, *,
                 latencies: Mapping[str, int] | None = None) -> int:
    """A standalone chain (golden/isa.py ``chain``: ``ins`` then ``second`` as one
    operation): ``2 + n + L`` with ``L`` = :func:`chain_latency` (the first op's one pass,
    its results on through the Eltwise unit). Source: hw/sequencer.py EXEC -> CH_DEC -> VEC:
    element 0 (read in EXEC) enters the first unit in CH_DEC, which registers the second
    word meanwhile, so that state costs no cycle; checked on the RTL by
    tests/test_op_chain.py."""
    return ISSUE_CYCLES + ins.n + chain_latency(ins, second, latencies)


#: Norm unit, between its passes (hw/norm.py, hw/divider.py): isqrt and divider bits.
_NORM_W = NORM_ISQRT_BITS
#: Shiftmax unit: quotient bits of its one division (hw/shiftmax.py, SeqDivider).
_SM_Q = SM_RECIP_FRAC_BITS + 1
#: Pipeline stages the Shiftmax pass 1 drains before its division (v1, mx - x, 8 of
#: shift-exp): hw/shiftmax.py ``valids`` in pass 1.
_SM_PASS1_STAGES = 10
#: The normalized variance word lies in [2^(2W-2), 2^(2W)) (hw/norm.py NORMALIZE).
_V_LO, _V_HI = 1 << (2 * _NORM_W - 2), 1 << (2 * _NORM_W)
#: |x| <= 2^15 in the Norm unit's sums (hw/norm.py ``X``).
_NORM_X = 1 << 15


def _bits(v: int) -> int:
    """Bits of a non-negative integer (0 for 0): the cycles a shift-and-add loop takes."""
    return int(v).bit_length()


def _check_bound(bound: str) -> None:
    if bound not in ("max", "min"):
        raise ValueError(f"bound must be 'max' or 'min', not {bound!r}")


def halt_cycles(ins: Instr) -> int:
    """HALT: ``2`` cycles (DECODE, EXEC; EXEC drops ``busy`` and raises ``done``).

    Source: hw/sequencer.py, EXEC ``Case(Op.HALT)``. An unknown opcode costs the same
    (``Default``, which also raises ``error``).
    """
    return ISSUE_CYCLES


def repeat_cycles(ins: Instr) -> int:
    """REPEAT: ``2`` cycles (DECODE, EXEC; EXEC loads the loop registers), once; its
    body's instructions cost their own formulas in every iteration (each is fetched again:
    the wrap to the body's first instruction is the pc update of DECODE, no extra cycle).

    Source: hw/sequencer.py, EXEC ``Case(Op.REPEAT)`` and the pc update in DECODE/EPI_DEC.
    """
    return ISSUE_CYCLES


def matvec_cycles(ins: Instr, *, lanes: int, weight_format: str = "i2",
                  epilogue_latency: int | None = None, epilogue_pair: bool = False) -> int:
    """MATVEC of ``n`` rows, fan-in ``k``, on ``L = lanes`` lanes (``T = ceil(n / L)`` tiles)::

        2 + 4 + W + k + (T - 1) * max(k, L) + L + d      (n >= 1, k >= 1)
        2 + 1                                             (n = 0)

    with ``W`` = :data:`STREAMER_LATENCY` (1 for I2, 3 for T3) and, if the result is
    requantized (not RAW), ``d = max(0, R - L + r)``, ``R`` = :data:`REQUANT_LATENCY` = 4,
    ``r = (n - 1) mod L`` the lane of the last row (so ``d = 3`` when ``n`` is a multiple of
    ``L``, 2 or 1 when it is one or two short of one, else 0); RAW: ``d = 0``.

    Where the terms come from (cycles counted from the first cycle of the MATVEC state):

    * the weight command of tile 0 is accepted in cycle 0 (hw/streamer.py, ``cmd.ready``
      while idle), the first read issues in cycle 1 and the word is valid at the
      streamer's output in cycle ``W + 1`` (I2: on the 1-cycle weight memory's output; T3:
      after the registered ROM decode and the streamer's FIFO), where it joins its
      activation in the sequencer's beat register (the operand fetcher reads
      ``scratch[src]`` from EXEC on, well ahead, hw/sequencer.py): the first beat enters
      the engine in cycle ``2 + W``;
    * one beat a cycle: the next tile's command is accepted in the cycle of the current
      one's last read, so weights stream without a bubble (hw/streamer.py);
    * a tile's sums go from the engine's accumulators to its output shift register the
      cycle after its last beat, once the shift register has drained the previous tile's
      ``L`` results; until then the next tile's first beat waits (hw/engine.py ``held``,
      ``free``), so tiles after the first take ``max(k, L)`` cycles each (the beat
      register takes the next beat in the cycle the engine takes one, so it adds no
      bubble); the last beat of tile ``T - 1`` fires in cycle ``c = 1 + W + k + (T - 1)
      max(k, L)``;
    * the last tile's sums reach the shift register in cycle ``c + 1`` and drain ``L``
      results, one a cycle, in cycles ``c + 2 .. c + L + 1``; the state exits in the first
      cycle with the engine empty (``~o.valid``, cycle ``c + L + 2``) and every row
      written. RAW rows are written as they leave the engine; requantized ones ``R``
      cycles later (hw/requant.py), so the last row, which leaves in cycle ``c + 2 + r``,
      is written in cycle ``c + 2 + r + R``: ``d`` cycles past the drain.

    With an epilogue (``ins.epi``; ``epilogue_latency`` = ``U``, the latency of the next
    instruction's vector unit, :data:`UNIT_TIMING`) the formula is the whole pair's: the
    second instruction is never fetched as an instruction of its own (the sequencer
    registers it in the MATVEC's first cycle, state EPI_DEC, while the first weight
    command issues) and costs 0; each requantized row enters the unit in the cycle it
    leaves the requantizer and is written ``U`` cycles later, so ``d = max(0, R + U - L +
    r)``.

    With an epilogue ``pair`` (``epilogue_pair``: golden/isa.py, a SIGMOID writing the
    sigmoid of each row and of its negation; ``k >= 2L + R`` or one tile) the requantizer
    holds each row on its output two cycles (the unit takes it in both, the second with
    neg), stalling its pipeline and so the engine's drain: a tile's rows ``j < R`` leave
    the engine one a cycle, the others one every two (row ``j`` at ``2j - R + 1`` cycles
    after the tile's first), padding rows one a cycle after the last row; row ``j``'s two
    results are written ``R + 2j + U`` and one cycle more after the first left. A tile's
    last result is then written before the next tile's first row leaves (``k >= 2L + R``;
    one tile has no next), tiles still take ``k`` cycles, and the state exits in the
    cycle ``max(c + 2 + L + max(0, r - R + 1), c + 3 + 2 r + R + U)``: ``2 + 1 + c +
    max(L + 2 + max(0, r - R + 1), 2 r + R + U + 3)`` in all.

    Raises
    ------
    ValueError for ``lanes`` < 1, an unknown ``weight_format``, or ``k = 0`` with ``n > 0``
    (the RTL never finishes); a pair with ``k < 2 L + R`` over more than one tile.
    """
    L = int(lanes)
    if L < 1:
        raise ValueError(f"lanes must be positive, not {lanes!r}")
    _check_format(weight_format)
    n, k = ins.n, ins.k
    if n == 0:
        return ISSUE_CYCLES + 1
    if k == 0:
        raise ValueError(f"MATVEC with n={n} and k=0 never finishes on the RTL (no beat ends "
                         f"a tile)")
    tiles = -(-n // L)
    if ins.epi and epilogue_pair:
        R = REQUANT_LATENCY
        if k < 2 * L + R and tiles > 1:
            raise ValueError(f"an epilogue pair needs k >= 2 * lanes + {R} = {2 * L + R} or "
                             f"n <= lanes, not k = {k} with n = {n}")
        r = (n - 1) % L
        c = 1 + STREAMER_LATENCY[weight_format] + k + (tiles - 1) * k
        return ISSUE_CYCLES + 1 + c + max(L + 2 + max(0, r - R + 1),
                                          2 * r + R + int(epilogue_latency or 0) + 3)
    tail = REQUANT_LATENCY + (int(epilogue_latency) if ins.epi and epilogue_latency else 0)
    d = 0 if ins.flags & Flag.RAW else max(0, tail - L + (n - 1) % L)
    return (ISSUE_CYCLES + 4 + STREAMER_LATENCY[weight_format] + k + (tiles - 1) * max(k, L)
            + L + d)


def chained_matvec_cycles(prev: Instr, mv: Instr, *, lanes: int, weight_format: str = "i2",
                          prev_epilogue_latency: int | None = None, prev_pair: bool = False,
                          epilogue_latency: int | None = None) -> int:
    """A MATVEC ``mv`` chained after the MATVEC ``prev`` (AccelConfig.mv_chain; golden/isa.py
    MATVEC: it streams while ``prev``'s last tile drains): ``mv``'s count, issue cycles
    included, the cycles from ``prev``'s last cycle to ``mv``'s (``prev`` counts as
    :func:`matvec_cycles` / :func:`prologue_cycles` give)::

        2 + 1 + max(g + r + D, g + L)

    with, in cycles from ``mv``'s first (its EPI_DEC, or its MATVEC state without an
    epilogue), ``X`` = ``prev``'s last state cycle and ``c`` its last beat (the
    :func:`matvec_cycles` terms, ``prev``'s own count from its first cycle): tile 0's first
    beat at ``s = c + 2 - (X + 3)``; tile ``j`` of ``k`` beats ends at ``e = s + k - 1``, its
    sums load into the engine's shift register at ``max(e + 1, f)``, where ``f`` is the
    cycle the previous tile's last lane leaves (``prev``'s last tile's: ``c + L + 1 - (X +
    3)``, or with a pair the last padding lane after its rows' two-cycle pace), its lanes
    leave from ``g = load + 1`` one a cycle (tile 0: not before ``h`` = 1 with an epilogue,
    0 without), the next tile's first beat is at that load; ``g`` of the last tile,
    ``r = (n - 1) mod L``, ``D = R + U`` (requantized, ``U`` the epilogue's latency or 0),
    0 (RAW).

    Source: hw/sequencer.py MATVEC (the chain: once ``prev``'s reads and weight commands
    are all issued, the fetcher's and the weight commands' registers take ``mv``'s word,
    whose pc stays), MV_SWAP (``mv``'s own fields, after ``prev``'s last row is written and
    its lanes are out; ``mv``'s rows wait in the engine: ``hold``), MV_WAIT (the next word's
    read), EPI_DEC; hw/engine.py (``held``/``free``). Checked on the RTL by
    tests/test_mv_chain.py (``prev.k >= L``, I2: what check_program admits).
    """
    L, R = int(lanes), REQUANT_LATENCY
    _check_format(weight_format)
    W = STREAMER_LATENCY[weight_format]
    t1 = -(-prev.n // L)
    c = 1 + W + prev.k + (t1 - 1) * (prev.k if prev_pair else max(prev.k, L))
    x = matvec_cycles(prev, lanes=L, weight_format=weight_format,
                      epilogue_latency=prev_epilogue_latency,
                      epilogue_pair=prev_pair) - ISSUE_CYCLES - 1
    r1 = (prev.n - 1) % L
    if prev_pair:
        a_last = c + 2 + (r1 if r1 < R else 2 * r1 - R + 1) + (L - 1 - r1)
    else:
        a_last = c + L + 1
    base = x + 3
    h = 1 if mv.epi else 0
    s, free = c + 2 - base, a_last - base
    g = 0
    for j in range(-(-mv.n // L)):
        load = max(s + mv.k, free)
        g = max(load + 1, h) if j == 0 else load + 1
        free, s = g + L - 1, load
    r = (mv.n - 1) % L
    d = 0 if mv.flags & Flag.RAW else R + (int(epilogue_latency or 0) if mv.epi else 0)
    return ISSUE_CYCLES + 1 + max(g + r + d, g + L)


def chain_pair(prev: Instr, mv: Instr, lanes: int) -> bool:
    """Whether the RTL with AccelConfig.mv_chain chains ``mv`` after ``prev`` (golden/isa.py
    MATVEC): both MATVECs, ``mv`` the next word (after ``prev``'s epilogue), ``n, k >= 1``."""
    return (prev.op == Op.MATVEC and mv.op == Op.MATVEC and prev.n >= 1 and mv.n >= 1
            and mv.k >= 1)


def prologue_cycles(norm: Instr, mv: Instr, *, lanes: int, weight_format: str = "i2",
                    norm_latency: int = 13, epilogue_latency: int | None = None,
                    wait: int = 0, epilogue_pair: bool = False) -> int:
    """A prologue RMSNORM (golden/isa.py ``pro``) and its MATVEC (with its epilogue, if
    ``mv.epi``), run as one operation: with ``A = max(3, 2 + wait)``, ``N`` the Norm
    unit's latency (13) and ``W`` = :data:`STREAMER_LATENCY`::

        matvec_cycles(mv) - (2 + 1 + W) + A + N

    against ``2 + max(0, wait) + n + N`` plus :func:`matvec_cycles` run one after the
    other.

    Source: hw/sequencer.py: DECODE (cycle 0) registers the RMSNORM and starts its reads;
    EXEC (1) issues the first; PRO_DEC (2) registers the MATVEC (the weight command of
    tile 0 is accepted in cycle 3); the Norm unit takes the fetched words from the skid
    buffer from cycle 3 on (``A``; a tee's RMSNORM waits for the unit's work as a plain one:
    its first beat in cycle ``2 + wait``, :func:`norm_cycles`), one a cycle; result ``j``
    leaves the unit ``N`` cycles after its beat and fires tile 0's beat ``j`` in that
    cycle (the weight words wait on the streamer's output long before), so beat 0 fires
    in cycle ``A + N``, where a plain MATVEC's fires in its state's cycle ``1 + W``
    (:func:`matvec_cycles`); from there on the two run alike (tiles 1.. read the results
    back from ``dst``). Checked on the RTL by tests/test_prologue.py (one and several
    tiles, k > L, RAW, an epilogue, a tee's wait).
    """
    L = int(lanes)
    _check_format(weight_format)
    base = matvec_cycles(mv, lanes=L, weight_format=weight_format,
                         epilogue_latency=epilogue_latency, epilogue_pair=epilogue_pair)
    first = max(3, 2 + int(wait)) + int(norm_latency)
    return base - (ISSUE_CYCLES + 1 + STREAMER_LATENCY[weight_format]) + first


def argmax_cycles(ins: Instr) -> int:
    """ARGMAX over ``n`` words of the output buffer: ``2 + n + 1`` (``2 + 1`` for n = 0).

    Source: hw/sequencer.py state ARGMAX: word ``j`` is addressed in cycle ``j`` and
    compared in cycle ``j + 1`` (1-cycle read latency); the state exits in the cycle that
    compares word ``n - 1``.
    """
    return ISSUE_CYCLES + (ins.n + 1 if ins.n else 1)


def embed_cycles(ins: Instr, *, lanes: int, weight_format: str = "i2") -> int:
    """EMBED of one row of ``k`` weight words (``B`` = :func:`weight_word_bits` / 8 bytes a
    word: ``2 * lanes / 8`` for I2, ``lanes / 5`` for T3)::

        2 + 2 + 1 + k * B         (k >= 1, B >= 2)
        2 + 2 + 2 k               (k >= 1, B = 1)
        2 + 2                      (k = 0)

    (with ``WIDE``, 16-bit halfwords: ``B / 2`` for ``B``; B even)

    Source: hw/sequencer.py states EMB_TOK (1 cycle: the token id, addressed in EXEC, is
    registered), EMB_ROW (1: the row's word address ``wbase + token * k``), EMB_READ (1:
    the weight memory reads the first word; EMBED reads the memory directly, not through
    the streamer, so the format only sets ``B``), then EMB_RUN, one byte a cycle, all ``B``
    of every word even past ``n``: the next word is addressed in the cycle of a word's
    next-to-last byte, so it is on the read port right after the last one (no bubble);
    with one byte a word (``B = 1``) each word has its own EMB_READ. The bytes written are
    ``min(n, k B)``; ``n`` does not change the count.

    Raises
    ------
    ValueError for an unknown format, or lanes whose word is not whole bytes (I2: a
    positive multiple of 4; T3: a positive multiple of 5).
    """
    _check_format(weight_format)
    if weight_format == "i2" and (lanes < 4 or lanes % 4):
        raise ValueError(f"lanes must be a positive multiple of 4, not {lanes!r}")
    nbytes = weight_word_bits(lanes, weight_format) // 8
    if ins.flags & Flag.WIDE:
        if nbytes % 2:
            raise ValueError(f"EMBED WIDE needs words of an even number of bytes, not {nbytes}")
        nbytes //= 2
    if ins.k == 0:
        return ISSUE_CYCLES + 2
    if nbytes == 1:
        return ISSUE_CYCLES + 2 + 2 * ins.k
    return ISSUE_CYCLES + 3 + ins.k * nbytes


def _one_pass(ins: Instr, latency: int) -> int:
    if ins.n == 0:
        return ISSUE_CYCLES + 1
    return ISSUE_CYCLES + ins.n + latency


def activation_cycles(ins: Instr, *, latency: int = UNIT_TIMING["activation"][1]) -> int:
    """SIGMOID / SILU / GELU on the Activation unit: ``2 + n + latency`` (``2 + 1`` for
    n = 0); latency 21 in the RTL.

    Source: hw/sequencer.py state VEC: ``scratch[src]`` is addressed in EXEC, so element
    ``j`` enters the unit in cycle ``j`` of VEC (the unit is always ready: its output is
    never stalled); the state exits in the cycle the last output is written, ``latency``
    cycles after the last element enters. hw/activation.py ``Activation.latency``: 1 input
    register, 8 shift-exp stages (the last one the division's first), 7 divider stages
    (two quotient bits each), 5 to the output.
    """
    return _one_pass(ins, latency)


def eltwise_cycles(ins: Instr, *, latency: int = UNIT_TIMING["eltwise"][1]) -> int:
    """ADD / MUL on the Eltwise unit: ``2 + n + latency`` (``2 + 1`` for n = 0); latency 7.

    Source: as :func:`activation_cycles`; hw/eltwise.py ``Eltwise.latency`` = 7. A MUL
    with ``wb`` (``b`` from the weight memory, golden/isa.py) costs the same: the operand
    fetcher reads the weight word beside ``a`` (1-cycle read, as the scratchpad's), from
    EXEC on (tests/test_mul_wb.py).
    """
    return _one_pass(ins, latency)


def norm_normalize_steps(v: int) -> int:
    """2-bit shifts the Norm unit's NORMALIZE state takes to bring the variance word ``V``
    into ``[2^30, 2^32)`` (``V = 0`` is taken as 1): ``V >= 2^32`` shifts right, else
    ``V < 2^30`` shifts left, one step a cycle (hw/norm.py NORMALIZE)."""
    v = max(int(v), 1)
    steps = 0
    while v >= _V_HI:
        v >>= 2
        steps += 1
    while v < _V_LO:
        v <<= 2
        steps += 1
    return steps


def norm_data(x: Sequence[int], *, layernorm: bool, neg: bool = False) -> dict:
    """The data-dependent counts of a RMSNORM / LAYERNORM over the int16 vector ``x``:
    ``{"normalize_steps": ..., "s1_abs": ...}``, keywords for :func:`norm_cycles`.

    ``x`` is ``scratch[src : src + n]`` as the instruction sees it (negated first with
    Flag.NEG). ``V = N * S2 - S1^2`` (LayerNorm; eps 0 in the ISA) or ``N * S2`` (RMSNorm),
    with ``N = n``, ``S1 = sum x``, ``S2 = sum x^2`` (hw/norm.py pass 0).
    """
    xs = [-int(v) if neg else int(v) for v in x]
    n = len(xs)
    s1 = sum(xs) if layernorm else 0
    s2 = sum(v * v for v in xs)
    return {"normalize_steps": norm_normalize_steps(n * s2 - s1 * s1), "s1_abs": abs(s1)}


def _norm_steps_bound(n: int, bound: str) -> int:
    """The NORMALIZE steps of :func:`norm_cycles`'s data-free bound (``"max"`` or ``"min"``)."""
    if bound == "min":
        return 0
    return max(norm_normalize_steps(1), norm_normalize_steps(n * n * _NORM_X ** 2))


def _matvec_drain_after_last_write(ins: Instr, lanes: int, epilogue_latency: int) -> int:
    """Cycles a MATVEC with an epilogue runs after its last row's result is written:
    ``max(0, L - r - R - U)`` (the engine still draining padding lanes; :func:`matvec_cycles`:
    the last row is written in cycle ``c + 2 + r + R + U``, the state exits in ``c + L + 2 +
    d``)."""
    L = int(lanes)
    return max(0, L - (ins.n - 1) % L - REQUANT_LATENCY - int(epilogue_latency))


def _work(n: int, s1_abs: int, normalize_steps: int, work_steps: int) -> int:
    """The data-dependent part of the Norm unit's between-pass work: ``bits(n) + bits(|S1|)
    + steps + 2 W`` at one bit a cycle, each term a ceiling of it over ``work_steps`` (2:
    hw/norm.py ``work_steps``, two bits a cycle)."""
    d = int(work_steps)
    if d not in (1, 2):
        raise ValueError(f"work_steps must be 1 or 2, not {work_steps!r}")
    return sum(-(-int(v) // d) for v in (_bits(n), _bits(s1_abs), normalize_steps,
                                         _NORM_W, _NORM_W))


def norm_work_cycles(n: int, *, normalize_steps: int, s1_abs: int = 0,
                     work_steps: int = 1) -> int:
    """Cycles from a RMSNORM / LAYERNORM's last pass-0 beat to the first cycle its pass 1
    can take a beat: ``bits(n) + bits(|S1|) + steps + 2 W + 11`` (hw/vector.py
    pass_control DRAIN, 3 cycles, then hw/norm.py's work FSM, as in :func:`norm_cycles`;
    with ``work_steps = 2`` each of the five terms halved, rounded up).
    The same whether pass 0 came from the instruction itself or from a tee (golden/isa.py)."""
    return _work(n, s1_abs, normalize_steps, work_steps) + 11


def norm_cycles(ins: Instr, *, latency: int = UNIT_TIMING["norm"][1],
                normalize_steps: int | None = None, s1_abs: int | None = None,
                bound: str = "max", wait: int = 0, work_steps: int = 1) -> int:
    """RMSNORM / LAYERNORM of ``n`` elements on the Norm unit (2 passes)::

        2 + 2 n + bits(n) + bits(|S1|) + steps + 2 W + 10 + latency     (n >= 1)
        2 + 1                                                            (n = 0)

    with ``W = 16`` (isqrt and divider bits, golden.widths.NORM_ISQRT_BITS), latency 13,
    ``bits(v)`` the bit length (0 for 0), ``S1 = sum x`` (0 for RMSNorm) and ``steps`` =
    :func:`norm_normalize_steps` of the variance word (:func:`norm_data` computes both).
    For n = 128, RMSNorm: ``2 + 319 + steps``.

    Source (cycles from the first of the VEC state): pass 0 streams ``n`` beats (cycles
    ``0 .. n-1``); hw/vector.py pass_control DRAIN waits for the 2 pass-0 stages to empty
    and pulses ``work_start`` in cycle ``n + 2``; hw/norm.py's work FSM then runs
    MUL_N_S2 (``bits(n) + 1`` cycles: one bit of N a cycle, then the exit),
    MUL_S1_S1 (``bits(|S1|) + 1``), NORMALIZE (``steps + 1``), ISQRT_START (1), ISQRT
    (``W + 1``, hw/divider.py SeqIsqrt), DIVIDE (``W + 1``, SeqDivider) and DONE (1), after
    which pass 1 streams its ``n`` beats; the state exits in the cycle the last output is
    written, ``latency`` cycles after the last beat.

    Without data (``normalize_steps`` or ``s1_abs`` None) the missing count is bounded:
    ``bound="max"``: ``steps <= max(15, steps(n^2 2^30))`` (the variance word lies in
    ``[1, n^2 2^30]`` for ``|x| <= 2^15``; 15 steps bring ``V = 1`` up, the other term
    brings the largest down) and ``|S1| <= n 2^15`` (LayerNorm); ``bound="min"``: 0 steps
    and ``S1 = 0``. ``work_steps`` (AccelConfig.norm_steps): 2 takes the five terms of
    the between-pass work two bits a cycle (:func:`norm_work_cycles`).

    With ``ins.reuse`` (RMSNORM on the statistics the unit holds): pass 1 alone, ``2 + n +
    latency`` (hw/vector.py pass_control with ``skip``), data-independent; ``2 + wait + n +
    latency`` where the statistics come from a tee (golden/isa.py) whose work the first
    beat waits for (``wait`` cycles past the VEC state's first: :func:`program_cycles`
    works it out from the tee's last beat and :func:`norm_work_cycles`).

    Raises
    ------
    ValueError for a bound other than "max" or "min".
    """
    _check_bound(bound)
    n = ins.n
    if n == 0:
        return ISSUE_CYCLES + 1
    if ins.reuse:
        return ISSUE_CYCLES + max(0, int(wait)) + n + latency
    if normalize_steps is None:
        normalize_steps = _norm_steps_bound(n, bound)
    if ins.op == Op.RMSNORM:
        s1_abs = 0
    elif s1_abs is None:
        s1_abs = n * _NORM_X if bound == "max" else 0
    return (ISSUE_CYCLES + 2 * n + _work(n, s1_abs, normalize_steps, work_steps) + 10
            + latency)


def shiftmax_cycles(ins: Instr, *, latency: int = UNIT_TIMING["shiftmax"][1]) -> int:
    """SHIFTMAX of ``n`` elements on the Shiftmax unit (3 passes)::

        2 + 3 n + 3 + (10 + 3) + Q + latency     (n >= 1; = 2 + 3 n + 45 in the RTL)
        2 + 1                                    (n = 0)

    with ``Q = 16`` (quotient bits of the one division, golden.widths.SM_RECIP_FRAC_BITS +
    1) and latency 13. Data-independent.

    Source (cycles from the first of the VEC state): pass 0 (the row maximum) streams
    cycles ``0 .. n-1``; pass_control DRAIN waits 2 cycles for its one stage, WORK has
    nothing to do after pass 0 (1 cycle), so pass 1 starts in cycle ``n + 3``; after its
    ``n`` beats the 10 pass-1 stages drain, ``work_start`` registers ``floor(log2 T)`` (1),
    the divider starts the next cycle (1), runs ``Q`` cycles, ``work_done`` (1), then pass 2
    streams ``n`` beats and the last output is written ``latency`` cycles after the last
    beat (hw/shiftmax.py, hw/vector.py pass_control, hw/divider.py SeqDivider).
    """
    n = ins.n
    if n == 0:
        return ISSUE_CYCLES + 1
    return ISSUE_CYCLES + 3 * n + 3 + _SM_PASS1_STAGES + 3 + _SM_Q + latency


def sample_cycles(ins: Instr, *, hit: int | None = None, bound: str = "max") -> int:
    """SAMPLE over ``n >= 1`` Q15 probabilities: ``2 + n + 6 + h``, ``h`` in ``[0, n - 1]``.

    ``h`` is the index at which the cumulative sum first exceeds the threshold, which is
    the drawn index (the result register); when no index does, the scan ends at ``n - 1``
    and the result is 0. So with ``hit`` = the drawn index the count is exact except in
    that no-hit case (then pass ``hit=n - 1``). Without ``hit``: ``bound="max"`` gives
    ``h = n - 1`` (``2 + 2 n + 5``), ``"min"`` gives ``h = 0``.

    Source: hw/sequencer.py states SMP_RD (1: address the LFSR words), SMP_LD (1: step the
    LFSR), SMP_P1 (``n``: sum the probabilities), SMP_THR (1: scale the draw), SMP_P2
    (``h + 1``: the scan, stops at the hit), SMP_WB and SMP_WB2 (1 each: write the LFSR
    state back).

    Raises
    ------
    ValueError for n = 0 (the RTL never leaves SMP_P1), a ``hit`` outside ``[0, n)`` or a
    bad ``bound``.
    """
    _check_bound(bound)
    n = ins.n
    if n < 1:
        raise ValueError("SAMPLE over 0 elements never finishes on the RTL")
    if hit is None:
        hit = n - 1 if bound == "max" else 0
    if not 0 <= hit < n:
        raise ValueError(f"SAMPLE hit index {hit!r} is outside [0, {n})")
    return ISSUE_CYCLES + n + 6 + hit


def dot_cycles(ins: Instr, *, latency: int = UNIT_TIMING["dot"][1]) -> int:
    """DOT of ``n`` rows of ``k`` on the Dot unit: ``2 + n k + latency`` (``2 + 1`` for
    n = 0); latency 6 in the RTL. Data-independent.

    Source: as :func:`activation_cycles`, with the ``n k`` elements of the one pass
    streamed one a cycle (hw/sequencer.py: ``a`` at ``src + (e mod k)``, ``b`` at ``aux +
    e``); the last row's sum leaves the unit ``latency`` cycles after its last element
    (hw/dot.py ``Dot.latency``: input register, ``a b``, accumulator, ``acc m``, the
    rounding shift, the output register).

    Raises
    ------
    ValueError for ``k = 0`` with ``n > 0`` (no element ends a row: the RTL never finishes).
    """
    n, k = ins.n, ins.k
    if n == 0:
        return ISSUE_CYCLES + 1
    if k == 0:
        raise ValueError(f"DOT with n={n} and k=0 never finishes on the RTL (no element ends "
                         f"a row)")
    return ISSUE_CYCLES + n * k + latency


def sample_data(p: Sequence[int], result: int) -> dict:
    """``{"hit": h}`` for :func:`sample_cycles` from the probabilities ``p``
    (``scratch[src : src + n]``) and the drawn index ``result``: the scan stops at the
    drawn index, except when ``sum(p) = 0`` (no index exceeds the threshold 0; the result
    is 0 and the scan runs to ``n - 1``). With ``sum(p) > 0`` the threshold
    ``(u * total) >> 15`` is below ``total`` (golden/sampler.py), so some index hits."""
    return {"hit": len(p) - 1 if sum(int(v) for v in p) == 0 else int(result)}


#: The cycle formula of every opcode the RTL executes.
CYCLES: dict[Op, Callable[..., int]] = {
    Op.HALT: halt_cycles,
    Op.MATVEC: matvec_cycles,
    Op.ARGMAX: argmax_cycles,
    Op.EMBED: embed_cycles,
    Op.SAMPLE: sample_cycles,
    Op.SIGMOID: activation_cycles,
    Op.SILU: activation_cycles,
    Op.GELU: activation_cycles,
    Op.ADD: eltwise_cycles,
    Op.MUL: eltwise_cycles,
    Op.RMSNORM: norm_cycles,
    Op.LAYERNORM: norm_cycles,
    Op.SHIFTMAX: shiftmax_cycles,
    Op.DOT: dot_cycles,
    Op.DOTT: dot_cycles,
    Op.REPEAT: repeat_cycles,
}

#: The vector unit whose latency each vector formula takes (hw/vector_units.py).


def instr_cycles(ins: Instr, *, lanes: int, latencies: Mapping[str, int] | None = None,
                 weight_format: str = "i2", norm_steps: int = 1, **data) -> int:
    """Cycles of one instruction, from :data:`CYCLES`, passing the formula only the keywords
    it declares: ``lanes``; ``weight_format``; ``work_steps`` (``norm_steps``, the
    Norm unit's, AccelConfig.norm_steps); ``latency`` (``latencies[unit]``, default
    :data:`UNIT_TIMING`); and any of ``data`` (``normalize_steps``, ``s1_abs``, ``hit``,
    ``bound``).

    Raises
    ------
    ValueError for an opcode without a formula; the formula's own ValueError.
    """
    try:
        fn = CYCLES[Op(ins.op)]
    except (KeyError, ValueError):
        raise ValueError(f"no cycle formula for opcode {ins.op!r} (golden.cycles.CYCLES)") from None
    params = inspect.signature(fn).parameters
    kw = {k: v for k, v in data.items() if k in params}
    if "lanes" in params:
        kw["lanes"] = lanes
    if "weight_format" in params:
        kw["weight_format"] = weight_format
    if "work_steps" in params:
        kw["work_steps"] = norm_steps
    if "latency" in params:
        unit = _spec(ins.op).unit       # the registry's unit name
        lat = (latencies or {}).get(unit)
        kw["latency"] = UNIT_TIMING[unit][1] if lat is None else lat
    return fn(ins, **kw)


def program_cycles(program: Sequence[Instr], lanes: int, *,
                   latencies: Mapping[str, int] | None = None,
                   data: Mapping[int, Mapping] | None = None,
                   weight_format: str = "i2", mv_chain: bool = False,
                   norm_steps: int = 1) -> dict:
    """Predicted RTL cycle count (the sequencer's ``cycles``, start to done) of one run of
    ``program``, which must end in HALT.

    Parameters
    ----------
    program : list of Instr, executed straight through up to and including the first
        HALT, every REPEAT unrolled (golden.isa.expand_program; the ISA has no branches)
    lanes : int, the accelerator's L
    weight_format : ``"i2"`` (default) or ``"t3"``, the accelerator's weight format
        (``AccelConfig.weight_format``)
    latencies : optional ``{unit: latency}`` overriding :data:`UNIT_TIMING`
    data : optional ``{instruction index: {keyword: value}}`` (the index in the unrolled
        stream, which is the program's own index where it has no REPEAT) with the data-dependent
        counts of RMSNORM/LAYERNORM (:func:`norm_data`) and SAMPLE (``hit``); an
        instruction without them is counted by its bound

    Returns
    -------
    dict with
      ``total`` (int, cycles: exact where every data-dependent count is given, else the
      upper bound), ``total_min`` (int, the lower bound; equal to ``total`` when exact),
      ``exact`` (bool), ``by_op`` ({opcode name: cycles, issue cycles included}, summing to
      ``total``), ``count`` ({opcode name: instructions}), ``issue`` (the FETCH/DECODE/EXEC
      cycles within ``total``: 2 an instruction issued, an epilogue not, and the one FETCH
      after start, :data:`START_CYCLES`, which ``per_instr[0]`` includes),
      ``per_instr`` (list of cycles, one an instruction of the unrolled stream; an
      epilogue's 0, its MATVEC's entry the pair's; a REPEAT's 2 cycles are in ``by_op``,
      ``count``, ``issue`` and the totals, not in this list). The kind of every figure is
      *modelled*.

    ``mv_chain`` (AccelConfig.mv_chain): a MATVEC right after a MATVEC (its epilogue
    between) costs :func:`chained_matvec_cycles`; refused with a REPEAT in the program.
    ``norm_steps`` (AccelConfig.norm_steps, 1 or 2): the Norm unit's between-pass work
    two bits a cycle (:func:`norm_work_cycles`).

    A tee (golden/isa.py) is followed in time: its RMSNORM's first beat waits until
    :func:`norm_work_cycles` after the tee's last beat (``wait`` of :func:`norm_cycles`),
    counted from the cycles of the instructions between them (a REPEAT word's 2 among them).

    Raises
    ------
    ValueError if the program has no HALT, or as :func:`instr_cycles`.
    """
    data = data or {}
    stream = expand_program(program)
    stop = stream[-1][0] if stream else -1
    repeats = sum(1 for i in list(program)[:stop + 1] if i.op == Op.REPEAT)
    n_prog = len(program)
    words = list(program)
    origin = [j for j, _ in stream]
    program = [i for _, i in stream]
    by_op: dict[str, int] = {}
    count: dict[str, int] = {}
    per_instr: list[int] = []
    total_min = 0
    issued = 0
    exact = True
    epilogue = False          # this instruction is the previous MATVEC's epilogue
    pro_mv = None             # (upper, lower) of the MATVEC of the prologue just counted
    t_hi = t_lo = 0           # the cycle this instruction starts at (upper, lower bound)
    tee = None                # (cycle of a tee's last beat, upper, lower): golden/isa.py tee
    last_mv = None            # (MATVEC, its epilogue's latency, pair) issued last: mv_chain
    pro_last = None
    if mv_chain and repeats:
        raise ValueError("a program with REPEAT is not modelled with mv_chain")
    second = False            # this instruction is a chain's second (golden/isa.py chain)

    def epi_latency(at: int) -> int:
        """The latency of the epilogue at ``at``: its unit's, or its chain's."""
        e = program[at]
        if e.chain and at + 1 < len(program):
            # (a pair's formula has a row's last result written U + 1 cycles after it leaves
            # the requantizer, its twin's; a chained pair's last is the chained op's)
            sec = program[at + 1]
            third = program[at + 2] if sec.chain and at + 2 < len(program) else None
            return chain_latency(e, sec, latencies, third) - bool(e.pair)
        unit = _spec(e.op).unit
        lat = (latencies or {}).get(unit)
        return UNIT_TIMING[unit][1] if lat is None else lat

    def epi_tee(at: int) -> bool:
        """Whether the epilogue at ``at`` (or its chain's second) tees."""
        e = program[at]
        return bool(program[at + 1].tee if e.chain and at + 1 < len(program) else e.tee)

    for pc, ins in enumerate(program):
        op = Op(ins.op)
        d = dict(data.get(pc, {}))
        # The REPEAT words issued since the last instruction (the sequencer runs each once,
        # before its body's first pass, and loops back for free): their cycles are part of
        # the timeline a tee's wait is counted on.
        before = origin[pc - 1] + 1 if pc else 0     # a loop back: origin[pc] < before
        rep_here = sum(repeat_cycles(w) for w in words[before:origin[pc]] if w.op == Op.REPEAT)
        t_hi += rep_here
        t_lo += rep_here
        is_pro_mv = pro_mv is not None and not epilogue
        if epilogue or second:
            hi = lo = 0           # counted in its MATVEC's (its chain's) formula
        elif pro_mv is not None:
            hi, lo = pro_mv       # the MATVEC's share of its prologue's formula
            pro_mv = None
            last_mv = pro_last
        else:
            teed = ins.op == Op.MATVEC and ins.epi and pc + 1 < len(program) and \
                epi_tee(pc + 1)
            if ins.op == Op.MATVEC and ins.epi:
                if pc + 1 >= len(program) or not _spec(program[pc + 1].op).epilogue:
                    raise ValueError(f"instruction {pc} is a MATVEC with an epilogue, but the "
                                     f"next instruction is not an epilogue op")
                d["epilogue_latency"] = epi_latency(pc + 1)
                if program[pc + 1].pair:
                    d["epilogue_pair"] = True
            waits = {}
            if tee is not None and ins.op == Op.RMSNORM and ins.reuse and ins.n:
                # Pass 1 of the tee's RMSNORM: its first beat waits for the unit's work.
                for key, t, a, bnd in (("hi", t_hi, tee[0], "max"), ("lo", t_lo, tee[1], "min")):
                    steps = d.get("normalize_steps")
                    if steps is None:
                        steps = _norm_steps_bound(ins.n, bnd)
                    ready = a + norm_work_cycles(ins.n, normalize_steps=steps,
                                                 work_steps=norm_steps)
                    waits[key] = ready - (t + ISSUE_CYCLES)
                tee = None
            issued += 1
            if ins.op == Op.RMSNORM and ins.pro:
                # A prologue (golden/isa.py): the RMSNORM, its MATVEC (and the MATVEC's
                # epilogue) as one; the RMSNORM's share is what it delays the MATVEC by.
                mv = program[pc + 1] if pc + 1 < len(program) else None
                if mv is None or mv.op != Op.MATVEC:
                    raise ValueError(f"instruction {pc} is a RMSNORM with a prologue, but the "
                                     f"next instruction is not a MATVEC")
                u_lat = None
                pair = False
                if mv.epi:
                    if pc + 2 >= len(program) or not _spec(program[pc + 2].op).epilogue:
                        raise ValueError(f"instruction {pc + 1} is a MATVEC with an epilogue, "
                                         f"but the next instruction is not an epilogue op")
                    u_lat = epi_latency(pc + 2)
                    pair = bool(program[pc + 2].pair)
                n_lat = (latencies or {}).get("norm")
                n_lat = UNIT_TIMING["norm"][1] if n_lat is None else n_lat
                teed = bool(mv.epi) and epi_tee(pc + 2)
                kw = dict(lanes=lanes, weight_format=weight_format, norm_latency=n_lat,
                          epilogue_latency=u_lat, epilogue_pair=pair)
                hi = prologue_cycles(ins, mv, wait=waits.get("hi", 0), **kw)
                lo = prologue_cycles(ins, mv, wait=waits.get("lo", 0), **kw)
                mvc = matvec_cycles(mv, lanes=lanes, weight_format=weight_format,
                                    epilogue_latency=u_lat, epilogue_pair=pair)
                if teed:
                    gap = _matvec_drain_after_last_write(mv, lanes, u_lat)
                    tee = (t_hi + hi - 1 - gap, t_lo + lo - 1 - gap)
                pro_mv = (mvc, mvc)
                pro_last = (mv, u_lat, pair)
                hi, lo = hi - mvc, lo - mvc
            elif mv_chain and last_mv is not None and chain_pair(last_mv[0], ins, lanes):
                if d.get("epilogue_pair"):
                    raise ValueError(f"instruction {pc}: a chained MATVEC (mv_chain) with an "
                                     f"epilogue pair is not modelled")
                hi = lo = chained_matvec_cycles(
                    last_mv[0], ins, lanes=lanes, weight_format=weight_format,
                    prev_epilogue_latency=last_mv[1], prev_pair=last_mv[2],
                    epilogue_latency=d.get("epilogue_latency"))
            elif ins.chain:
                if pc + 1 >= len(program) or Op(program[pc + 1].op) not in (Op.ADD, Op.MUL):
                    raise ValueError(f"instruction {pc} sets chain, but the next instruction "
                                     f"is not an ADD or MUL")
                hi = lo = chain_cycles(ins, program[pc + 1], latencies=latencies)
                teed = bool(program[pc + 1].tee)
            else:
                hi = instr_cycles(ins, lanes=lanes, latencies=latencies,
                                  weight_format=weight_format, norm_steps=norm_steps, **d, **(
                                      {"wait": waits["hi"]} if waits else {}))
                lo = instr_cycles(ins, lanes=lanes, latencies=latencies,
                                  weight_format=weight_format, norm_steps=norm_steps,
                                  **{**d, "bound": "min"}, **(
                                      {"wait": waits["lo"]} if waits else {}))
            if ins.tee or teed and not (ins.op == Op.RMSNORM and ins.pro):
                # The tee's last beat: the cycle its last result is written (a MATVEC's
                # epilogue may write it before the engine drains its padding lanes).
                gap = 0
                if teed and ins.op == Op.MATVEC:
                    gap = _matvec_drain_after_last_write(ins, lanes, d["epilogue_latency"])
                tee = (t_hi + hi - 1 - gap, t_lo + lo - 1 - gap)
        t_hi += hi
        t_lo += lo
        if not epilogue and not is_pro_mv:
            last_mv = ((ins, d.get("epilogue_latency"), bool(d.get("epilogue_pair")))
                       if ins.op == Op.MATVEC else None)
        second = bool(ins.chain)
        epilogue = ins.op == Op.MATVEC and bool(ins.epi)
        if lo != hi:
            exact = False
        per_instr.append(hi)
        total_min += lo
        by_op[op.name] = by_op.get(op.name, 0) + hi
        count[op.name] = count.get(op.name, 0) + 1
        if op == Op.HALT:
            break
    else:
        raise ValueError(f"the program of {n_prog} instructions has no HALT, so the "
                         f"RTL never finishes it")
    if per_instr:       # the FETCH after start, in the first instruction's count
        per_instr[0] += START_CYCLES
        total_min += START_CYCLES
        first = Op(program[0].op).name
        by_op[first] = by_op.get(first, 0) + START_CYCLES
        issued_start = START_CYCLES
    else:
        issued_start = 0
    if repeats:
        by_op["REPEAT"] = repeat_cycles(Instr(Op.REPEAT)) * repeats
        count["REPEAT"] = repeats
    rep = ISSUE_CYCLES * repeats
    return {"total": sum(per_instr) + rep, "total_min": total_min + rep, "exact": exact,
            "by_op": by_op, "count": count,
            "issue": ISSUE_CYCLES * (issued + repeats) + issued_start,
            "per_instr": per_instr}
