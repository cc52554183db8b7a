"""One formal harness a stream unit: the unit at small parameters, its environment (the
stream contract assumed on its inputs, a free ``ready`` on its outputs), and its
properties (the contract asserted on its outputs, nothing dropped or duplicated, no
overflow, bounded liveness).

Each :class:`Task` builds its harness, names the mode (``prove``: k-induction, a proof
for all time; ``bmc``: bounded model checking from reset, a proof for the stated number of
cycles), the depth, and whether it is fast enough for ``make test``. Properties on a
unit's internal signals are *induction invariants* (they are proved too, and only make
the induction close); every property of the contract is on ports.

Parameters are small so the solver finishes in seconds (lanes 2..4, fan-in 8, depths 16);
the RTL is the same generator at every size, so a violation would show at small sizes
too (every rule here is about one element, one tile or one frame at a time).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Module, Mux, Signal,
                          Value, signed, unsigned)
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ternac.golden.widths import ACT_MAX, M_BITS, S_BITS, WIDE_MAX, acc_width

from .props import (AnyConst, AnySeq, Harness, assert_source, assume_source, counter,
                    drive_sink, elaborate_tree, fsm_state, fsm_valid, past, probe, probe_all,
                    transfers)

__all__ = ["Task", "TASKS", "task"]


@dataclasses.dataclass(frozen=True)
class Task:
    """A formal task: ``build(**variant)`` returns the harness (``variant`` selects a
    deliberately broken unit, for the tests that show a property can fail)."""
    name: str
    unit: str
    mode: str
    depth: int
    fast: bool
    properties: tuple
    build: Callable
    comb: Callable | None = None     # () -> (unit, [(ready, valid), ...]) structural check


TASKS: dict[str, Task] = {}


def task(name, *, unit, mode, depth, fast, properties, comb=None):
    def register(build):
        TASKS[name] = Task(name=name, unit=unit, mode=mode, depth=depth, fast=fast,
                           properties=tuple(properties), build=build, comb=comb)
        return build
    return register



class PayloadGlitch(wiring.Component):
    """A deliberately broken unit, for the tests that show the contract can fail: ``unit``
    with every port passed through, except that bit 0 of the payload of its output stream
    ``port`` flips every other cycle while the sink stalls it."""

    def __init__(self, unit, tree, *, port: str = "o"):
        self._unit, self._tree, self._port = unit, tree, port
        super().__init__(unit.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self._tree
        flip = Signal()
        m.d.sync += flip.eq(~flip)
        glitch_port = getattr(self, self._port)
        for path, member, mine in self.signature.flatten(self):
            theirs = self._unit
            for p in path:
                theirs = theirs[p] if isinstance(p, int) else getattr(theirs, p)
            mine, theirs = Value.cast(mine), Value.cast(theirs)
            if member.flow == In:
                m.d.comb += theirs.eq(mine)
            elif path == (self._port, "payload"):
                stalled = glitch_port.valid & ~glitch_port.ready
                m.d.comb += mine.eq(theirs ^ (flip & stalled))
            else:
                m.d.comb += mine.eq(theirs)
        return m


def _instantiate(m, unit, broken, *, platform=None, port="o"):
    """Add ``unit`` (elaborated, so its internals can be probed) to ``m``; with
    ``broken="unstable"`` behind a :class:`PayloadGlitch`. Returns (ports, tree).
    ``platform="formal"`` turns on the invariants Amaranth's own FIFOs carry."""
    tree = elaborate_tree(unit, platform)
    if broken is None:
        m.submodules.dut = tree
        return unit, tree
    if broken != "unstable":
        raise ValueError(f"unknown broken variant {broken!r}")
    wrapper = PayloadGlitch(unit, tree, port=port)
    m.submodules.dut = wrapper
    return wrapper, tree


# --- Requantizer ---------------------------------------------------------------------------

REQ_ACC_BITS = acc_width(16)        # 12 bits: fan-in 16


def _requant_ref(acc, m, s, relu, wide):
    """golden.numerics.requantize (and ReLU, and the WIDE range) in exact arithmetic:
    ``clamp((acc*m + 2^(s-1)) >> s, lo, hi)``; Amaranth widens every operator, so nothing
    here can wrap."""
    prod = acc * m
    rnd = Mux(s == 0, 0, Const(1, 1) << (s - 1)[:len(s)])
    shifted = (prod + rnd) >> s
    hi = Mux(wide, WIDE_MAX, ACT_MAX)
    lo = Mux(relu, 0, -hi)
    return Mux(shifted > hi, hi, Mux(shifted < lo, lo, shifted))


def _requant_comb():
    from ternac.hw.requant import Requantizer
    return Requantizer(acc_bits=REQ_ACC_BITS, tag_bits=3), [("o__ready", "o__valid")]


def _requant_stages(t):
    """The requantizer's pipeline stages, input to output: (valid, tag) of stage 1 (the
    product), then those the Pipe helper names ``rq_valid<n>``/``rq_tag<n>``."""
    stages = [(probe(t, "v1"), probe(t, "tag1"))]
    stages += list(zip(probe_all(t, r"rq_valid\d+"), probe_all(t, r"rq_tag\d+")))
    return stages


def _requant_env(m, dut):
    cfg = {"m": AnyConst(M_BITS), "s": AnyConst(S_BITS), "relu": AnyConst(1),
           "wide": AnyConst(1)}
    for k, v in cfg.items():     # config ports held while elements flow (docstring)
        m.d.comb += getattr(dut, k).eq(v)
    assume_source(m, dut.i, name="i")
    drive_sink(m, dut.o, name="o")
    return cfg


@task("requant", unit="Requantizer (hw/requant.py)", mode="prove", depth=8, fast=True,
      comb=_requant_comb, properties=[
          "o: valid held until the transfer; payload stable while stalled",
          "o.valid has no combinational path from o.ready (structural)",
          "1:1, in order, none dropped or duplicated (sequence tags; in flight <= stages + 1)",
      ])
def requant_harness(*, broken: str | None = None):
    from ternac.hw.requant import Requantizer

    tag_bits = 3

    def build(m):
        dut, t = _instantiate(m, Requantizer(acc_bits=REQ_ACC_BITS, tag_bits=tag_bits), broken)
        _requant_env(m, dut)
        assert_source(m, dut.o, name="o")
        stages = _requant_stages(t)
        fire_i, fire_o = transfers(dut.i), transfers(dut.o)
        n_in = counter(m, fire_i, bits=tag_bits, name="n_in")
        n_out = counter(m, fire_o, bits=tag_bits, name="n_out")
        inflight = counter(m, fire_i, dec=fire_o, bits=tag_bits, name="inflight")
        m.d.comb += Assume(dut.i.payload.tag == n_in, "i: the environment numbers elements")
        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.payload.tag == n_out,
                               "o: in order, none dropped or duplicated")
        m.d.comb += Assert(inflight <= len(stages) + 1, "in flight at most stages + 1")
        m.d.comb += Cover(transfers(dut.o) & (inflight == len(stages) + 1))
        # Induction invariants (internal): the in-flight count is the number of valid
        # stages, and the stages hold consecutive tags.
        m.d.comb += Assert(inflight == sum(v for v, _ in stages) + dut.o.valid,
                           "inv: in-flight count")
        m.d.comb += Assert(n_in == (n_out + inflight)[:tag_bits], "inv: counters agree")
        ahead = dut.o.valid
        for v, tag in reversed(stages):
            with m.If(v):
                m.d.comb += Assert(tag == (n_out + ahead)[:tag_bits], "inv: stage tags")
            ahead = ahead + v
    return Harness(build, "requant")


@task("requant_exact", unit="Requantizer (hw/requant.py)", mode="bmc", depth=10, fast=True,
      properties=[
          "y == clamp((prod + 2^(s-1)) >> s) in unbounded arithmetic (ReLU, int8 / int16 "
          "WIDE bounds) for every acc of acc_bits and every m, s, relu, wide, under "
          "stalls: no rounding or saturation overflow",
          "product register as wide as every acc*m (acc_bits + M_BITS + 1 bits, width check "
          "on the elaborated RTL)",
      ])
def requant_exact_harness(*, broken: str | None = None):
    from ternac.hw.requant import Requantizer

    def build(m):
        dut, t = _instantiate(m, Requantizer(acc_bits=REQ_ACC_BITS, tag_bits=1), broken)
        cfg = _requant_env(m, dut)
        prod = probe(t, "prod")
        if len(prod) < REQ_ACC_BITS + M_BITS + 1:
            raise AssertionError(f"the requantizer's product register has {len(prod)} bits, "
                                 f"fewer than acc_bits + M_BITS + 1 = "
                                 f"{REQ_ACC_BITS + M_BITS + 1}: acc * m can overflow it")
        # The product of stage 1, carried at the ports' pace (every stage advances on
        # i.ready) to the output, where y must equal the rule in unbounded arithmetic.
        # (A port-level shadow of acc times m would make the solver prove two multipliers
        # equal, which SAT does badly; the product's own width is checked above.)
        sh = prod
        for k in range(len(_requant_stages(t))):
            nxt = Signal(signed(len(prod)), name=f"sh_prod{k + 2}")
            with m.If(dut.i.ready):
                m.d.sync += nxt.eq(sh)
            sh = nxt
        ref = _requant_ref(sh, 1, cfg["s"], cfg["relu"], cfg["wide"])
        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.payload.y == ref,
                               "o: y equals the requantization rule (no overflow)")
        m.d.comb += Cover(dut.o.valid & (dut.o.payload.y == -127))
    return Harness(build, "requant_exact")


# --- TernaryEngine -------------------------------------------------------------------------

ENG_LANES = 2
ENG_FAN_IN = 8                      # K: a tile has at most K beats


def _engine_comb():
    from ternac.hw.engine import TernaryEngine
    return (TernaryEngine(lanes=ENG_LANES, acc_bits=acc_width(ENG_FAN_IN)),
            [("o__ready", "o__valid")])


@task("engine", unit="TernaryEngine (hw/engine.py)", mode="prove", depth=12, fast=True,
      comb=_engine_comb, properties=[
          "o: valid held until the transfer; payload stable while stalled",
          "o.valid has no combinational path from o.ready (structural)",
          "L outputs a tile, lanes in order, last on lane L-1; no tile dropped or duplicated",
          "every accumulator register equals the exact (wide) sum for every tile of up to "
          "K beats of x in [-127, 127]: no overflow at acc_width(K) bits",
          "every output equals the exact dot product of its lane",
      ])
