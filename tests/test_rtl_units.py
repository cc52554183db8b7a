"""Unit benches of the streaming RTL (Verilator + cocotb): PackedWeightStreamer (I2 and T3),
TernaryEngine, Requantizer. Every output element is compared with golden, on random and
extreme inputs, without and with seeded random valid/ready stalls."""
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
from ternac.sim.runner import build, run_bench
from ternac.sim.streams import pack, unpack
from ternac.sim.wrappers import StreamerBench

STALLS = [0.0, 0.3]
SEED = 1234


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
    runner, bdir = build(dut, "streamer_bench")
    return runner, bdir, rows, lanes


@pytest.mark.parametrize("stall", STALLS)
def test_streamer_every_word(streamer_model, stall):
    runner, bdir, rows, lanes = streamer_model
    rng = random.Random(SEED + 1)
    cmds = [(0, 64), (61, 3), (5, 1), (10, 7), (10, 7), (63, 1), (0, 1)]
    cmds += [(b, rng.randint(1, 64 - b)) for b in (rng.randrange(64) for _ in range(6))]
    print(f"seed={SEED + 1} stall={stall} commands={cmds}")
    expect = []
    for base, count in cmds:
        for a in range(base, base + count):
            t = rows[a]
            expect.append({"nz": sum((v != 0) << l for l, v in enumerate(t)),
                           "neg": sum((v < 0) << l for l, v in enumerate(t)),
                           "last": int(a == base + count - 1)})
    out = run_bench(runner, bdir, "streamer_bench", "bench_units", inputs={
        "src": "cmd", "sink": "o", "seed": SEED, "stall": stall,
        "beats": [pack(StreamCmd, base=b, count=c) for b, c in cmds], "n_out": len(expect)})
    got = [unpack(trit_layout(lanes), w) for w in out["out"]]
    assert got == expect
    assert out["extra"] == 0


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
    runner, bdir = build(dut, "streamer_bench")
    latency = PackedWeightStreamer.LATENCY["t3"]
    return runner, bdir, lanes, matrix, k, words, latency


@pytest.mark.parametrize("stall", STALLS)
def test_streamer_t3_every_trit(t3_streamer_model, stall):
    runner, bdir, lanes, matrix, k, words, latency = t3_streamer_model
    tiles = -(-matrix.shape[0] // lanes)
    rng = random.Random(SEED + 2)
    D = T3_DEPTH
    # the whole tensor in one command (tile edges inside it), then tile by tile back to back,
    # the extremes and the invalid bytes, single words, and random spans
    segs = [[(0, tiles * k)],
            [(jt * k, k) for jt in range(tiles)] + [(tiles * k, 3), (D - 8, 8), (D - 1, 1),
                                                      (0, 1), (5, 1), (5, 1)]
            + [(b, rng.randint(1, D - b)) for b in (rng.randrange(D) for _ in range(6))]]
    print(f"seed={SEED} rng={SEED + 2} lanes={lanes} stall={stall} segments={segs}")
    layout = trit_layout(lanes)
    out = run_bench(runner, bdir, "streamer_bench", "bench_units", testcase="stream_segments",
                    inputs={"src": "cmd", "sink": "o", "seed": SEED, "stall": stall,
                            "monitor": True, "max_cycles": 4 * max(sum(c for _, c in g) for g in segs) + 100,
                            "segments": [{"beats": [pack(StreamCmd, base=b, count=c)
                                                    for b, c in seg],
                                          "n_out": sum(c for _, c in seg)} for seg in segs]})
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
        if stall == 0:
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
    assert out["violations"] == 0
    assert out["beats"] == sum(len(r["out"]) for r in out["segments"])   # the monitor ran
    assert out["extra"] == 0
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
    assert i2.word_bits == 64 and i2.latency == 2 and i2.fifo_depth == 4


class _BrokenStream(wiring.Component):
    """Breaks the stream contract on purpose: ``o.valid`` always high, the payload a counter
    that moves every cycle whether or not ``o.ready``. ``i`` is accepted and dropped."""
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)
        m.d.sync += count.eq(count + 1)
        m.d.comb += [self.i.ready.eq(1), self.o.valid.eq(1), self.o.payload.eq(count)]
        return m


