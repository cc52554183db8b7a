"""Unit benches of the streaming RTL (Verilator + cocotb): PackedWeightStreamer (I2 and T3),
TernaryEngine, Requantizer. Every output element is compared with golden, on random and
extreme inputs, in the stall modes of sim/streams.py (none; idle: the source pauses between
beats; backpressure: the sink drops ready; both; seeded): each unit runs once without stalls
and once with its segments rotating through the three stalled modes (``make test``), and
once in each stalled mode for every segment (the tests marked slow). A passive protocol
monitor watches every stream of every unit (sim/bench_units.py); the monitor itself is
tested on traces, on a deliberately broken Amaranth unit and on a broken source."""
import random

import pytest
import torch
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden import numerics as nm
from ternac.golden.packing import (T3_MAX, pack_i2_word, pack_t3_word, t3_byte_trits,
                                  tile_lanes_t3, unpack_t3_word)
from ternac.hw.engine import TernaryEngine, engine_in_layout, engine_out_layout
from ternac.hw.requant import Requantizer
from ternac.hw.streamer import PackedWeightStreamer, StreamCmd, trit_layout
from ternac.sim.runner import BenchFailed, build, run_bench
from ternac.sim.streams import (FAST_RUNS, SLOW_RUNS, StreamMonitor, pack,
                                segment_modes, stream_fields, unpack)
from ternac.sim.wrappers import StreamerBench

#: One simulation without stalls and one rotating through the stalled modes; the full cross
#: product (every segment in each stalled mode) in the slow tests.
RUNS = [*FAST_RUNS, *(pytest.param(r, marks=pytest.mark.slow) for r in SLOW_RUNS)]
SEED = 1234


def _segments_run(model, segments, run, **inputs):
    """Run ``segments`` (dicts with ``beats``, ``n_out``, optional ``static``) through
    bench_units.stream_segments in the stall modes of ``run`` (sim.streams.segment_modes),
    with the protocol monitor on every stream; check that it watched every stream of the
    component and saw every transfer. Returns the bench's results, with each segment's
    ``mode`` added."""
    runner, bdir, name, fields = model
    modes = segment_modes(run, len(segments))
    src, sink = inputs.get("src", "i"), inputs.get("sink", "o")
    print(f"{name}: seed={SEED} run={run} modes={modes}")
    out = run_bench(runner, bdir, name, "bench_units", testcase="stream_segments", inputs={
        "seed": SEED, "fields": fields, **inputs,
        "segments": [{**seg, "mode": mode} for seg, mode in zip(segments, modes)]})
    assert set(out["streams"]) == set(fields), (out["streams"], fields)   # every stream
    assert out["streams"][src] == sum(len(s["beats"]) for s in segments)
    assert out["streams"][sink] == sum(s["n_out"] for s in segments)
    assert out["violations"] == 0
    assert out["extra"] == 0
    for res, mode in zip(out["segments"], modes):
        res["mode"] = mode
    return out


def _rand_trits(rng, n):
    return [rng.choice((-1, 0, 1)) for _ in range(n)]


# --- PackedWeightStreamer -----------------------------------------------------------------

@pytest.fixture(scope="module")
def streamer_model():
    lanes, depth = 8, 64
    rng = random.Random(SEED)
    rows = [_rand_trits(rng, lanes) for _ in range(depth - 3)]
    rows += [[1] * lanes, [-1] * lanes, [0] * lanes]          # extremes
    words = [pack_i2_word(r) for r in rows]
    dut = StreamerBench(lanes=lanes, words=words, depth=depth)
    fields = stream_fields(dut)
    runner, bdir = build(dut, "streamer_bench")
    return (runner, bdir, "streamer_bench", fields), rows, lanes