def engine_harness(*, broken: str | None = None, lanes: int = ENG_LANES,
                   fan_in: int = ENG_FAN_IN):
    """``broken="narrow"``: accumulators one bit narrower than acc_width(K), which must
    overflow; ``broken="unstable"``: the output payload glitches while stalled."""
    from ternac.hw.engine import TernaryEngine

    L, K = lanes, fan_in
    W = acc_width(K) - (1 if broken == "narrow" else 0)
    WIDE = W + 8

    def build(m):
        dut, t = _instantiate(m, TernaryEngine(lanes=L, acc_bits=W),
                              None if broken == "narrow" else broken)
        assume_source(m, dut.i, name="i")
        drive_sink(m, dut.o, name="o")
        assert_source(m, dut.o, name="o")
        beat = dut.i.payload
        fire = transfers(dut.i)
        m.d.comb += Assume((beat.x != -128) | ~dut.i.valid, "i: x in [-127, 127]")
        nb = Signal(range(K + 1), name="beats")          # beats of the tile so far
        with m.If(dut.i.valid & (nb == K - 1)):
            m.d.comb += Assume(beat.last, "i: a tile has at most K beats")
        with m.If(fire):
            m.d.sync += nb.eq(Mux(beat.last, 0, nb + 1))

        # Shadow accumulators in a width that cannot overflow, and the expected results of
        # the finished tiles not yet drained, oldest first (q0: the one on ``o``; q1: one
        # that ended while q0 drains, waiting in the accumulators).
        sh = [Signal(signed(WIDE), name=f"sh{l}") for l in range(L)]
        q0 = [Signal(signed(WIDE), name=f"exp{l}") for l in range(L)]
        q1 = [Signal(signed(WIDE), name=f"next{l}") for l in range(L)]
        pop = transfers(dut.o) & dut.o.payload.last
        tiles = counter(m, fire & beat.last, dec=pop, bits=2, name="tiles_pending")
        for l in range(L):
            term = Mux(beat.nz[l], Mux(beat.neg[l], -beat.x, beat.x), 0)
            new = sh[l] + term
            with m.If(fire):
                m.d.sync += sh[l].eq(Mux(beat.last, 0, new))
            with m.If(fire & beat.last):
                with m.If((tiles == 0) | ((tiles == 1) & pop)):
                    m.d.sync += q0[l].eq(new)
                with m.Else():
                    m.d.sync += q1[l].eq(new)
                    with m.If(pop):
                        m.d.sync += q0[l].eq(q1[l])
            with m.Elif(pop):
                m.d.sync += q0[l].eq(q1[l])

        oi = Signal(range(L), name="out_lane")
        with m.If(transfers(dut.o)):
            m.d.sync += oi.eq(Mux(oi == L - 1, 0, oi + 1))
        q0_arr = Array(q0)
        with m.If(dut.o.valid):
            m.d.comb += [
                Assert(dut.o.payload.acc == q0_arr[oi], "o: result equals the exact sum"),
                Assert(dut.o.payload.last == (oi == L - 1), "o: last on lane L-1"),
                Assert(tiles >= 1, "o: results only of an accepted tile"),
            ]
        m.d.comb += Assert(tiles <= 2, "no tile dropped or duplicated")
        stalled = past(m, dut.o.valid & ~dut.o.ready, name="cover_stalled")
        m.d.comb += Cover(transfers(dut.o) & dut.o.payload.last & stalled
                          & (dut.o.payload.acc != 0))

        # No overflow: within a tile every accumulator register holds the exact partial
        # sum (its value, read as a signed W-bit number, equals the wide shadow); after
        # the tile's last beat, the exact result until the shift register takes it.
        accs = probe_all(t, r"acc\d+")
        first, held = probe(t, "first"), probe(t, "held")
        newest = [Mux(tiles == 2, q1[l], q0[l]) for l in range(L)]
        for l in range(L):
            with m.If(nb != 0):
                m.d.comb += Assert(accs[l] == sh[l],
                                   f"acc{l}: no overflow (equals the exact sum)")
            with m.If(held):
                m.d.comb += Assert(accs[l] == newest[l],
                                   f"acc{l}: holds the exact sum of the finished tile")
        # Induction invariants: a tile's partial sums are bounded by its beats; the tile
        # in the shift register (if any) is q0, its remaining results in order.
        for l in range(L):
            m.d.comb += Assert((sh[l] <= ACT_MAX * nb) & (sh[l] >= -ACT_MAX * nb),
                               "inv: partial sum bounded")
        m.d.comb += Assert(nb < K, "inv: beat count")
        m.d.comb += Assert(first == (nb == 0), "inv: first beat of a tile")
        m.d.comb += Assert(~held | ((nb == 0) & (tiles >= 1)), "inv: held tile")
        draining = Signal(2, name="draining")             # tiles in the shift register
        m.d.comb += draining.eq(tiles - held)
        m.d.comb += Assert(draining <= 1, "inv: one tile in the shift register")
        pending = probe(t, "pending")
        outs = probe_all(t, r"out\d+")
        m.d.comb += Assert(pending == Mux(draining == 1, L - oi, 0), "inv: pending results")
        m.d.comb += Assert((draining == 1) | (oi == 0), "inv: no lane index between tiles")
        for j in range(L):
            with m.If(j < pending):
                m.d.comb += Assert(outs[j] == q0_arr[(L - pending + j)[:len(oi)]],
                                   "inv: shift register holds the expected results")
    return Harness(build, "engine")


# --- PackedWeightStreamer (I2) -------------------------------------------------------------

STR_LANES = 2                       # 4-bit words
STR_DEPTH = 16                      # the word address is the data (4 bits)


def _streamer_comb():
    from ternac.hw.streamer import PackedWeightStreamer
    return (PackedWeightStreamer(lanes=STR_LANES, depth=STR_DEPTH),
            [("o__ready", "o__valid")])


def _streamer_env(m, dut):
    """Commands under the contract, a sink with a free ready, and a weight memory of one
    cycle read latency whose word at address ``a`` is ``a`` itself (so every output word
    names the address it was read from)."""
    assume_source(m, dut.cmd, name="cmd")
    drive_sink(m, dut.o, name="o")
    m.d.sync += dut.mem_rdata.eq(dut.mem_raddr)


@task("streamer_i2", unit="PackedWeightStreamer i2 (hw/streamer.py)", mode="prove", depth=8,
      fast=True, comb=_streamer_comb, properties=[
          "o: valid held until the transfer; payload stable while stalled",
          "o.valid has no combinational path from o.ready (structural)",
          "no word dropped: a read is issued only when the memory's word moves on, and a "
          "held word stays on the memory's output (the same address read again)",
          "words out == words commanded (outstanding == remaining + buffered)",
          "idle only with nothing outstanding",
      ])
def streamer_harness(*, broken: str | None = None):
    from ternac.hw.streamer import PackedWeightStreamer

    def build(m):
        dut, t = _instantiate(m, PackedWeightStreamer(lanes=STR_LANES, depth=STR_DEPTH),
                              broken, platform="formal")
        _streamer_env(m, dut)
        assert_source(m, dut.o, name="o")
        outstanding = Signal(24, name="outstanding")
        m.d.sync += outstanding.eq(
            outstanding + Mux(transfers(dut.cmd), dut.cmd.payload.count, 0)
            - transfers(dut.o))
        remaining = probe(t, "remaining")
        s_valid, f_valid = probe(t, "s_valid"), probe(t, "f_valid")
        issue = probe(t, "issue")
        # The address each word on the memory's output was read from (the memory returns
        # its address): it must stay there while the word is held.
        s_addr = Signal(len(dut.mem_raddr), name="s_addr")
        with m.If(issue):
            m.d.sync += s_addr.eq(dut.mem_raddr)
        m.d.comb += [
            Assert(~(issue & s_valid & f_valid), "no word dropped: the memory's word moves on"),
            Assert(~s_valid | (dut.mem_rdata == s_addr),
                   "no word dropped: a held word stays on the memory's output"),
            Assert(outstanding == remaining + s_valid + f_valid,
                   "words out == words commanded"),
        ]
        with m.If(dut.idle):
            m.d.comb += Assert(outstanding == 0, "idle only with nothing outstanding")
        m.d.comb += Cover(transfers(dut.o) & dut.o.payload.last & s_valid & f_valid)
        rem_zero, rem_one = probe(t, "rem_zero"), probe(t, "rem_one")
        m.d.comb += Assert((rem_zero == (remaining == 0)) & (rem_one == (remaining == 1)),
                           "inv: the remaining == 0 / == 1 registers")
    return Harness(build, "streamer_i2")


@task("streamer_i2_order", unit="PackedWeightStreamer i2 (hw/streamer.py)", mode="bmc",
      depth=14, fast=False, properties=[
          "every output word is the next word of the commands in order (address as data): "
          "none dropped, duplicated or reordered, across command edges and stalls "
          "(commands of 0..4 words at any base)",
          "last on exactly the final word of each command",
      ])