def test_contract_monitor_catches_a_violation():
    runner, bdir = build(_BrokenStream(), "broken_stream")
    out = run_bench(runner, bdir, "broken_stream", "bench_units", testcase="stream_segments",
                    inputs={"seed": SEED, "stall": 0.3, "monitor": True,
                            "segments": [{"beats": [1, 2, 3], "n_out": 40}]})
    assert out["violations"] > 0


# --- TernaryEngine ------------------------------------------------------------------------

ENGINE_LANES, ENGINE_MAX_K = 8, 300


@pytest.fixture(scope="module")
def engine_model():
    acc_bits = nm.acc_width(ENGINE_MAX_K)
    dut = TernaryEngine(lanes=ENGINE_LANES, acc_bits=acc_bits)
    runner, bdir = build(dut, "engine_bench")
    return runner, bdir, acc_bits


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


@pytest.mark.parametrize("stall", STALLS)
def test_engine_every_accumulator(engine_model, stall):
    runner, bdir, acc_bits = engine_model
    tiles = _engine_case(SEED)
    print(f"seed={SEED} stall={stall} tiles={[len(t) for t in tiles]}")
    layout = engine_in_layout(ENGINE_LANES)
    beats, expect = [], []
    for tile in tiles:
        trits = torch.tensor([t for t, _ in tile], dtype=torch.int8).T    # (L, K)
        xs = torch.tensor([x for _, x in tile])
        expect += nm.ternary_matvec(trits, xs).tolist()                   # golden, lane order
        for k, (t, x) in enumerate(tile):
            beats.append(pack(layout, x=x, nz=sum((v != 0) << l for l, v in enumerate(t)),
                              neg=sum((v < 0) << l for l, v in enumerate(t)),
                              last=int(k == len(tile) - 1)))
    out = run_bench(runner, bdir, "engine_bench", "bench_units", inputs={
        "seed": SEED, "stall": stall, "beats": beats, "n_out": len(expect)})
    got = [unpack(engine_out_layout(acc_bits), w) for w in out["out"]]
    assert [g["acc"] for g in got] == expect
    assert [g["last"] for g in got] == [int(l == ENGINE_LANES - 1) for l in range(ENGINE_LANES)] * len(tiles)
    assert out["extra"] == 0


# --- Requantizer --------------------------------------------------------------------------

REQ_ACC_BITS = 20


@pytest.fixture(scope="module")
def requant_model():
    dut = Requantizer(acc_bits=REQ_ACC_BITS, tag_bits=12)
    runner, bdir = build(dut, "requant_bench")
    return runner, bdir


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


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("m,s,relu,wide", [(1, 1, 0, 0), (3, 2, 0, 0), (1, 0, 1, 0),
                                           (40000, 20, 0, 0), (65535, 25, 1, 0), (12345, 14, 0, 0),
                                           (2, 63, 0, 0), (7, 36, 0, 0), (65535, 0, 0, 0),
                                           (1, 0, 0, 1), (40000, 12, 0, 1), (3, 5, 1, 1)])
def test_requant_every_element(requant_model, m, s, relu, wide, stall):
    runner, bdir = requant_model
    rng = random.Random(SEED + m + s)
    accs = _requant_accs(rng, m, s)
    print(f"seed={SEED + m + s} m={m} s={s} relu={relu} wide={wide} stall={stall}")
    from amaranth.hdl import signed
    from amaranth.lib import data
    in_layout = data.StructLayout({"acc": signed(REQ_ACC_BITS), "tag": 12})
    out_layout = data.StructLayout({"y": signed(16), "tag": 12})
    beats = [pack(in_layout, acc=a, tag=k % 4096) for k, a in enumerate(accs)]
    out = run_bench(runner, bdir, "requant_bench", "bench_units", inputs={
        "seed": SEED, "stall": stall, "beats": beats, "n_out": len(accs),
        "static": {"m": m, "s": s, "relu": relu, "wide": wide}})
    got = [unpack(out_layout, w) for w in out["out"]]
    hi = nm.WIDE_MAX if wide else nm.ACT_MAX
    expect = nm.requantize(torch.tensor(accs), m, s, -hi, hi)
    if relu:
        expect = nm.relu(expect)
    assert [g["y"] for g in got] == expect.tolist()
    assert [g["tag"] for g in got] == [k % 4096 for k in range(len(accs))]
    assert out["extra"] == 0