@pytest.mark.parametrize("run", RUNS)
def test_streamer_every_word(streamer_model, run):
    model, rows, lanes = streamer_model
    rng = random.Random(SEED + 1)
    cmds = [(0, 64), (61, 3), (5, 1), (10, 7), (10, 7), (63, 1), (0, 1)]
    cmds += [(b, rng.randint(1, 64 - b)) for b in (rng.randrange(64) for _ in range(6))]
    # back-to-back commands inside a segment; a stall mode a segment
    groups = [cmds[0:2], cmds[2:5], cmds[5:9], cmds[9:]]
    print(f"seed={SEED + 1} commands={groups}")
    segs, expects = [], []
    for group in groups:
        expect = []
        for base, count in group:
            for a in range(base, base + count):
                t = rows[a]
                expect.append({"nz": sum((v != 0) << l for l, v in enumerate(t)),
                               "neg": sum((v < 0) << l for l, v in enumerate(t)),
                               "last": int(a == base + count - 1)})
        expects.append(expect)
        segs.append({"beats": [pack(StreamCmd, base=b, count=c) for b, c in group],
                     "n_out": len(expect)})
    out = _segments_run(model, segs, run, src="cmd", sink="o",
                        max_cycles=4 * max(s["n_out"] for s in segs) + 100)
    for res, expect in zip(out["segments"], expects):
        got = [unpack(trit_layout(lanes), w) for w in res["out"]]
        assert got == expect, res["mode"]


# --- PackedWeightStreamer, T3 ----------------------------------------------------------------

T3_DEPTH = 128


def _t3_memory(lanes, seed):
    """The weight memory of a T3 bench: a random (2L+3, 25) trit matrix tiled by
    golden.packing.tile_lanes_t3 (75 words, 3 tiles, the last with 2L-3 padding rows), then
    extreme words (all +1: bytes 242; all -1: bytes 0; all 0: bytes 121), words of random
    valid bytes, and words holding the 13 invalid bytes 243..255 (which the RTL decodes to
    zero trits; the weight image loader never lets them through)."""
    rng = random.Random(seed)
    nbytes = lanes // 5
    n, k = 2 * lanes + 3, 25
    g = torch.Generator().manual_seed(seed)
    matrix = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
    words = tile_lanes_t3(matrix, lanes)
    words += [pack_t3_word([1] * lanes), pack_t3_word([-1] * lanes), pack_t3_word([0] * lanes)]
    invalid = list(range(T3_MAX + 1, 256))
    while len(words) < T3_DEPTH - 8:
        words.append(int.from_bytes(bytes(rng.randint(0, T3_MAX) for _ in range(nbytes)), "little"))
    for _ in range(8):
        words.append(int.from_bytes(bytes(rng.choice(invalid + [rng.randint(0, T3_MAX)])
                                          for _ in range(nbytes)), "little"))
    return matrix, k, words