def streamer_order_harness(*, broken: str | None = None):
    from ternac.hw.streamer import PackedWeightStreamer

    # One lane (2-bit words) over a 4-word memory: the address as data modulo 4 still tells
    # consecutive words apart, so a dropped, repeated or reordered word shows.
    Q, CMAX, LANES, DEPTH = 8, 4, 1, 4
    AB = 2

    def build(m):
        dut, t = _instantiate(m, PackedWeightStreamer(lanes=LANES, depth=DEPTH), broken)
        _streamer_env(m, dut)
        # Commands of 0..CMAX words (any base): enough for every tile-edge case of a
        # 3-word FIFO (words of several commands buffered at once), small for the solver.
        m.d.comb += Assume(dut.cmd.payload.count <= CMAX, "cmd: at most CMAX words")
        # Reference: a queue of accepted commands (count >= 1), the offset in its head; the
        # address is compared modulo the 4-word memory, so 2 bits of base suffice.
        qbase = Array(Signal(AB, name=f"q_base{j}") for j in range(Q))
        qcount = Array(Signal(range(CMAX + 1), name=f"q_count{j}") for j in range(Q))
        head = Signal(range(Q), name="q_head")
        tail = Signal(range(Q), name="q_tail")
        used = Signal(range(Q + 1), name="q_used")
        off = Signal(range(CMAX + 1), name="q_off")
        push = transfers(dut.cmd) & (dut.cmd.payload.count != 0)
        with m.If(push):
            m.d.sync += [qbase[tail].eq(dut.cmd.payload.base[:AB]),
                         qcount[tail].eq(dut.cmd.payload.count), tail.eq(tail + 1)]
        exp_addr = (qbase[head] + off)[:AB]
        exp_last = off == qcount[head] - 1
        pop = transfers(dut.o) & exp_last
        with m.If(transfers(dut.o)):
            m.d.sync += off.eq(Mux(exp_last, 0, off + 1))
            with m.If(exp_last):
                m.d.sync += head.eq(head + 1)
        m.d.sync += used.eq(used + push - pop)
        m.d.comb += Assert(used < Q, "reference queue never full")
        word = Signal(2 * LANES, name="o_word")
        for l in range(LANES):
            m.d.comb += [word[2 * l].eq(dut.o.payload.nz[l]),
                         word[2 * l + 1].eq(dut.o.payload.neg[l])]
        with m.If(dut.o.valid):
            m.d.comb += [
                Assert(used != 0, "o: no word that was not commanded"),
                Assert(word == exp_addr, "o: the next commanded word, in order"),
                Assert(dut.o.payload.last == exp_last, "o: last on the final word"),
            ]
    return Harness(build, "streamer_i2_order")


# --- Vector units: one element a cycle, the whole pipeline on one clock enable ------------

def _config(m, dut, names):
    """Config ports held constant while elements flow (each unit's docstring): AnyConst."""
    for n in names:
        port = Value.cast(getattr(dut, n))
        m.d.comb += port.eq(AnyConst(len(port)))


def _pipeline_properties(m, dut, t, valid_regs, *, name):
    """1:1 pipeline: contract on ``o``; in flight = accepted - emitted equals the number of
    valid pipeline stages (so an accepted element is never lost or doubled: it holds one
    valid stage until it leaves) and is at most the latency + 1."""
    drive_sink(m, dut.o, name="o")
    assert_source(m, dut.o, name="o")
    depth = len(valid_regs) + 1
    inflight = counter(m, transfers(dut.i), dec=transfers(dut.o), bits=depth.bit_length() + 1,
                       name="inflight")
    m.d.comb += [
        Assert(inflight == sum(valid_regs) + dut.o.valid,
               "1:1: every accepted element holds one stage until it leaves"),
        Assert(inflight <= depth, f"at most {depth} elements in flight"),
        Cover(transfers(dut.o) & (inflight == depth)),
    ]


def _vec_comb(make):
    def comb():
        return make(), [("o__ready", "o__valid")]
    return comb


def _eltwise():
    from ternac.hw.eltwise import Eltwise
    return Eltwise()


def _activation():
    from ternac.hw.activation import Activation
    return Activation()


_PIPE_PROPS = [
    "o: valid held until the transfer; payload stable while stalled",
    "o.valid has no combinational path from o.ready (structural)",
    "1:1, none dropped or duplicated (in flight == valid stages <= latency + 1)",
]


@task("eltwise", unit="Eltwise (hw/eltwise.py)", mode="prove", depth=4, fast=True,
      comb=_vec_comb(_eltwise), properties=_PIPE_PROPS)
def eltwise_harness(*, broken: str | None = None):
    def build(m):
        dut, t = _instantiate(m, _eltwise(), broken)
        _config(m, dut, ["m", "s", "m2", "s2", "mode", "neg", "wide"])
        assume_source(m, dut.i, name="i")
        _pipeline_properties(m, dut, t, probe_all(t, r"elt_v\d+"), name="eltwise")
    return Harness(build, "eltwise")


@task("activation", unit="Activation (hw/activation.py)", mode="prove", depth=4, fast=True,
      comb=_vec_comb(_activation), properties=_PIPE_PROPS)
def activation_harness(*, broken: str | None = None):
    def build(m):
        dut, t = _instantiate(m, _activation(), broken)
        _config(m, dut, ["m", "s", "m2", "s2", "mode", "neg", "wide"])
        assume_source(m, dut.i, name="i")
        _pipeline_properties(m, dut, t, probe_all(t, r"act_v\d+"), name="activation")
    return Harness(build, "activation")


# --- UART ----------------------------------------------------------------------------------

UART_DIV = 4                        # clock cycles a bit (the smallest the UART accepts)


def _uart_rx_comb():
    from ternac.hw.uart import UARTRx
    return UARTRx(divisor=UART_DIV), [("o__ready", "o__valid")]


@task("uart_rx", unit="UARTRx (hw/uart.py)", mode="prove", depth=8, fast=True,
      comb=_uart_rx_comb, properties=[
          "o: valid held until the transfer; payload stable while stalled",
          "o.valid has no combinational path from o.ready (structural)",
          "every frame with a good stop bit is delivered or flagged: "
          "frames == taken + waiting + overrun pulses (none dropped silently, none doubled)",
      ])
def uart_rx_harness(*, broken: str | None = None):
    from ternac.hw.uart import UARTRx

    def build(m):
        dut, t = _instantiate(m, UARTRx(divisor=UART_DIV), broken)
        m.d.comb += dut.rx.eq(AnySeq(1))            # any line activity, glitches included
        drive_sink(m, dut.o, name="o")
        assert_source(m, dut.o, name="o")
        rx_sync = [s for s in probe_all(t, "rx") if s is not dut.rx]
        if len(rx_sync) != 1:
            raise LookupError("UARTRx: expected one synchronised rx signal")
        timer = probe(t, "timer")
        frame_ok = fsm_state(t, "STOP") & (timer == 0) & rx_sync[0]
        frames = counter(m, frame_ok, bits=8, name="frames")
        taken = counter(m, transfers(dut.o), bits=8, name="taken")
        flagged = counter(m, dut.overrun, bits=8, name="overruns")
        m.d.comb += Assert(frames == (taken + dut.o.valid + flagged)[:8],
                           "every good frame delivered or flagged")
        m.d.comb += Cover(transfers(dut.o) & (dut.o.payload == 0xA5))
    return Harness(build, "uart_rx")


UART_RX_IDLE = 10 * UART_DIV + 3    # cycles of a high line after which the receiver idles


@task("uart_rx_idle", unit="UARTRx (hw/uart.py)", mode="prove", depth=UART_RX_IDLE + 4,
      fast=True, properties=[
          f"bounded liveness: after any line activity, {UART_RX_IDLE} cycles of an idle "
          "(high) line put the receiver in IDLE (glitches, breaks and framing errors "
          "included)",
      ])
def uart_rx_idle_harness(*, broken: str | None = None):
    from ternac.hw.uart import UARTRx

    def build(m):
        dut, t = _instantiate(m, UARTRx(divisor=UART_DIV), broken)
        line = AnySeq(1)
        m.d.comb += dut.rx.eq(line)
        m.d.comb += dut.o.ready.eq(AnySeq(1))
        high = Signal(range(UART_RX_IDLE + 1), name="line_high_for")
        with m.If(~line):
            m.d.sync += high.eq(0)
        with m.Elif(high != UART_RX_IDLE):
            m.d.sync += high.eq(high + 1)
        with m.If(high == UART_RX_IDLE):
            m.d.comb += Assert(fsm_state(t, "IDLE"), "receiver idle after an idle line")
        m.d.comb += Assert(fsm_valid(t), "inv: FSM state is a state")
    return Harness(build, "uart_rx_idle")


UART_TX_FRAME = 10 * UART_DIV


@task("uart_tx", unit="UARTTx (hw/uart.py)", mode="prove", depth=UART_TX_FRAME + 6,
      fast=True, properties=[
          "every accepted byte is sent as start bit 0, its 8 data bits LSB first and stop "
          f"bit 1, {UART_DIV} cycles each, starting 2 cycles after the transfer",
          f"ready again {UART_TX_FRAME} cycles after a transfer (bounded liveness; back to "
          "back frames have no idle bit); "
          "the line idles high",
      ])
def uart_tx_harness(*, broken: str | None = None):
    from ternac.hw.uart import UARTTx

    def build(m):
        dut, t = _instantiate(m, UARTTx(divisor=UART_DIV), broken)
        assume_source(m, dut.i, name="i")
        fire = transfers(dut.i)
        byte = Signal(8, name="sent_byte")
        since = Signal(range(UART_TX_FRAME + 3), name="since_taken")
        busy = Signal(name="frame_on")
        with m.If(fire):
            m.d.sync += [byte.eq(dut.i.payload), since.eq(0), busy.eq(1)]
        with m.Elif(busy & (since != UART_TX_FRAME + 1)):
            m.d.sync += since.eq(since + 1)
        with m.Elif(busy):
            m.d.sync += busy.eq(0)
        frame = Cat(Const(0, 1), byte, Const(1, 1))
        # ``since`` counts cycles after the transfer cycle, from 0: bit b is on the line
        # from since = 1 + b*DIV to 1 + (b+1)*DIV - 1 (the line register adds a cycle).
        with m.If(busy & (since >= 1) & (since <= UART_TX_FRAME)):
            idx = ((since - 1) >> (UART_DIV.bit_length() - 1))[:4]
            m.d.comb += Assert(dut.tx == Array(frame)[idx], "tx: the frame bit of the byte")
        with m.If(busy & (since < UART_TX_FRAME)):
            m.d.comb += Assert(~dut.i.ready, "not ready while a frame is sent")
        with m.If(busy & (since == UART_TX_FRAME)):
            m.d.comb += Assert(dut.i.ready, "ready again after the frame")
        with m.If(~busy):
            m.d.comb += Assert(dut.tx & dut.i.ready, "idle: line high and ready")
        # induction invariant: the state counter of the transmitter against the reference
        bits_left, timer = probe(t, "bits_left"), probe(t, "timer")
        m.d.comb += Assert((bits_left == 0) | busy, "inv: busy only in a frame")
        shreg = probe(t, "shreg")
        m.d.comb += Assert(since <= UART_TX_FRAME + 1, "inv: frame time")
        with m.If(busy & (since <= UART_TX_FRAME)):
            sent = (10 - bits_left)[:4]
            m.d.comb += Assert((bits_left == 0) |
                               (shreg == (Cat(frame, Const(0x3FF, 10)) >> sent)[:10]),
                               "inv: shift register holds the bits still to send")
            m.d.comb += [
                Assert(bits_left == 10 - (since >> (UART_DIV.bit_length() - 1)),
                       "inv: bits left"),
                Assert((bits_left == 0) | (timer == UART_DIV - 1 - (since & (UART_DIV - 1))),
                       "inv: bit timer"),
            ]
    return Harness(build, "uart_tx")


