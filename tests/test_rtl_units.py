"""Unit benches of the streaming RTL (Verilator + cocotb): PackedWeightStreamer,
TernaryEngine, Requantizer. Every output element is compared with golden, on random and
extreme inputs, without and with seeded random valid/ready stalls."""
import random

import pytest
import torch

from ternac.golden import numerics as nm
from ternac.golden.packing import pack_i2_word
from ternac.hw.engine import TernaryEngine, engine_in_layout, engine_out_layout
from ternac.hw.requant import Requantizer
from ternac.hw.streamer import StreamCmd, trit_layout
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