def _t3_expected_trits(word, lanes):
    """Golden trits of a T3 word: golden.packing.unpack_t3_word where every byte is valid;
    bytes above 242 are zero trits (the documented decode of the RTL's ROM padding)."""
    try:
        return unpack_t3_word(word, lanes)
    except ValueError:
        out = []
        for b in range(lanes // 5):
            v = (word >> (8 * b)) & 0xFF
            out += list(t3_byte_trits(v)) if v <= T3_MAX else [0] * 5
        return out


@pytest.fixture(scope="module", params=[(40, "ebr"), (20, "ebr"), (20, "lut")],
                ids=lambda p: f"L{p[0]}-{p[1]}")
def t3_streamer_model(request):
    lanes, decode = request.param
    matrix, k, words = _t3_memory(lanes, SEED + lanes)
    dut = StreamerBench(lanes=lanes, words=words, depth=T3_DEPTH, fmt="t3", decode=decode)
    fields = stream_fields(dut)
    runner, bdir = build(dut, "streamer_bench")
    latency = PackedWeightStreamer.LATENCY["t3"]
    return (runner, bdir, "streamer_bench", fields), lanes, matrix, k, words, latency


@pytest.mark.parametrize("run", RUNS)
def test_streamer_t3_every_trit(t3_streamer_model, run):
    model, lanes, matrix, k, words, latency = t3_streamer_model
    tiles = -(-matrix.shape[0] // lanes)
    rng = random.Random(SEED + 2)
    D = T3_DEPTH
    # the whole tensor in one command (tile edges inside it), then tile by tile back to back,
    # the extremes and the invalid bytes, single words, and random spans
    segs = [[(0, tiles * k)],
            [(jt * k, k) for jt in range(tiles)] + [(tiles * k, 3), (D - 8, 8), (D - 1, 1),
                                                      (0, 1), (5, 1), (5, 1)],
            [(b, rng.randint(1, D - b)) for b in (rng.randrange(D) for _ in range(6))]]
    print(f"seed={SEED} rng={SEED + 2} lanes={lanes} segments={segs}")
    layout = trit_layout(lanes)
    out = _segments_run(model, [{"beats": [pack(StreamCmd, base=b, count=c) for b, c in seg],
                                 "n_out": sum(c for _, c in seg)} for seg in segs], run,
                        src="cmd", sink="o",
                        max_cycles=4 * max(sum(c for _, c in g) for g in segs) + 100)
    n_trits = 0
    for seg, res in zip(segs, out["segments"]):
        expect = []
        for base, count in seg:
            for a in range(base, base + count):
                t = _t3_expected_trits(words[a], lanes)
                expect.append({"nz": sum((v != 0) << l for l, v in enumerate(t)),
                               "neg": sum((v < 0) << l for l, v in enumerate(t)),
                               "last": int(a == base + count - 1)})
        got = [unpack(layout, w) for w in res["out"]]
        assert len(got) == len(expect)
        for j, (g, e) in enumerate(zip(got, expect)):
            assert g == e, f"word {j} of segment {seg}: got {g}, expected {e}"
        n_trits += lanes * len(got)
        if res["mode"] == "none":
            # one word a cycle, no bubble at tile or command edges: the segment's cycles are
            # its words plus the streamer's latency and the sink's one cycle
            assert res["cycles"] == len(expect) + latency + 1, res["cycles"]
    # segment 0 is the tensor: its lanes, untiled, are the weight matrix itself
    got0 = [unpack(layout, w) for w in out["segments"][0]["out"]]
    rebuilt = torch.zeros(tiles * lanes, k, dtype=torch.int8)
    for idx, g in enumerate(got0):
        jt, i = divmod(idx, k)
        for l in range(lanes):
            rebuilt[jt * lanes + l, i] = ((g["nz"] >> l) & 1) * (1 - 2 * ((g["neg"] >> l) & 1))
    assert torch.equal(rebuilt[:matrix.shape[0]], matrix)
    assert not rebuilt[matrix.shape[0]:].any()
    print(f"{n_trits} trits compared")


def _pysim_backpressure(fmt, lanes, words, ready_p, seed):
    """Stream all ``words`` as one command through StreamerBench in Amaranth's simulator with
    ``o.ready`` high with probability ``ready_p`` (seeded); returns ``(payloads, bubbles)``,
    a bubble being a cycle after the first word where the sink is ready, words remain and
    ``o.valid`` is low."""
    from amaranth.sim import Simulator
    dut = StreamerBench(lanes=lanes, words=words, depth=len(words), fmt=fmt)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = random.Random(seed)
    res = {"got": [], "bubbles": 0}

    async def bench(ctx):
        ctx.set(dut.cmd.payload.base, 0)
        ctx.set(dut.cmd.payload.count, len(words))
        ctx.set(dut.cmd.valid, 1)
        started = False
        for _ in range(20 * len(words)):
            r = int(rng.random() < ready_p)
            ctx.set(dut.o.ready, r)
            v = ctx.get(dut.o.valid)
            started |= bool(v)
            if r and not v and started and len(res["got"]) < len(words):
                res["bubbles"] += 1
            if r and v:
                res["got"].append((ctx.get(dut.o.payload.nz), ctx.get(dut.o.payload.neg)))
            cmd_taken = ctx.get(dut.cmd.valid) and ctx.get(dut.cmd.ready)
            await ctx.tick()
            if cmd_taken:
                ctx.set(dut.cmd.valid, 0)
            if len(res["got"]) == len(words):
                break

    sim.add_testbench(bench)
    sim.run()
    return res["got"], res["bubbles"]


@pytest.mark.parametrize("fmt,lanes", [("i2", 8), ("t3", 40), ("t3", 20)])
def test_streamer_no_bubble_under_backpressure(fmt, lanes, monkeypatch):
    """With the sink ready 70% of the cycles (seeded), the FIFO never runs dry while words
    remain: the streamer keeps up with any sink at one word a cycle. A FIFO one entry too
    shallow for the T3 pipeline does leave bubbles (so the check can fail)."""
    rng = random.Random(SEED + lanes)
    n = 96
    trits = [_rand_trits(rng, lanes) for _ in range(n)]
    pack_word = pack_i2_word if fmt == "i2" else pack_t3_word
    words = [pack_word(t) for t in trits]
    print(f"seed={SEED + lanes} ready_p=0.7 fmt={fmt} lanes={lanes}")
    got, bubbles = _pysim_backpressure(fmt, lanes, words, 0.7, SEED)
    expect = [(sum((v != 0) << l for l, v in enumerate(t)), sum((v < 0) << l for l, v in enumerate(t)))
              for t in trits]
    assert got == expect
    assert bubbles == 0
    if fmt == "t3":
        monkeypatch.setattr(PackedWeightStreamer, "FIFO_DEPTH", 3)
        got, bubbles = _pysim_backpressure(fmt, lanes, words, 0.7, SEED)
        assert got == expect and bubbles > 0


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_streamer_t3_parameters():
    with pytest.raises(ValueError, match="positive multiple of 5.*not 32"):
        PackedWeightStreamer(lanes=32, depth=16, fmt="t3")
    with pytest.raises(ValueError, match="weight format must be one of i2, t3, not 'i3'"):
        PackedWeightStreamer(lanes=40, depth=16, fmt="i3")
    with pytest.raises(ValueError, match="T3 decode must be one of ebr, lut, not 'rom'"):
        PackedWeightStreamer(lanes=40, depth=16, fmt="t3", decode="rom")
    st = PackedWeightStreamer(lanes=40, depth=16, fmt="t3")
    assert st.word_bits == 64 and st.latency == 3 and st.fifo_depth == 4
    assert len(st.mem_rdata) == 64 and len(st.o.payload.nz) == 40
    i2 = PackedWeightStreamer(lanes=32, depth=16)
    assert i2.word_bits == 64 and i2.latency == 1 and i2.fifo_depth == 1


# --- The protocol monitor ----------------------------------------------------------------

class _Sig:
    """A stand-in for a cocotb handle: ``.value`` and ``len()``."""

    def __init__(self, width=1):
        self.value, self.width = 0, width

    def __len__(self):
        return self.width


class _FakeDut:
    def __init__(self, width):
        self.o__valid, self.o__ready, self.o__payload = _Sig(), _Sig(), _Sig(width)


def _monitor_trace(trace, fields=None):
    """Feed ``trace`` (``(valid, ready, payload)`` an edge, cycles from 1) to a
    StreamMonitor on stream ``o``; its violations."""
    dut = _FakeDut(12)
    mon = StreamMonitor(dut, "o", fields=fields)
    for cycle, (v, r, p) in enumerate(trace, 1):
        dut.o__valid.value, dut.o__ready.value, dut.o__payload.value = v, r, p
        mon.sample(cycle)
    return mon.violations, mon.beats


def test_monitor_rules_on_traces():
    """The monitor's two rules, edge by edge: legal traces (valid low with any payload, a
    transfer every cycle, a payload held for cycles of backpressure, ready toggling while
    valid is low, valid rising while ready is low, a new payload right after a transfer)
    pass with every transfer counted; each illegal one is reported at its cycle, naming the
    stream and the field."""
    fields = [("y", 0, 8), ("tag", 8, 4)]
    legal = [(0, 0, 5), (0, 1, 9), (1, 1, 1), (1, 1, 2), (1, 0, 3), (1, 0, 3), (1, 0, 3),
             (1, 1, 3), (1, 0, 4), (1, 1, 4), (0, 0, 7), (0, 1, 8), (1, 0, 0xABC), (1, 1, 0xABC)]
    assert _monitor_trace(legal, fields) == ([], 5)
    viol, _ = _monitor_trace([(1, 0, 0x123), (1, 0, 0x124), (1, 1, 0x124)], fields)
    assert [(v["stream"], v["cycle"], v["field"], v["was"], v["now"]) for v in viol] == [
        ("o", 2, "y", 0x23, 0x24)]
    assert viol[0]["message"] == ("stream 'o': payload field 'y' changed from 0x23 to 0x24 at "
                                  "cycle 2, while valid was high and ready low since cycle 1 "
                                  "with no transfer")
    viol, _ = _monitor_trace([(1, 1, 0), (1, 0, 0x123), (1, 0, 0x123), (1, 0, 0x523)], fields)
    assert [(v["cycle"], v["field"]) for v in viol] == [(4, "tag")]
    assert "since cycle 2" in viol[0]["message"]
    viol, _ = _monitor_trace([(1, 0, 0x123), (1, 0, 0x923)], fields)      # both fields move
    assert [v["field"] for v in viol] == ["tag"]                            # bit 11: tag only
    viol, _ = _monitor_trace([(1, 0, 0x0FF), (1, 0, 0x100)], fields)
    assert [v["field"] for v in viol] == ["y", "tag"]
    viol, _ = _monitor_trace([(0, 0, 0), (1, 0, 7), (0, 0, 7), (1, 1, 7)], fields)
    assert [(v["cycle"], v["field"], v["message"]) for v in viol] == [
        (3, "valid", "stream 'o': valid dropped at cycle 3, while valid was high and ready low "
                     "since cycle 2 with no transfer")]
    viol, _ = _monitor_trace([(1, 0, 7), (1, 0, 8)])                       # no layout given
    assert [v["field"] for v in viol] == ["payload"]
    viol, _ = _monitor_trace([(1, 0, 0x123), (1, 0, 0x523)], [("y", 0, 8)])   # bit 10 unnamed
    assert [(v["field"], v["was"], v["now"]) for v in viol] == [("payload", 0x123, 0x523)]


def test_pause_generators():
    """The idle and backpressure generators: a probability (seeded: the same seed gives the
    same pauses, about p of the cycles), a 0/1 pattern cycled, none; a probability outside
    [0, 1) is refused."""
    from ternac.sim.streams import _Pauses
    p, q = _Pauses(0.3, random.Random(7)), _Pauses(0.3, random.Random(7))
    seq = [next(p) for _ in range(2000)]
    assert seq == [next(q) for _ in range(2000)]
    assert 0.25 < sum(seq) / len(seq) < 0.35
    pat = _Pauses([1, 1, 0], random.Random(0))
    assert [next(pat) for _ in range(7)] == [True, True, False, True, True, False, True]
    assert not any(next(_Pauses(None, random.Random(0))) for _ in range(100))
    assert not any(next(_Pauses(0.0, random.Random(0))) for _ in range(100))
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="pause probability must be in"):
            _Pauses(bad, random.Random(0))
    with pytest.raises(ValueError, match="stall mode|bench run must be"):
        segment_modes("sometimes", 4)
    with pytest.raises(ValueError, match="at least 3 segments"):
        segment_modes("rotate", 2)
    assert segment_modes("rotate", 4) == ["idle", "backpressure", "both", "idle"]
    assert segment_modes("both", 2) == ["both", "both"]


class _BrokenStream(wiring.Component):
    """A stub unit under test for the monitor, its behaviour chosen by ``fault``: 0 breaks
    the payload rule (``o.valid`` always high, the payload a counter that moves every cycle
    whether or not ``o.ready``); 1 breaks the valid rule (``o.valid`` high every other
    cycle, ready or not; the payload constant); 2 keeps the contract (valid always high,
    the counter advancing on each transfer: the monitor must stay silent). ``i`` is
    accepted and dropped."""
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    fault: In(2)

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)
        with m.If((self.fault != 2) | self.o.ready):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [self.i.ready.eq(1), self.o.valid.eq(1), self.o.payload.eq(count)]
        with m.If(self.fault == 1):
            m.d.comb += [self.o.valid.eq(count[0]), self.o.payload.eq(0x5A)]
        return m