# --- Host link frame parser ----------------------------------------------------------------

HL_TIMEOUT = 16                     # the smallest timeout_cycles the link accepts
HL_MAX_WORDS = 1
HL_HOST_DONE = 4                    # the modelled accelerator finishes a run within this
HL_TX_STALL = 1                     # the UART transmitter stalls at most this long a byte
#: Cycles of a quiet receive line after which the link must be back hunting: the timeout,
#: the checks, a run, and the longest response (16 bytes) with every byte stalled.
HL_BOUND = HL_TIMEOUT + 2 + 4 * 4 + 3 + HL_HOST_DONE + 16 * (HL_TX_STALL + 1) + 8


def _hostlink_comb():
    from ternac.hw.hostlink import Hostlink
    return (Hostlink(limits={0: 8, 1: 8, 2: 8, 3: 8}, config_hash=0x5EC0FFEE,
                     timeout_cycles=HL_TIMEOUT, max_words=HL_MAX_WORDS),
            [("tx__ready", "tx__valid")])


def _hostlink_env(m, dut):
    """Bytes from the UART under the contract (any values, any gaps), a fair transmitter,
    and an accelerator that raises ``done`` within HL_HOST_DONE cycles of ``start``."""
    assume_source(m, dut.rx, name="rx")
    drive_sink(m, dut.tx, name="tx", max_stall=HL_TX_STALL)
    host = dut.host
    busy, done = Signal(name="acc_busy"), Signal(name="acc_done")
    left = Signal(range(HL_HOST_DONE + 1), name="acc_left")
    finish = AnySeq(1)
    with m.If(host.start):
        m.d.sync += [busy.eq(1), done.eq(0), left.eq(HL_HOST_DONE)]
    with m.Elif(busy & (finish | (left == 0))):
        m.d.sync += [busy.eq(0), done.eq(1)]
    with m.Elif(busy):
        m.d.sync += left.eq(left - 1)
    m.d.comb += [host.busy.eq(busy), host.done.eq(done), host.error.eq(AnySeq(1)),
                 host.rdata.eq(AnySeq(32)), host.result.eq(AnySeq(32)),
                 host.cycles.eq(AnySeq(32)),
                 dut.rx_overrun.eq(AnySeq(1)), dut.rx_framing_error.eq(AnySeq(1))]
    return busy, done


@task("hostlink_tx", unit="Hostlink frame parser (hw/hostlink.py)", mode="prove", depth=4,
      fast=True, comb=_hostlink_comb, properties=[
          "tx: valid held until the transfer; payload stable while stalled",
          "tx.valid has no combinational path from tx.ready (structural)",
      ])
def hostlink_tx_harness(*, broken: str | None = None):
    def build(m):
        unit, _pairs = _hostlink_comb()
        dut, t = _instantiate(m, unit, broken, port="tx")
        _hostlink_env(m, dut)
        assert_source(m, dut.tx, name="tx")
    return Harness(build, "hostlink_tx")


@task("hostlink_idle", unit="Hostlink frame parser (hw/hostlink.py)", mode="bmc",
      depth=HL_BOUND + 24, fast=False, properties=[
          f"bounded liveness: after any byte sequence, {HL_BOUND} cycles without a byte put "
          "the parser back in HUNT (partial frames time out, every request is answered)",
          "tx: valid held until the transfer; payload stable while stalled",
      ])
def hostlink_idle_harness(*, broken: str | None = None):
    def build(m):
        unit, _pairs = _hostlink_comb()
        dut, t = _instantiate(m, unit, broken, port="tx")
        _hostlink_env(m, dut)
        assert_source(m, dut.tx, name="tx")
        quiet = Signal(range(HL_BOUND + 1), name="rx_quiet_for")
        with m.If(dut.rx.valid):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != HL_BOUND):
            m.d.sync += quiet.eq(quiet + 1)
        with m.If(quiet == HL_BOUND):
            m.d.comb += Assert(fsm_state(t, "HUNT"), "back in HUNT after a quiet line")
        m.d.comb += Cover(fsm_state(t, "R_CRC1") & dut.tx.ready)
    return Harness(build, "hostlink_idle")


# --- Sequencer -----------------------------------------------------------------------------

SEQ_LANES = 4
SEQ_DEPTH = 16
SEQ_N_MAX = 8                       # output length of an instruction (n), at most
SEQ_K_MAX = 4                       # fan-in / row length (k), at most
#: Cycles from leaving DECODE (or IDLE) to the next DECODE (or IDLE) that every instruction
#: of n <= SEQ_N_MAX, k <= SEQ_K_MAX must meet (MATVEC: ceil(n/L)*k + L + the
#: requantizer's latency; SAMPLE 2n + 6; ARGMAX n + 2; EMBED 2k + 3; all well inside).
SEQ_BOUND = 40


def _sequencer(vector_units=(), mv_chain: bool = False):
    from ternac.hw.sequencer import Sequencer
    return Sequencer(lanes=SEQ_LANES, acc_bits=acc_width(SEQ_K_MAX), prog_depth=SEQ_DEPTH,
                     scratch_depth=SEQ_DEPTH, out_depth=SEQ_DEPTH, weight_depth=SEQ_DEPTH,
                     vector_units=vector_units, mv_chain=mv_chain)


def _instruction_bound(m, t, bound: int, *, also=()):
    """Bounded liveness of a sequencer harness: the cycles since the last DECODE or IDLE
    (an operation state goes straight to DECODE: FETCH only follows IDLE), or a state of
    ``also`` (MV_SWAP: a chained MATVEC's start, which has no DECODE), never exceed
    ``bound``. Returns the counter (for covers)."""
    waiting = fsm_state(t, "DECODE") | fsm_state(t, "IDLE")
    for state in also:
        waiting = waiting | fsm_state(t, state)
    since = Signal(range(bound + 2), name="cycles_in_instruction")
    with m.If(waiting):
        m.d.sync += since.eq(0)
    with m.Elif(since != bound + 1):
        m.d.sync += since.eq(since + 1)
    m.d.comb += Assert(since <= bound, "every instruction completes in the bound")
    return since


def _sequencer_env(m, dut, lanes: int, *, stable_program: bool = False) -> None:
    """The sequencer harnesses' environment: ``start`` free; the memories respond one cycle
    after the address with any contents (weights, activations, probabilities, token ids);
    the program holds instructions the ISA defines (golden.interpreter's preconditions):
    n >= 1, k >= 1, both small here (SEQ_N_MAX, SEQ_K_MAX).

    ``stable_program``: a read of the program address read in the cycle before returns the
    same word, as the program memory does (the host writes it only while the sequencer is
    idle). Without it any word may arrive in any cycle, which is enough for a sequencer
    that reads each word once (in DECODE or EPI_DEC); MATVEC chaining reads the word after
    a MATVEC's epilogue while the MATVEC runs and again in MV_SWAP, so its harness needs
    it (without it BMC finds a chain whose two reads of one address disagree)."""
    from ternac.golden.isa import INSTR_BITS
    from ternac.hw.sequencer import instr_layout
    m.d.comb += dut.start.eq(AnySeq(1))
    for port, bits in (("scr_rdata", 16), ("scr_rdata2", 16), ("out_rdata", 32),
                       ("w_rdata", 2 * lanes)):
        m.d.sync += getattr(dut, port).eq(AnySeq(bits))
    word = Signal(instr_layout, name="prog_word")
    m.d.comb += word.as_value().eq(AnySeq(INSTR_BITS))
    m.d.comb += Assume((word.n >= 1) & (word.n <= SEQ_N_MAX) & (word.k >= 1)
                       & (word.k <= SEQ_K_MAX), "program: n, k within the bounds")
    m.d.sync += dut.prog_data.eq(word.as_value())
    if stable_program:
        # word is the read of prog_addr (on prog_data one cycle later, as a memory's).
        after_first = past(m, Const(1, 1), name="env_after_first")
        addr_q = past(m, dut.prog_addr, name="env_prog_addr_q")
        word_q = past(m, word.as_value(), name="env_prog_word_q")
        with m.If(after_first & (dut.prog_addr == addr_q)):
            m.d.comb += Assume(word.as_value() == word_q,
                               "program: one address, one word (a memory)")


@task("sequencer_live", unit="Sequencer (hw/sequencer.py), no vector units", mode="bmc",
      depth=60, fast=False, properties=[
          f"bounded liveness: every instruction (any opcode; n in 1..{SEQ_N_MAX}, k in "
          f"1..{SEQ_K_MAX}; any memory contents) reaches DECODE (next instruction) or IDLE "
          f"(HALT, unknown opcode) within {SEQ_BOUND} cycles, {SEQ_LANES} lanes",
          "busy is low exactly in IDLE",
          "multiplier pool (hw/mulpool.py): no two clients not declared concurrent are "
          "enabled in the same cycle (requantizer, EMBED, SAMPLE, the vector unit)",
      ])
def sequencer_harness(*, broken: str | None = None, vector: str | None = None,
                      bound: int = SEQ_BOUND, mv_chain: bool = False):
    from ternac.golden.isa import Flag, Op

    def build(m):
        units = ()
        if vector == "dot":
            units = [(_dot(), {Op.DOT: None})]
        elif vector == "eltwise":
            from ternac.hw.eltwise import EltMode
            units = [(_eltwise(), {Op.ADD: EltMode.ADD, Op.MUL: EltMode.MUL})]
        dut, t = _instantiate(m, _sequencer(units, mv_chain=mv_chain),
                              None if broken in ("any_epilogue", "unstable_program") else broken)
        _sequencer_env(m, dut, SEQ_LANES,
                       stable_program=mv_chain and broken != "unstable_program")
        from ternac.hw.sequencer import instr_layout
        if mv_chain:
            # ternac.lower._check_chain's rules on such a build: no REPEAT, and a MATVEC
            # another one is chained after has k >= lanes (here every MATVEC: k = 4).
            word = instr_layout(dut.prog_data)
            m.d.comb += Assume(word.op != Op.REPEAT, "program: no REPEAT with mv_chain")
            with m.If(word.op == Op.MATVEC):
                m.d.comb += Assume(word.k >= SEQ_LANES,
                                   "program: a MATVEC's k >= lanes with mv_chain")
        if vector == "eltwise":
            # A MATVEC with ``epi`` (golden/isa.py; golden.interpreter refuses others): not
            # RAW, and the next word (on prog_data in EPI_DEC) an epilogue op of its n.
            cur = instr_layout(probe(t, "ins"))
            nxt = instr_layout(dut.prog_data)
            with m.If(fsm_state(t, "EXEC") & (cur.op == Op.MATVEC) & cur.epi):
                m.d.comb += Assume(~cur.flags[Flag.RAW.bit_length() - 1],
                                   "program: an epilogue's MATVEC is requantized")
            with m.If(fsm_state(t, "EPI_DEC") & (broken != "any_epilogue")):
                m.d.comb += Assume(((nxt.op == Op.ADD) | (nxt.op == Op.MUL))
                                   & (nxt.n == cur.n),
                                   "program: a MATVEC's epilogue is ADD or MUL of its n")
            fused = Signal(name="fused_matvec")
            with m.If(fsm_state(t, "EPI_DEC")):
                m.d.sync += fused.eq(1)
            with m.Elif(fsm_state(t, "DECODE")):
                m.d.sync += fused.eq(0)
            # the fused pair completes (its rows through the requantizer and the unit)
            m.d.comb += Cover(fused & fsm_state(t, "DECODE"))
        since = _instruction_bound(m, t, bound, also=("MV_SWAP",) if mv_chain else ())
        if mv_chain:
            # a chained MATVEC starts (MV_SWAP) and completes (the next DECODE)
            swapped = Signal(name="chained_matvec")
            with m.If(fsm_state(t, "MV_SWAP")):
                m.d.sync += swapped.eq(1)
            m.d.comb += Cover(swapped & fsm_state(t, "DECODE"))
        m.d.comb += Assert(dut.busy == ~fsm_state(t, "IDLE"), "busy low exactly in IDLE")
        m.d.comb += Assert(~dut.mulpool.conflict,
                           "multiplier pool: one client at a time (concurrent pairs apart)")
        m.d.comb += Cover(fsm_state(t, "MATVEC") & (since == 20))
        if vector is not None:
            m.d.comb += Cover(fsm_state(t, "VEC") & (since == (30 if vector == "dot" else 10)))
    return Harness(build, "sequencer_live")


@task("sequencer_live_dot", unit="Sequencer (hw/sequencer.py) with the Dot vector unit (DOT)",
      mode="bmc", depth=60, fast=False, properties=[
          f"bounded liveness as sequencer_live, with the segmented vector path: every "
          f"instruction (n in 1..{SEQ_N_MAX}, k in 1..{SEQ_K_MAX}) reaches DECODE or IDLE within 56 "
          "cycles (DOT: 3 + n k + 6)",
      ])
def sequencer_dot_harness(*, broken: str | None = None):
    return sequencer_harness(broken=broken, vector="dot", bound=56)


@task("sequencer_live_epi", unit="Sequencer (hw/sequencer.py) with the Eltwise unit (ADD, MUL) "
      "as a MATVEC epilogue", mode="bmc", depth=60, fast=False, properties=[
          f"bounded liveness as sequencer_live, with epilogue-fused MATVECs: every instruction "
          f"(n in 1..{SEQ_N_MAX}, k in 1..{SEQ_K_MAX}), a MATVEC with epi and its ADD or MUL "
          f"epilogue as one, reaches DECODE or IDLE within {SEQ_BOUND} cycles",
          "multiplier pool: the requantizer and the epilogue's unit (declared concurrent) "
          "with no other client enabled at once",
      ])
def sequencer_epi_harness(*, broken: str | None = None):
    """``broken="any_epilogue"``: the program's precondition dropped (the word after a
    MATVEC with epi may be any instruction, which golden.interpreter refuses): the RTL then
    waits for rows no unit produces, and liveness must fail."""
    return sequencer_harness(broken=broken, vector="eltwise")


@task("sequencer_live_chain", unit="Sequencer (hw/sequencer.py) built with mv_chain and the "
      "Eltwise unit (ADD, MUL) as a MATVEC epilogue", mode="bmc", depth=46, fast=False,
      properties=[
          f"bounded liveness as sequencer_live_epi on a build with MATVEC chaining "
          f"(AccelConfig.mv_chain: a MATVEC after a MATVEC, its epilogue between, streams "
          f"while the first one drains, through MV_SWAP): every instruction (n in "
          f"1..{SEQ_N_MAX}, k in 1..{SEQ_K_MAX}, no REPEAT, a MATVEC's k >= lanes: "
          f"ternac.lower's chain rules; the program memory returns one word an address) "
          f"reaches DECODE, IDLE or, chained, MV_SWAP within {SEQ_BOUND} cycles (BMC 46: "
          f"972 s here; 60 did not finish in 23 minutes)",
          "busy is low exactly in IDLE",
          "multiplier pool: the requantizer and the epilogue's unit (declared concurrent) "
          "with no other client enabled at once, chained MATVECs included",
      ])
def sequencer_chain_harness(*, broken: str | None = None):
    """``broken="unstable_program"``: the program memory may return another word for the
    same address in consecutive reads (the other sequencer harnesses' environment): BMC
    60 then reports the liveness failing at step 44 (a chain decided on one word and
    registered from another; 1,380 s here, so no test runs it), which is why this
    harness models the memory."""
    return sequencer_harness(broken=broken, vector="eltwise", mv_chain=True)


# --- Multi-pass vector units: Norm (2 passes), Shiftmax (3) --------------------------------

def _multipass_properties(m, dut, t, *, passes, shared, final_only, name, skip=None,
                          unit_skip=None):
    """A unit that streams each vector ``passes`` times and emits one output per element
    of the final pass: the contract on ``o``; outputs only for final-pass elements, one
    each (in flight == the final-pass elements in valid stages: none dropped or doubled).

    ``shared``: the valid stages that carry every pass (final-pass elements in them while
    the unit's pass index is the final one); ``final_only``: stages only final-pass
    elements reach. The harness tracks the pass from the ``last`` flags it sends.

    ``skip``: the unit's port that streams a vector once, as its final pass (Norm's
    ``reuse``). The harness drives it with any value, changed only where the contract
    lets it change: between vectors (the environment at pass 0 with no beat of the vector
    sent, every output of the previous vector taken; the sequencer's ``vins`` changes at
    a vector instruction's start, after the previous one's results are written).
    ``unit_skip``: the unit's own port, tied to 0 (a broken variant; ``skip`` is then the
    environment's signal alone).
    """
    drive_sink(m, dut.o, name="o")
    assert_source(m, dut.o, name="o")
    fire = transfers(dut.i)
    p = Signal(range(passes), name="env_pass")         # the pass the environment streams
    mid = Signal(name="env_mid_pass")                  # a beat of this pass sent, not last
    final = p == passes - 1
    inflight = Signal(6, name="final_inflight")
    if skip is not None:
        boundary = (p == 0) & ~mid & (inflight == 0)
        skip_q = Signal(name="env_skip_held")
        m.d.comb += skip.eq(Mux(boundary, AnySeq(1), skip_q))
        m.d.sync += skip_q.eq(skip)
        if unit_skip is not None:          # the broken variant: the unit never skips
            m.d.comb += unit_skip.eq(0)
        final = final | skip
    with m.If(fire):
        m.d.sync += mid.eq(~dut.i.payload.last)
    with m.If(fire & dut.i.payload.last):
        m.d.sync += p.eq(Mux(final, 0, p + 1))
    m.d.sync += inflight.eq(inflight + (fire & final) - transfers(dut.o))
    pass_idx = probe(t, "pass_idx")
    in_stream = fsm_state(t, "STREAM", fsm="pass_fsm")
    in_drain = fsm_state(t, "DRAIN", fsm="pass_fsm")
    in_work = fsm_state(t, "WORK", fsm="pass_fsm")
    unit_final = pass_idx == passes - 1
    if skip is not None:
        unit_final = unit_final | skip
    m.d.comb += Assert(
        inflight == Mux(unit_final, sum(shared), 0) + sum(final_only)
        + dut.o.valid, "one output per final-pass element, none dropped or doubled")
    with m.If(dut.o.valid):
        m.d.comb += Assert(inflight != 0, "o: no output without a final-pass element")
    # induction invariants: the unit's pass index follows the environment's passes (it
    # moves on after the drain and the once-a-vector work), and its FSM is in a state
    drained_final = Mux(unit_final, 0, pass_idx + 1)   # p after a pass's DRAIN/WORK
    m.d.comb += [
        Assert(Mux(in_stream, p == pass_idx, p == drained_final), "inv: pass index"),
        Assert(pass_idx < passes, "inv: pass index range"),
        Assert(in_stream | in_drain | (sum(shared) + sum(final_only) == 0),
               "inv: pipeline empty in WORK"),
        Assert(unit_final | (sum(final_only) == 0),
               "inv: final-pass stages empty in other passes"),
        Assert(~in_work | (pass_idx < passes - 1), "inv: no work after the final pass"),
        Assert(fsm_valid(t, fsm="pass_fsm"), "inv: pass FSM state"),
    ]
    if skip is not None:
        m.d.comb += [
            Assert(~skip | ((pass_idx == 0) & ~in_work), "inv: skip only in pass 0, no work"),
            Assert(~boundary | (in_stream & (pass_idx == 0)
                                & (sum(shared) + sum(final_only) == 0)),
                   "inv: idle between vectors"),
            Assert(~((p == 0) & ~mid) | unit_final | (sum(shared) == 0),
                   "inv: no earlier pass in flight at a vector's start"),
        ]
        m.d.comb += Cover(transfers(dut.o) & skip & past(m, dut.o.valid & ~dut.o.ready,
                                                          name=f"{name}_cover_stalled"))