@pytest.fixture(scope="module")
def broken_model():
    dut = _BrokenStream()
    fields = stream_fields(dut)
    runner, bdir = build(dut, "broken_stream")
    return runner, bdir, "broken_stream", fields


@pytest.mark.parametrize("fault,match", [
    (0, r"stream 'o': payload field 'payload' changed from 0x\w+ to 0x\w+ at cycle \d+, "
        r"while valid was high and ready low since cycle \d+"),
    (1, r"stream 'o': valid dropped at cycle \d+, while valid was high and ready low since")])
def test_monitor_catches_a_broken_unit(broken_model, fault, match):
    """An Amaranth unit that breaks the contract on its output fails the bench, the message
    naming the stream, the cycle and the field; the same unit keeping the contract (fault
    2) passes with idle and backpressure, its 40 outputs in order."""
    runner, bdir, name, fields = broken_model
    with pytest.raises(BenchFailed, match=match):
        run_bench(runner, bdir, name, "bench_units", testcase="stream_segments",
                  inputs={"seed": SEED, "mode": "backpressure", "fields": fields,
                          "segments": [{"static": {"fault": fault}, "beats": [1, 2, 3],
                                        "n_out": 40}]})
    out = run_bench(runner, bdir, name, "bench_units", testcase="stream_segments",
                    inputs={"seed": SEED, "mode": "both", "fields": fields,
                            "segments": [{"static": {"fault": 2}, "beats": [1, 2, 3],
                                          "n_out": 40}]})
    assert out["segments"][0]["out"] == list(range(40)) and out["violations"] == 0
    assert out["streams"]["i"] == 3 and out["streams"]["o"] >= 40   # + the quiet cycles