_MULTIPASS_PROPS = [
    "o: valid held until the transfer; payload stable while stalled",
    "o.valid has no combinational path from o.ready (structural)",
    "one output per element of the final pass, none dropped or duplicated "
    "(in flight == final-pass elements in valid stages)",
]

NORM_MAX_LEN = 4


def _norm():
    from ternac.hw.norm import Norm
    return Norm(max_len=NORM_MAX_LEN)


def _shiftmax():
    from ternac.hw.shiftmax import Shiftmax
    return Shiftmax(max_len=4)


@task("norm", unit="Norm (hw/norm.py), max_len 4", mode="prove", depth=4, fast=True,
      comb=_vec_comb(_norm), properties=_MULTIPASS_PROPS + [
          "c (bias stream, bias_en): taken under the contract (assumed)",
          "reuse (RMSNORM on the held statistics: one pass, the final one) driven with any "
          "value, changed only between vectors: the properties above with a vector of one "
          "pass or of two"])
def norm_harness(*, broken: str | None = None):
    """``broken="unstable"``: the output glitches while stalled; ``broken="reuse_dropped"``:
    the unit's ``reuse`` port tied to 0 while the environment streams a reuse vector once
    (a unit, or a sequencer, that loses the reuse wire)."""
    def build(m):
        dut, t = _instantiate(m, _norm(), None if broken == "reuse_dropped" else broken)
        _config(m, dut, ["m", "s", "eps", "mode", "neg", "bias_en", "wide"])
        assume_source(m, dut.i, name="i")
        assume_source(m, dut.c, name="c")
        v = probe_all(t, r"norm_v\d+")
        if broken == "reuse_dropped":
            skip = Signal(name="env_reuse")
            _multipass_properties(m, dut, t, passes=2, shared=v[:2], final_only=v[2:],
                                  name="norm", skip=skip, unit_skip=dut.reuse)
        else:
            _multipass_properties(m, dut, t, passes=2, shared=v[:2], final_only=v[2:],
                                  name="norm", skip=dut.reuse)
    return Harness(build, "norm")


@task("shiftmax", unit="Shiftmax (hw/shiftmax.py), max_len 4", mode="prove", depth=4,
      fast=True, comb=_vec_comb(_shiftmax), properties=_MULTIPASS_PROPS)
def shiftmax_harness(*, broken: str | None = None):
    def build(m):
        dut, t = _instantiate(m, _shiftmax(), broken)
        _config(m, dut, ["m", "s", "neg"])
        assume_source(m, dut.i, name="i")
        v = probe_all(t, r"sm_v\d+")
        _multipass_properties(m, dut, t, passes=3, shared=v[:-2], final_only=v[-2:],
                              name="shiftmax")
    return Harness(build, "shiftmax")


# --- Dot (DOT, activation by activation) ---------------------------------------------------

DOT_MAX_LEN = 4


def _dot():
    from ternac.hw.dot import Dot
    return Dot(max_len=DOT_MAX_LEN)


def _dot_env(m, dut):
    _config(m, dut, ["m", "s", "neg", "wide"])
    assume_source(m, dut.i, name="i")
    drive_sink(m, dut.o, name="o")
    beat = dut.i.payload
    m.d.comb += Assume(~dut.i.valid | (beat.b[:8] != 0x80), "i: b an int8 in [-127, 127]")
    nb = Signal(range(DOT_MAX_LEN + 1), name="beats")
    with m.If(dut.i.valid & (nb == DOT_MAX_LEN - 1)):
        m.d.comb += Assume(beat.last, "i: rows of at most max_len beats")
    with m.If(transfers(dut.i)):
        m.d.sync += nb.eq(Mux(beat.last, 0, nb + 1))
    return nb


@task("dot", unit="Dot (hw/dot.py), max_len 4", mode="prove", depth=4, fast=True,
      comb=_vec_comb(_dot), properties=[
          "o: valid held until the transfer; payload stable while stalled",
          "o.valid has no combinational path from o.ready (structural)",
          "one output per row (a beat with last), none dropped or duplicated",
      ])
def dot_harness(*, broken: str | None = None):
    def build(m):
        dut, t = _instantiate(m, _dot(), broken)
        _dot_env(m, dut)
        assert_source(m, dut.o, name="o")
        rows = counter(m, transfers(dut.i) & dut.i.payload.last, dec=transfers(dut.o), bits=4,
                       name="rows_inflight")
        v, last = probe_all(t, r"dot_v\d+"), probe_all(t, r"dot_last\d+")
        m.d.comb += Assert(rows == (v[0] & last[0]) + (v[1] & last[1]) + sum(v[2:])
                           + dut.o.valid, "one output per row, none dropped or doubled")
        m.d.comb += Cover(transfers(dut.o) & (rows == 2))
    return Harness(build, "dot")


@task("dot_acc", unit="Dot (hw/dot.py), max_len 4", mode="bmc", depth=10, fast=False,
      properties=[
          "the accumulator register equals the exact (wide) row sum of the products for "
          "every row of up to max_len beats, a int16 and b in [-127, 127], NEG or not: "
          "no overflow at dot_acc_width(max_len) bits",
          "product register as wide as every a*b (16 + 8 bits, width check)",
      ])
def dot_acc_harness(*, broken: str | None = None):
    from ternac.golden.widths import DOT_PROD_BITS

    def build(m):
        dut, t = _instantiate(m, _dot(), broken)
        _dot_env(m, dut)
        p = probe_all(t, r"dot_p\d+")[0]
        if len(p) < 16 + 8 or DOT_PROD_BITS < 16 + 8:
            raise AssertionError(f"Dot's product register has {len(p)} bits, fewer than "
                                 f"16 + 8: a * b can overflow it")
        v2, last2 = probe_all(t, r"dot_v\d+")[1], probe_all(t, r"dot_last\d+")[1]
        acc = probe(t, "acc")
        sh = Signal(signed(len(acc) + 8), name="sh_acc")
        first = Signal(init=1, name="sh_first")
        with m.If(dut.i.ready & v2):
            m.d.sync += [sh.eq(Mux(first, 0, sh) + Mux(dut.neg, -p, p)), first.eq(last2)]
        m.d.comb += Assert(acc == sh, "acc: no overflow (equals the exact row sum)")
    return Harness(build, "dot_acc")


# --- PackedWeightStreamer (T3) -------------------------------------------------------------

def _streamer_t3():
    from ternac.hw.streamer import PackedWeightStreamer
    return PackedWeightStreamer(lanes=5, depth=STR_DEPTH, fmt="t3")


@task("streamer_t3", unit="PackedWeightStreamer t3 (hw/streamer.py), 5 lanes, EBR decode",
      mode="prove", depth=8, fast=True, comb=_vec_comb(_streamer_t3), properties=[
          "o: valid held until the transfer; payload stable while stalled",
          "o.valid has no combinational path from o.ready (structural)",
          "no word dropped at the FIFO (room reserved for both pipeline stages)",
          "words out == words commanded (outstanding == remaining + both stages + buffered)",
          "idle only with nothing outstanding",
      ])
def streamer_t3_harness(*, broken: str | None = None):
    def build(m):
        dut, t = _instantiate(m, _streamer_t3(), broken, platform="formal")
        assume_source(m, dut.cmd, name="cmd")
        drive_sink(m, dut.o, name="o")
        m.d.sync += dut.mem_rdata.eq(AnySeq(len(dut.mem_rdata)))   # any bytes
        assert_source(m, dut.o, name="o")
        outstanding = Signal(24, name="outstanding")
        m.d.sync += outstanding.eq(
            outstanding + Mux(transfers(dut.cmd), dut.cmd.payload.count, 0)
            - transfers(dut.o))
        fifo = ("fifo",)
        w_en, w_rdy = probe(t, "w_en", sub=fifo), probe(t, "w_rdy", sub=fifo)
        level = probe(t, "level", sub=fifo)
        remaining, inflight = probe(t, "remaining"), probe(t, "inflight")
        decoded, occupancy = probe(t, "decoded"), probe(t, "occupancy")
        m.d.comb += [
            Assert(~(w_en & ~w_rdy), "no word dropped at the FIFO"),
            Assert(outstanding == remaining + inflight + decoded + level,
                   "words out == words commanded"),
            Assert(occupancy == level + inflight + decoded, "inv: occupancy register"),
            Assert(occupancy <= 4, "inv: occupancy bound"),
        ]
        with m.If(dut.idle):
            m.d.comb += Assert(outstanding == 0, "idle only with nothing outstanding")
    return Harness(build, "streamer_t3")



# --- Multiplier pool (hw/mulpool.py) -------------------------------------------------------

#: The pool's clients in the harness: name -> the (a, b) operand shapes of its products.
#: Like the sequencer's: a requantizer ("rq": its accumulator times m, cut into a 16-bit
#: uu chunk and a 2-bit su chunk, or a 1-bit top chunk: no slot), a fused epilogue's unit ("ep", declared concurrent with
#: "rq": ss and uu products, one a 1-bit operand), and a client of other instructions
#: ("em": a 24-bit signed a, an su and an ss chunk; a 40-bit one, three chunks), so that
#: with sharing on every slot type is shared by two clients, except where the concurrent
#: pair must stay apart.
POOL_CLIENTS = {
    "rq": [(signed(18), unsigned(16)), (signed(17), unsigned(16))],
    "ep": [(signed(16), signed(16)), (unsigned(16), unsigned(16)), (unsigned(1), signed(9))],
    "em": [(signed(24), signed(16)), (unsigned(13), signed(16)), (signed(40), unsigned(16))],
}
POOL_CONCURRENT = [("rq", "ep")]
#: The exact-product task at 4-bit slots (hw.mulpool.SLOT_BITS and MAX_A_BITS set for
#: its elaboration only; the pool's code reads them when it runs): a SAT solver does not
#: show a 16 x 16 product equal to its chunked sum in reasonable time (no answer in 10 min,
#: nor with b narrowed to 4 bits, since the slot is still 16 x 16), and the chunking is
#: the same code at every slot width. The same clients, their shapes scaled by 4 / 16
#: (one, two and three chunks, a 1-bit operand, top chunks of 2 bits and of 1: no slot).
POOL_SLOT_SMALL = 4
POOL_CLIENTS_SMALL = {
    "rq": [(signed(6), unsigned(4)), (signed(5), unsigned(4))],
    "ep": [(signed(4), signed(4)), (unsigned(4), unsigned(4)), (unsigned(1), signed(3))],
    "em": [(signed(6), signed(4)), (unsigned(3), signed(4)), (signed(10), unsigned(4))],
}


def _pool_concurrent(a, b):
    return (a, b) in POOL_CONCURRENT or (b, a) in POOL_CONCURRENT


def mulpool_harness(*, broken: str | None = None, share_above: int = 0,
                    small: bool = False):
    """The pool alone, its clients' operands and enables free (AnySeq). The pool has no
    state (products are combinational: latency 0, each client registers its own), so
    depth 1 is a proof for every cycle.

    ``small`` False: the routing proof at full width (every slot's operands are those of
    the one client using it that is enabled alone, so its product is that client's);
    True: at :data:`POOL_SLOT_SMALL`-bit slots, every product compared with ``a * b``.
    ``broken="undeclared"``: the pool is not told that "rq" and "ep" run together (they
    then share a slot)."""
    from ternac.hw.mulpool import MulPool

    if broken not in (None, "undeclared"):
        raise ValueError(f"unknown broken variant {broken!r}")

    def build(m):
        from ternac.hw import mulpool as mp
        saved = mp.SLOT_BITS, mp.MAX_A_BITS
        if small:
            mp.SLOT_BITS, mp.MAX_A_BITS = POOL_SLOT_SMALL, 3 * POOL_SLOT_SMALL
        try:
            _mulpool_build(m, MulPool(name="fp", share_above=share_above))
        finally:
            mp.SLOT_BITS, mp.MAX_A_BITS = saved

    def _mulpool_build(m, pool):
        clients = POOL_CLIENTS_SMALL if small else POOL_CLIENTS
        if broken is None:
            for a, b in POOL_CONCURRENT:
                pool.concurrent(a, b)
        en = {c: Signal(name=f"en_{c}") for c in clients}
        checks = []
        for c, shapes in clients.items():
            m.d.comb += en[c].eq(AnySeq(1))
            mul = pool.client(c, en=en[c])
            for k, (sa, sb) in enumerate(shapes):
                a, b = Signal(sa, name=f"{c}_a{k}"), Signal(sb, name=f"{c}_b{k}")
                m.d.comb += [a.eq(AnySeq(sa.width)), b.eq(AnySeq(sb.width))]
                p = Signal((a * b).shape(), name=f"{c}_p{k}")
                m.d.comb += p.eq(mul(a, b))
                checks.append((c, k, p, a * b))
        pt = elaborate_tree(pool)
        m.submodules.pool = pt                        # after its clients (the pool's rule)
        n_chunks = len(pool._chunks)
        if share_above == 0 and pool.n_slots >= n_chunks:
            raise AssertionError(f"the pool shares no slot ({pool.n_slots} slots, "
                                 f"{n_chunks} chunk products)")
        names = list(clients)

        def alone(c):
            v = en[c]
            for d in names:
                if d != c and not _pool_concurrent(c, d):
                    v = v & ~en[d]
            return v
        if small:
            for c, k, p, ref in checks:
                with m.If(alone(c)):
                    m.d.comb += Assert(p == ref, f"{c}: product equals a*b (alone but for "
                                       "its declared concurrent clients)")
        else:
            for k, slot in enumerate(pool._slots):
                sa, sb = probe(pt, f"fp_a{k}"), probe(pt, f"fp_b{k}")
                for c, ua, ub in slot.uses:
                    with m.If(alone(c.name)):
                        m.d.comb += Assert((sa == ua) & (sb == ub),
                                           f"{c.name}: slot operands are its own (alone but "
                                           "for its declared concurrent clients)")
        clash = [en[a] & en[b] for i, a in enumerate(names) for b in names[i + 1:]
                 if not _pool_concurrent(a, b)]
        m.d.comb += Assert(pool.conflict == Cat(*clash).any(),
                           "conflict iff two clients not declared concurrent are enabled")
        m.d.comb += Cover(en["rq"] & en["ep"] & (checks[0][2] != 0) & (checks[1][2] != 0))
    return Harness(build, "mulpool")


task("mulpool", unit="MulPool (hw/mulpool.py), slots shared (share_above 0), 3 clients",
     mode="prove", depth=1, fast=True, properties=[
         "every slot used by a client that is enabled with no other client but those "
         "declared concurrent with it multiplies that client's chunk operands (16-bit "
         "operands, every value; a slot's product is its operands' product by "
         "construction): the concurrent pair on disjoint slots, the others gated",
         "conflict is 1 exactly when two clients not declared concurrent are enabled",
         "(elaboration) slots are shared: fewer slots than chunk products",
     ])(mulpool_harness)
task("mulpool_exact", unit=f"MulPool (hw/mulpool.py), shared, {POOL_SLOT_SMALL}-bit slots",
     mode="prove", depth=1, fast=True, properties=[
         "every product of a client equals a*b exactly (every value; a of 1 to 10 bits: "
         "one, two and three chunks, a 1-bit chunk; slots of 4 x 4 bits) in the cycle "
         "(latency 0) whenever the only other clients enabled are those declared "
         "concurrent with it",
         "conflict is 1 exactly when two clients not declared concurrent are enabled",
     ])(lambda *, broken=None: mulpool_harness(broken=broken, small=True))


# --- Sequencer with the Activation / the Norm (one shared multiplier pool) -----------------

#: The Norm's max_len in the sequencer harness (AccelConfig.max_vector: an RMSNORM, and so a
#: tee, runs over at most this many elements; ternac.lower.check_program).
SEQ_NORM_LEN = 4
#: Cycles from leaving DECODE (or IDLE) to the next DECODE (or IDLE) with the Activation
#: (golden/cycles.py, which counts DECODE too): SIGMOID / SILU / GELU 2 + n + 21 <= 31; a
#: MATVEC (n <= 8, k <= 4: two tiles) with such an epilogue matvec_cycles(U = 21) <= 43
#: (n = 8, k = 4), with a SIGMOID pair (n <= L, one tile) <= 43 (n = 4, k = 4); a MATVEC
#: alone <= 22; HALT, an unknown or absent opcode 2. 43 and a margin of 3:
SEQ_ACT_BOUND = 46
#: With the Norm and the Eltwise (ADD / MUL latency 7) an instruction may wait for the
#: Norm's between-pass work (~60 cycles: bits(N), up to 15 normalization steps, a 16-cycle
#: isqrt, a 16-cycle division): a RMSNORM of n <= 4 takes up to 83 cycles (norm_cycles), a
#: prologue pair after a tee up to 100 (prologue_cycles), so a bounded-liveness check needs
#: a BMC depth of about 120. Measured: smtbmc/boolector takes 79 s to step 22 of this harness,
#: each step 15 s more and growing (a depth of 120 is hours): the task below checks the
#: pool and busy for SEQ_NORM_DEPTH cycles, which reach a teeing epilogue (requantizer,
#: Eltwise and the Norm's square at once), a prologue's tile 0 and a reuse RMSNORM's
#: final pass (every Norm product), not the liveness (the Covers say what is reached).
SEQ_NORM_DEPTH = 28