@pytest.mark.parametrize("broken,match", [
    ("payload", r"stream 'i': payload field 'tag' changed from 0x(\w+) to 0x\w+ at cycle \d+"),
    ("valid", r"stream 'i': valid dropped at cycle \d+")])
def test_monitor_catches_a_broken_source(requant_model, broken, match):
    """A bench source that moves the payload (its ``tag`` field) while the Requantizer
    refuses it, or takes valid back before the transfer, fails the bench (the monitor on
    the unit's input stream)."""
    runner, bdir, fields = requant_model
    with pytest.raises(BenchFailed, match=match):
        run_bench(runner, bdir, "requant_bench", "bench_units", testcase="broken_source",
                  inputs={"broken": broken, "flip": 1 << REQ_ACC_BITS, "fields": fields,
                          "beats": list(range(50)), "static": {"m": 1}})


# --- TernaryEngine ------------------------------------------------------------------------

ENGINE_LANES, ENGINE_MAX_K = 8, 300


@pytest.fixture(scope="module")
def engine_model():
    acc_bits = nm.acc_width(ENGINE_MAX_K)
    dut = TernaryEngine(lanes=ENGINE_LANES, acc_bits=acc_bits)
    fields = stream_fields(dut)
    runner, bdir = build(dut, "engine_bench")
    return (runner, bdir, "engine_bench", fields), acc_bits