def sequencer_units_harness(*, broken: str | None = None, kind: str, bound: int | None):
    """The Sequencer with ``kind`` "act" (the Activation: SIGMOID, SILU, GELU, standalone and
    as MATVEC epilogues, the SIGMOID pair) or "norm" (the Norm: RMSNORM with reuse, tee and
    prologue; the Eltwise: ADD, MUL, which tee), every unit on one shared multiplier pool
    (hw.vector_units.vector_units_for's arrangement), so ``mulpool.conflict`` covers the
    units' slots and their ``zero_idle`` promises.

    The program words are free but for what golden.interpreter / ternac.lower.check_program
    refuse and the RTL relies on (the task's properties say which). ``broken="dirty_idle"``:
    the unit's bubble-cleared registers (hw.vector.Pipe.reg ``valid=``: the zero_idle
    operands) keep loading while their stage holds no beat, breaking the promise the pool's
    AND-OR relies on: ``mulpool.conflict`` must be reported. ``bound`` None: no liveness
    assertion (a depth that cannot reach the bound would make it one that cannot fail)."""
    from ternac.golden.isa import Flag, Op
    from ternac.golden.ops import spec as op_spec
    from ternac.hw import vector as hv
    from ternac.hw.mulpool import MulPool
    from ternac.hw.sequencer import instr_layout

    if broken not in (None, "dirty_idle"):
        raise ValueError(f"unknown broken variant {broken!r}")
    L = SEQ_LANES

    def flag(word, f):
        return word.flags[f.bit_length() - 1]

    def build(m):
        pool = MulPool()
        if kind == "act":
            from ternac.hw.activation import ActMode, Activation
            units = [(Activation(pool=pool), {Op.SIGMOID: ActMode.SIGMOID,
                                              Op.SILU: ActMode.SILU, Op.GELU: ActMode.GELU})]
            prefixes = ("act",)
            ops = (Op.HALT, Op.MATVEC, Op.SIGMOID, Op.SILU, Op.GELU)
        else:
            from ternac.hw.eltwise import EltMode, Eltwise
            from ternac.hw.norm import Norm, NormMode
            units = [(Norm(max_len=SEQ_NORM_LEN, pool=pool, affine=False, layernorm=False),
                      {Op.RMSNORM: NormMode.RMSNORM}),
                     (Eltwise(pool=pool), {Op.ADD: EltMode.ADD, Op.MUL: EltMode.MUL})]
            prefixes = ("norm",)
            ops = (Op.HALT, Op.MATVEC, Op.RMSNORM, Op.ADD, Op.MUL)
        reg = hv.Pipe.reg
        if broken == "dirty_idle":
            def dirty(self, value, shape=None, *, valid=None, **kw):
                return reg(self, value, shape, valid=None if self._prefix in prefixes else valid,
                           **kw)
            hv.Pipe.reg = dirty
        try:
            from ternac.hw.sequencer import Sequencer
            seq = Sequencer(lanes=L, acc_bits=acc_width(SEQ_K_MAX), prog_depth=SEQ_DEPTH,
                            scratch_depth=SEQ_DEPTH, out_depth=SEQ_DEPTH,
                            weight_depth=SEQ_DEPTH, vector_units=units, ops=ops)
            dut, t = _instantiate(m, seq, None)
        finally:
            hv.Pipe.reg = reg
        if dut.mulpool is not pool:
            raise AssertionError("the sequencer does not use the units' multiplier pool")
        _sequencer_env(m, dut, L)
        cur = instr_layout(probe(t, "ins"))          # the instruction registered in DECODE
        nxt = instr_layout(dut.prog_data)            # the word being decoded
        in_decode, in_exec = fsm_state(t, "DECODE"), fsm_state(t, "EXEC")
        in_epi = fsm_state(t, "EPI_DEC")
        epi_ops = [op for _, om in units for op in om if op_spec(op).epilogue]
        # A MATVEC with epi (golden/isa.py): requantized, and its next word (on prog_data in
        # EPI_DEC) an epilogue op the build runs, of its n.
        with m.If(in_exec & (cur.op == Op.MATVEC) & cur.epi):
            m.d.comb += Assume(~flag(cur, Flag.RAW),
                               "program: an epilogue's MATVEC is requantized")
        with m.If(in_epi):
            m.d.comb += Assume(Cat(*(nxt.op == op for op in epi_ops)).any()
                               & (nxt.n == cur.n),
                               "program: a MATVEC's epilogue is an epilogue op of its n")
        if kind == "act":
            # The pair (golden/isa.py): a SIGMOID without NEG, of a MATVEC with
            # k >= 2L + 4 or n <= L (k <= SEQ_K_MAX here: n <= L).
            with m.If(in_epi & nxt.pair):
                m.d.comb += Assume((nxt.op == Op.SIGMOID) & ~flag(nxt, Flag.NEG)
                                   & ((cur.k >= 2 * L + 4) | (cur.n <= L)),
                                   "program: a pair is a SIGMOID epilogue without NEG of "
                                   "k >= 2L + 4 or n <= L")
            fused = Signal(name="fused_pair")
            with m.If(in_epi & nxt.pair):
                m.d.sync += fused.eq(1)
            with m.Elif(in_decode):
                m.d.sync += fused.eq(0)
            m.d.comb += Cover(fused & in_decode)
        else:
            rms = nxt.op == Op.RMSNORM
            teeing = (nxt.op == Op.ADD) | (nxt.op == Op.MUL)
            with m.If(in_decode | in_epi):
                # tee only on an ADD or MUL, of at most max_vector elements (its RMSNORM's n)
                with m.If(nxt.tee):
                    m.d.comb += Assume(teeing & (nxt.n <= SEQ_NORM_LEN),
                                       "program: a tee is an ADD or MUL of n <= max_vector")
            with m.If(in_decode & rms):
                m.d.comb += Assume(nxt.n <= SEQ_NORM_LEN,
                                   "program: an RMSNORM of n <= max_vector")
            with m.If(in_decode & nxt.pro):
                m.d.comb += Assume(rms & nxt.reuse & (nxt.flags == int(Flag.OUT8)),
                                   "program: pro on a reuse RMSNORM with flags OUT8")
            with m.If(fsm_state(t, "PRO_DEC")):
                m.d.comb += Assume((nxt.op == Op.MATVEC) & (nxt.k == cur.n),
                                   "program: a prologue's next word is a MATVEC of k = its n")
            # The tee waiting for its RMSNORM (golden.interpreter tee_pc): its n and tee8.
            pend = Signal(name="tee_pending")
            pend_n = Signal(len(nxt.n), name="tee_n")
            pend_8 = Signal(name="tee_8")
            with m.If((in_decode | in_epi) & nxt.tee):
                m.d.sync += [pend.eq(1), pend_n.eq(nxt.n), pend_8.eq(nxt.tee8)]
            with m.Elif(in_decode & rms):
                m.d.sync += pend.eq(0)
            with m.If(pend & (in_decode | in_epi)):
                m.d.comb += Assume(~nxt.tee, "program: no tee while a tee waits")
            with m.If(pend & in_decode):
                built = Cat(*(nxt.op == op for op in ops if op != Op.HALT)).any()
                m.d.comb += Assume(built, "program: no HALT (nor an op not built) while a "
                                   "tee waits")
                m.d.comb += Assume(~rms | (nxt.reuse & (nxt.n == pend_n)
                                           & (nxt.flags == Mux(pend_8, int(Flag.OUT8), 0))),
                                   "program: a tee's RMSNORM reuses it (its n, OUT8 iff tee8)")
            m.d.comb += Cover(pend & in_decode & rms)       # a tee's RMSNORM decoded
            # a teeing epilogue: the requantizer, the Eltwise and the Norm's square at once
            norm_i = units[0][0].i
            m.d.comb += Cover(fsm_state(t, "MATVEC") & probe(t, "fuse") & probe(t, "tee_on")
                              & norm_i.valid)
            m.d.comb += Cover(fsm_state(t, "PRO") & dut.scr_wen)    # a prologue's tile 0
            m.d.comb += Cover(fsm_state(t, "VEC") & probe(t, "sel_norm") & dut.scr_wen)
        if bound is not None:
            _instruction_bound(m, t, bound)
        m.d.comb += Assert(dut.busy == ~fsm_state(t, "IDLE"), "busy low exactly in IDLE")
        m.d.comb += Assert(~dut.mulpool.conflict,
                           "multiplier pool: no conflict (clients not declared concurrent "
                           "apart; zero_idle operands 0 while their gate is low)")
        # A zero_idle shift's operand (hw.mulpool shift(zero_idle=True): ORed into a shared
        # shifter without a gate) must be 0 while its client is not enabled; pool.conflict
        # covers the products' promises only, so the harness checks these.
        for client, v, _s, out in pool._shifts:
            if id(out) in pool._zero_idle:
                m.d.comb += Assert(client.en.any() | (v == 0),
                                   "multiplier pool: zero_idle shift operands 0 while "
                                   "their client is idle")
    return Harness(build, f"sequencer_live_{kind}")


_SEQ_UNIT_PROPS = [
    "busy is low exactly in IDLE",
    "multiplier pool (one pool shared by the requantizer and the units, as "
    "hw.vector_units builds it): no conflict, i.e. no two clients not declared concurrent "
    "enabled at once and every zero_idle operand 0 while its gate is low",
    "every zero_idle shift operand (hw.mulpool shift(zero_idle=True), ORed into a shared "
    "shifter without a gate) 0 while its client is idle: asserted by the harness, as "
    "pool.conflict covers only the products",
]


@task("sequencer_live_act", unit="Sequencer (hw/sequencer.py) built with ops HALT, MATVEC, "
      "SIGMOID, SILU, GELU and the Activation (standalone, as MATVEC epilogues, the SIGMOID "
      "pair)", mode="bmc", depth=SEQ_ACT_BOUND + 16, fast=False, properties=[
          f"bounded liveness: every instruction (any opcode: those not built halt with error; "
          f"n in 1..{SEQ_N_MAX}, k in 1..{SEQ_K_MAX}; any memory contents), a MATVEC with epi "
          f"and its epilogue as one, reaches DECODE or IDLE within {SEQ_ACT_BOUND} cycles "
          f"(golden/cycles.py: at most 43), {SEQ_LANES} lanes; BMC of {SEQ_ACT_BOUND + 16} "
          "cycles: every instruction starting in the first 16 is followed to its end "
          "(a bound of 40 fails: a MATVEC n=8 k=3 with its epilogue)",
          *_SEQ_UNIT_PROPS,
          "assumed (golden.interpreter / check_program): a MATVEC with epi is not RAW and its "
          "next word is a SIGMOID, SILU or GELU of its n; a pair only on a SIGMOID without NEG "
          "of a MATVEC of k >= 2L + 4 or n <= L; nothing else (flags, addresses, a standalone "
          "pair, wb, rsel are free)",
      ])
def sequencer_act_harness(*, broken: str | None = None):
    """``broken="tight"``: the bound claimed 6 cycles short (40), which the longest
    instructions exceed: liveness must fail (the assertion is not vacuous)."""
    if broken == "tight":
        return sequencer_units_harness(kind="act", bound=SEQ_ACT_BOUND - 6)
    return sequencer_units_harness(broken=broken, kind="act", bound=SEQ_ACT_BOUND)


@task("sequencer_norm_pool", unit="Sequencer (hw/sequencer.py) built with ops HALT, MATVEC, "
      f"RMSNORM, ADD, MUL, the Norm (max_len {SEQ_NORM_LEN}: reuse, tee, prologue) and the "
      "Eltwise", mode="bmc", depth=SEQ_NORM_DEPTH, fast=False, properties=[
          *_SEQ_UNIT_PROPS,
          f"for {SEQ_NORM_DEPTH} cycles from reset (bounded; n in 1..{SEQ_N_MAX}, k in "
          f"1..{SEQ_K_MAX}, any memory contents): reaches a MATVEC whose teeing ADD/MUL "
          "epilogue streams into the Norm (requantizer, Eltwise and the Norm's square on the "
          "pool at once), a prologue's tile 0, a reuse RMSNORM's results and a tee's RMSNORM "
          "decoded (cover mode, depth 28: test_not_vacuous_slow); not the Norm's "
          "between-pass work (~60 cycles) nor bounded liveness (a depth of ~120, hours: "
          "SEQ_NORM_DEPTH's comment)",
          "assumed (golden.interpreter / check_program): a MATVEC with epi is not RAW and its "
          f"next word an ADD or MUL of its n; an RMSNORM of n <= max_vector = {SEQ_NORM_LEN}; "
          "tee only on an ADD or MUL (standalone or an epilogue) of n <= max_vector; "
          "while a tee waits: no second tee, no HALT nor an op the build lacks, and the next "
          "RMSNORM reuses it (same n, flags OUT8 iff tee8); pro only on a reuse RMSNORM of "
          "flags OUT8, its next word a MATVEC of k = its n. Not assumed (free): src = dst "
          f"of the prologue, k >= PRO_MIN_K (32; k <= {SEQ_K_MAX} here), a reuse without "
          "statistics, flags, addresses, wb",
      ])
def sequencer_norm_harness(*, broken: str | None = None):
    return sequencer_units_harness(broken=broken, kind="norm", bound=None)