def _engine_case(seed):
    rng = random.Random(seed)
    L = ENGINE_LANES
    tiles = []
    # Extremes at the largest fan-in: all +1 / all -1 trits with x = +127 / -127.
    for t, x in ((1, 127), (-1, 127), (1, -127), (-1, -127), (0, 127)):
        tiles.append([([t] * L, x) for _ in range(ENGINE_MAX_K)])
    # Short tiles (shorter than the lane count: the engine must stall, not lose results).
    for k in (1, 2, 3, 5, 8, 9):
        tiles.append([(_rand_trits(rng, L), rng.randint(-127, 127)) for _ in range(k)])
    for _ in range(6):
        k = rng.randint(1, ENGINE_MAX_K)
        tiles.append([(_rand_trits(rng, L), rng.choice((-127, 127, rng.randint(-127, 127))))
                      for _ in range(k)])
    return tiles


@pytest.mark.parametrize("run", RUNS)
def test_engine_every_accumulator(engine_model, run):
    model, acc_bits = engine_model
    tiles = _engine_case(SEED)
    # a segment each: the extremes, the short tiles, the random tiles in two halves
    groups = [tiles[0:5], tiles[5:11], tiles[11:14], tiles[14:]]
    print(f"seed={SEED} tiles={[[len(t) for t in g] for g in groups]}")
    layout = engine_in_layout(ENGINE_LANES)
    segs, expects = [], []
    for group in groups:
        beats, expect = [], []
        for tile in group:
            trits = torch.tensor([t for t, _ in tile], dtype=torch.int8).T    # (L, K)
            xs = torch.tensor([x for _, x in tile])
            expect += nm.ternary_matvec(trits, xs).tolist()                   # golden, lane order
            for k, (t, x) in enumerate(tile):
                beats.append(pack(layout, x=x, nz=sum((v != 0) << l for l, v in enumerate(t)),
                                  neg=sum((v < 0) << l for l, v in enumerate(t)),
                                  last=int(k == len(tile) - 1)))
        segs.append({"beats": beats, "n_out": len(expect)})
        expects.append((expect, len(group)))
    out = _segments_run(model, segs, run, max_cycles=4 * max(len(s["beats"]) + s["n_out"]
                                                             for s in segs) + 100)
    for res, (expect, n_tiles) in zip(out["segments"], expects):
        got = [unpack(engine_out_layout(acc_bits), w) for w in res["out"]]
        assert [g["acc"] for g in got] == expect, res["mode"]
        assert [g["last"] for g in got] == [int(l == ENGINE_LANES - 1)
                                            for l in range(ENGINE_LANES)] * n_tiles


# --- Requantizer --------------------------------------------------------------------------

REQ_ACC_BITS = 20


@pytest.fixture(scope="module")
def requant_model():
    dut = Requantizer(acc_bits=REQ_ACC_BITS, tag_bits=12)
    fields = stream_fields(dut)
    runner, bdir = build(dut, "requant_bench")
    return runner, bdir, fields


def _requant_accs(rng, m, s):
    lim = (1 << (REQ_ACC_BITS - 1)) - 1
    accs = [0, 1, -1, lim, -lim - 1, lim - 1, -lim]
    if s > 0 and m > 0:
        # Exact ties: acc * m = (2q + 1) * 2^(s-1), when reachable with integer acc.
        for q in (-3, -2, -1, 0, 1, 2):
            num = (2 * q + 1) << (s - 1)
            if num % m == 0 and abs(num // m) <= lim:
                accs.append(num // m)
    accs += [rng.randint(-lim - 1, lim) for _ in range(150)]
    accs += [rng.randint(-2000, 2000) for _ in range(50)]
    return accs


REQ_CASES = [(1, 1, 0, 0), (3, 2, 0, 0), (1, 0, 1, 0), (40000, 20, 0, 0), (65535, 25, 1, 0),
             (12345, 14, 0, 0), (2, 63, 0, 0), (7, 36, 0, 0), (65535, 0, 0, 0), (1, 0, 0, 1),
             (40000, 12, 0, 1), (3, 5, 1, 1)]      # m, s, relu, wide


@pytest.mark.parametrize("run", RUNS)
def test_requant_every_element(requant_model, run):
    """Every (m, s, relu, wide) case of REQ_CASES a segment of one simulation."""
    runner, bdir, fields = requant_model
    from amaranth.hdl import signed
    from amaranth.lib import data
    in_layout = data.StructLayout({"acc": signed(REQ_ACC_BITS), "tag": 12})
    out_layout = data.StructLayout({"y": signed(16), "tag": 12})
    segs, expects = [], []
    for m, s, relu, wide in REQ_CASES:
        rng = random.Random(SEED + m + s)
        accs = _requant_accs(rng, m, s)
        print(f"seed={SEED + m + s} m={m} s={s} relu={relu} wide={wide}")
        hi = nm.WIDE_MAX if wide else nm.ACT_MAX
        expect = nm.requantize(torch.tensor(accs), m, s, -hi, hi)
        if relu:
            expect = nm.relu(expect)
        segs.append({"beats": [pack(in_layout, acc=a, tag=k % 4096) for k, a in enumerate(accs)],
                     "n_out": len(accs), "static": {"m": m, "s": s, "relu": relu, "wide": wide}})
        expects.append(expect.tolist())
    out = _segments_run((runner, bdir, "requant_bench", fields), segs, run,
                        max_cycles=4 * max(s["n_out"] for s in segs) + 100)
    for case, res, expect in zip(REQ_CASES, out["segments"], expects):
        got = [unpack(out_layout, w) for w in res["out"]]
        assert [g["y"] for g in got] == expect, (case, res["mode"])
        assert [g["tag"] for g in got] == [k % 4096 for k in range(len(expect))], case


# --- Inside the Accelerator ---------------------------------------------------------------

def _run_top_monitored(cfg, weight_words, program_words, inputs, input_addr, logits_addr,
                       n_logits):
    """Run ``inputs`` on the Accelerator built with every signal visible and the clock from
    cocotb, a protocol monitor on every stream at the ports of every unit inside it
    (sim.streams.instance_streams: what the sequencer drives into and takes from them).
    Returns the bench's results and the ``(found, partial)`` streams."""
    from ternac.sim.accel import build_accelerator
    from ternac.sim.streams import instance_streams
    runner, bdir, name = build_accelerator(cfg, weight_words, program_words, clock="cocotb",
                                           public="all", progress=False)
    internal = instance_streams((bdir / f"{name}.v").read_text(), name)
    out = run_bench(runner, bdir, name, "bench_top", inputs={
        "inputs": [list(map(int, x)) for x in inputs], "input_addr": input_addr,
        "logits_addr": logits_addr, "n_logits": n_logits, "internal": internal})
    print(f"monitored {out['streams']}; without a ready or valid port: {out['partial']}")
    assert out["streams"] == {f"{p}.{n}": out["streams"][f"{p}.{n}"] for p, n in internal[0]}
    return out, internal


def test_units_inside_the_digits_accelerator_keep_the_stream_contract():
    """The committed digits MLP (L=8) on 4 test digits: the engine's input and output and
    the streamer's command stream, as the sequencer drives them, keep the contract on every
    cycle; the logits equal the integer golden model."""
    from ternac.config import AccelConfig
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.mlp import DEFAULT_CHECKPOINT, int_forward, int_layers_from_checkpoint
    from ternac.lower import compile_mlp
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    cfg = AccelConfig(lanes=8)
    c = compile_mlp(layers, cfg)
    x = quantize_pixels(load_split()[2])[:4]
    out, (found, _) = _run_top_monitored(cfg, c.weight_words, c.program_words, x.tolist(),
                                         c.input_addr, c.logits_addr, c.n_logits)
    assert {"seq.engine.i", "seq.engine.o", "seq.streamer.cmd"} <= set(out["streams"])
    assert all(n > 0 for n in out["streams"].values()), out["streams"]
    assert out["logits"] == int_forward(layers, x).tolist()


@pytest.mark.slow
def test_units_inside_the_vit_accelerator_keep_the_stream_contract():
    """The committed digits ViT (every vector unit: LayerNorm, GELU, ADD, Shiftmax, DOT) on
    one test digit: every stream at a unit's ports keeps the contract on every cycle; the
    logits equal the program interpreter."""
    from ternac.config import VIT_CONFIG
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.interpreter import run_program
    from ternac.golden.vit import IntViT, load_checkpoint
    from ternac.lower import lower
    model, _ = load_checkpoint(None)
    x = quantize_pixels(load_split()[2])[:1]
    im = IntViT.from_model(model)
    g = im.graph()
    feeds = im.feeds(x)
    c = lower(g, VIT_CONFIG)
    block = torch.zeros(1, c.scratch_map["work"][0], dtype=torch.int64)
    for a, v in c.scratch_constants.items():
        block[:, a:a + len(v)] = torch.tensor(v)
    for name, v in feeds.items():
        a, n = c.inputs[name]
        block[:, a:a + n] = v
    out, _ = _run_top_monitored(VIT_CONFIG, c.weight_words, c.program_words, block.tolist(),
                                0, c.logits_addr, c.n_logits)
    assert len(out["streams"]) >= 5 and all(n > 0 for n in out["streams"].values())
    cfg = VIT_CONFIG
    st = run_program(c.program_words, c.weight_words, lanes=cfg.lanes,
                     scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                     weight_depth=cfg.weight_depth, scratch_init={0: block})
    assert out["logits"] == st.out[:, c.logits_addr:c.logits_addr + c.n_logits].tolist()
