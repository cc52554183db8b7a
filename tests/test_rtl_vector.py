"""Unit benches of the vector units (Verilator + cocotb): Shiftmax, Activation (sigmoid /
SiLU / ShiftGELU), Norm (LayerNorm / RMSNorm), Eltwise (add / multiply), Dot (DOT: rows of
an int8 x int8 or Q15 x int8 dot product, streamed as the sequencer streams them).

Every output element is compared with golden: the vector instructions of golden.vecops
(golden/isa.py: SIGMOID, SILU, GELU, RMSNORM, LAYERNORM, SHIFTMAX, ADD, MUL, with their
OUT8 and NEG flags), driven through the unit's ports as the sequencer drives them
(:func:`_ports`), and the golden/intops.py functions directly where a unit does more than
the ISA uses (Shiftmax at 8 and 16 output bits, the norms' 32-bit bias and eps). Cases:
random vectors, all-equal vectors, one huge outlier, zero variance, max-length (4096)
vectors, extreme scales and multipliers. Each unit is built once (max_len 4096); each run is one
simulation that runs every case as a segment (``sim/bench_units.py::stream_segments``), in
the stall modes of sim/streams.py (seeded): ``make test`` runs each unit once without
stalls (where the cycle counts are checked) and once with its segments rotating through
idle (the sources pause between beats), backpressure (the sink drops ready) and both; the
tests marked slow run every segment in each stalled mode. A passive protocol monitor
watches every stream of each unit (inputs ``i`` and ``c``, output ``o``): valid held until
the transfer, the payload stable while valid and not ready."""
import fcntl
import gc
import random
import warnings

import pytest
import torch
from amaranth.hdl import UnusedElaboratable

from ternac.golden import intops, vecops
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.numerics import dyadic
from ternac.hw.activation import ActMode, Activation
from ternac.hw.activation_serial import SerialActivation
from ternac.hw.dot import Dot
from ternac.hw.eltwise import EltMode, Eltwise
from ternac.hw.norm import Norm, NormMode
from ternac.hw.shiftmax import Shiftmax
from ternac.hw.vector import VEC_IN
from ternac.sim.runner import REPO, build, run_bench
from ternac.sim.streams import (FAST_RUNS, SLOW_RUNS, pack, segment_modes, stream_fields,
                                to_signed)

#: One simulation without stalls and one rotating through the stalled modes; the full cross
#: product (every segment in each stalled mode) in the slow tests.
RUNS = [*FAST_RUNS, *(pytest.param(r, marks=pytest.mark.slow) for r in SLOW_RUNS)]
SEED = 4321
MAX_LEN = 4096
INT16 = (1 << 15) - 1      # the symmetric int16 bound of the golden functions
ACT_MODES = {Op.SIGMOID: ActMode.SIGMOID, Op.SILU: ActMode.SILU, Op.GELU: ActMode.GELU}
NORM_MODES = {Op.LAYERNORM: NormMode.LAYERNORM, Op.RMSNORM: NormMode.RMSNORM}
ELT_MODES = {Op.ADD: EltMode.ADD, Op.MUL: EltMode.MUL}


def _build(dut, name):
    """sim.runner.build under a file lock: under pytest-xdist, two workers that need the
    same unit would otherwise run Verilator in the same build directory at once (the
    second finds the first's build cached). One Verilator build at a time, too. Returns
    ``(runner, build_dir, name, fields)``, ``fields`` the payload fields of every stream
    (sim.streams.stream_fields) for the protocol monitor."""
    fields = stream_fields(dut)
    lock = REPO / "build" / "sim" / ".vector-units.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)      # released when the file closes
        return (*build(dut, name), name, fields)


def _ports(ins: Instr) -> dict:
    """The config port values of the unit that executes the vector instruction ``ins``:
    (m, s) and (m2, s2) (``vecops.m2s2``), ``wide`` = not OUT8, ``neg`` = NEG, the mode."""
    op = Op(ins.op)
    m2, s2 = vecops.m2s2(ins)
    st = {"m": ins.m, "s": ins.s, "neg": int(bool(ins.flags & Flag.NEG))}
    wide = int(not ins.flags & Flag.OUT8)
    if op in ACT_MODES:
        st.update(m2=m2, s2=s2, mode=ACT_MODES[op].value, wide=wide)
    elif op in NORM_MODES:
        st.update(mode=NORM_MODES[op].value, wide=wide, eps=0, bias_en=0)
    elif op in ELT_MODES:
        st.update(m2=m2, s2=s2, mode=ELT_MODES[op].value, wide=wide)
    elif op == Op.DOT:
        st.update(wide=wide)
    return st


def _instr(op, flags=0, m=0, s=0, m2=0, s2=0) -> Instr:
    """A vector instruction with (m2, s2) where golden/isa.py carries them."""
    return Instr(op=op, flags=flags, m=m, s=s, wbase=m2, k=s2)


def _pass(xs, bs=None):
    """The beats of one pass: ``a = xs[j]``, ``b = bs[j]`` (or 0), ``last`` on the final."""
    bs = bs if bs is not None else [0] * len(xs)
    return [pack(VEC_IN, a=x, b=b, last=int(j == len(xs) - 1))
            for j, (x, b) in enumerate(zip(xs, bs))]


def _isa_segment(label, ins, vecs, passes, bvecs=None, **kw):
    """One segment: every vector (with its ``b`` vector) through ``passes`` passes; the
    expected outputs from golden.vecops.vector_op."""
    beats, expect = [], []
    for j, xs in enumerate(vecs):
        bs = bvecs[j] if bvecs is not None else [0] * len(xs)
        beats += _pass(xs, bs) * passes
        expect += vecops.vector_op(ins, torch.tensor(xs), torch.tensor(bs)).tolist()
    return {"label": label, "static": _ports(ins), "beats": beats, "n_out": len(expect),
            "expect": expect, **kw}


def _check(label, got, expect):
    assert len(got) == len(expect), f"{label}: {len(got)} outputs, expected {len(expect)}"
    bad = [j for j, (g, e) in enumerate(zip(got, expect)) if g != e]
    assert not bad, (f"{label}: {len(bad)} of {len(expect)} elements differ; first at {bad[0]}: "
                     f"RTL {got[bad[0]]}, golden {expect[bad[0]]}")


def _run(model, segments, run, side_src=None, decode=None):
    """Run ``segments`` (dicts with ``static``, ``beats``, ``n_out``, optional ``side_beats``;
    ``label`` and ``expect`` stay on this side) in one simulation, in the stall modes of
    ``run`` (sim.streams.segment_modes); check every element, and that the protocol monitor
    watched every stream of the unit and saw every transfer. Returns the segments' results,
    each with its ``mode``."""
    runner, bdir, name, fields = model
    decode = decode or (lambda words: [to_signed(w, 16) for w in words])
    modes = segment_modes(run, len(segments))
    print(f"{name}: seed={SEED} run={run} segments={[s['label'] for s in segments]} "
          f"modes={modes}")
    inputs = {"seed": SEED, "side_src": side_src, "fields": fields,
              "segments": [{**{k: s[k] for k in ("static", "beats", "n_out", "side_beats")
                               if k in s}, "mode": mode} for s, mode in zip(segments, modes)]}
    out = run_bench(runner, bdir, name, "bench_units", inputs=inputs,
                    testcase="stream_segments")
    assert out["extra"] == 0, f"{name}: {out['extra']} outputs too many"
    assert out["violations"] == 0
    assert set(out["streams"]) == set(fields), (out["streams"], fields)   # every stream
    assert out["streams"]["i"] == sum(len(s["beats"]) for s in segments)
    assert out["streams"]["o"] == sum(s["n_out"] for s in segments)
    if side_src:
        assert out["streams"][side_src] == sum(len(s.get("side_beats", ())) for s in segments)
    for seg, res, mode in zip(segments, out["segments"], modes):
        _check(f"{name} [{seg['label']}] {mode}", decode(res["out"]), seg["expect"])
        print(f"  {seg['label']} ({mode}): {seg['n_out']} outputs, {res['cycles']} cycles")
        res["mode"] = mode
    return out["segments"]


def _rand(rng, n, lim):
    return [rng.randint(-lim, lim) for _ in range(n)]


# --- Shiftmax -----------------------------------------------------------------------------

def _shiftmax_isa_segments():
    """SHIFTMAX at the ISA's 15 output bits (golden.vecops)."""
    rng = random.Random(SEED)
    vecs = [_rand(rng, n, 127) for n in (1, 2, 16, 17, 64, 200)]
    vecs += [[37] * 100, [0] * 3,                                # all equal
             [-127] * 63 + [127], [127] + [-127] * 200,          # one outlier, at each end
             [rng.choice((-127, 127)) for _ in range(50)]]
    int16 = [[INT16, -INT16] + _rand(rng, 100, INT16), [-INT16] * 10 + [INT16],
             _rand(rng, 300, INT16)]
    cases = [  # label, scale, flags, vectors, is max length
        ("int8 logits, +-6", 6 / 127, 0, vecs, False),
        ("int8 logits, +-16, NEG", 16 / 127, Flag.NEG, vecs, False),
        ("int8 logits, +-64", 64 / 127, 0, vecs, False),
        ("tiny scale 1e-4 (every e = 2^15)", 1e-4, 0, vecs[:3] + [[-127] * 7 + [127]], False),
        ("huge scale 20 (only the max survives)", 20.0, 0, vecs[:3] + [[5, 5, 4, 5, -127]],
         False),
        ("int16 logits, extremes", 64 / INT16, Flag.NEG, int16, False),
        ("max length 4096, random int8", 16 / 127, 0, [_rand(rng, MAX_LEN, 127)], True),
        ("max length 4096, all equal (T = 2^27)", 8 / 127, 0, [[-3] * MAX_LEN], True),
    ]
    return [_isa_segment(label, _instr(Op.SHIFTMAX, flags, *intops.exp_gain(scale)), v,
                         Shiftmax.passes, long=long_)
            for label, scale, flags, v, long_ in cases]


def _shiftmax_bits_segments(out_bits):
    """golden.intops.shiftmax_q at 8 or 16 output bits (unsigned outputs)."""
    rng = random.Random(SEED + out_bits)
    vecs = [_rand(rng, n, 127) for n in (1, 5, 64, 300)] + [[9] * 40, [-127] * 99 + [127]]
    segs = []
    for label, scale in (("int8 logits, +-8", 8 / 127), ("tiny scale 1e-4", 1e-4),
                         ("huge scale 20", 20.0)):
        m, s = intops.exp_gain(scale)
        beats, expect = [], []
        for xs in vecs:
            beats += _pass(xs) * Shiftmax.passes
            expect += intops.shiftmax_q(torch.tensor(xs), m, s, out_bits).tolist()
        segs.append({"label": f"{label}, {out_bits}-bit", "static": {"m": m, "s": s},
                     "beats": beats, "n_out": len(expect), "expect": expect, "long": False})
    return segs


@pytest.fixture(scope="module", params=[vecops.SHIFTMAX_OUT_BITS, 16, 8],
                ids=lambda b: f"out{b}")
def shiftmax_model(request):
    name = f"shiftmax{request.param}_bench"
    return _build(Shiftmax(out_bits=request.param, max_len=MAX_LEN), name), request.param


@pytest.mark.parametrize("run", RUNS)
def test_shiftmax_every_element(shiftmax_model, run):
    model, out_bits = shiftmax_model
    if out_bits == vecops.SHIFTMAX_OUT_BITS:
        segs = _shiftmax_isa_segments()
    else:
        segs = _shiftmax_bits_segments(out_bits)
    res = _run(model, segs, run, decode=list)     # y is unsigned
    # About one beat a cycle in each of the 3 passes, plus the division and drains.
    for seg, r in zip(segs, res):
        if r["mode"] == "none":
            if seg["long"]:
                assert r["cycles"] <= 3 * MAX_LEN + 60, (seg["label"], r["cycles"])


# --- Activation ---------------------------------------------------------------------------

def _activation_segments():
    rng = random.Random(SEED + 1)
    int8_all = list(range(-127, 128))
    int16 = [INT16, -INT16, 0, 1, -1] + _rand(rng, 400, INT16)
    q15_to_int8 = (127, 15)      # m2 / 2^s2 = 127 / 2^15: a probability as int8
    cases = [  # label, op, flags, scale, (m2, s2) or out_scale, inputs
        ("sigmoid int8 +-8 -> Q15 (32767 at the top)", Op.SIGMOID, 0, 8 / 127, (1, 0), int8_all),
        ("sigmoid int16 +-64 -> Q15, NEG", Op.SIGMOID, Flag.NEG, 64 / INT16, (1, 0), int16),
        ("sigmoid int8 +-8 -> int8", Op.SIGMOID, Flag.OUT8, 8 / 127, q15_to_int8, int8_all),
        ("sigmoid tiny scale 1e-6", Op.SIGMOID, 0, 1e-6, (1, 0), int16),
        ("sigmoid huge scale 100, NEG", Op.SIGMOID, Flag.NEG | Flag.OUT8, 100.0, q15_to_int8,
         int8_all),
        ("silu int8 +-8 -> int8", Op.SILU, Flag.OUT8, 8 / 127, 8 / 127, int8_all),
        ("silu int16 +-64 -> int16", Op.SILU, 0, 64 / INT16, 64 / INT16, int16),
        ("silu int8 +-4 -> int8, saturating, NEG", Op.SILU, Flag.OUT8 | Flag.NEG, 4 / 127,
         0.001, int8_all),
        ("gelu int8 +-16 -> int8", Op.GELU, Flag.OUT8, 16 / 127, 16 / 127, int8_all),
        ("gelu int16 +-8 -> int16, NEG", Op.GELU, Flag.NEG, 8 / INT16, 8 / INT16, int16),
        ("gelu int16 +-64 -> int16, saturating", Op.GELU, 0, 64 / INT16, 1e-3, int16),
        ("gelu int8 +-64 -> int8, coarse out", Op.GELU, Flag.OUT8, 64 / 127, 50.0, int8_all),
        ("gelu huge scale 30", Op.GELU, 0, 30.0, 30.0, int8_all),
    ]
    segs = []
    for label, op, flags, scale, out, xs in cases:
        m, s = intops.exp_gain(scale, intops.GELU_ALPHA if op == Op.GELU else 1.0)
        m2, s2 = out if isinstance(out, tuple) else intops.act_out_multiplier(scale, out)
        seg = _isa_segment(label, _instr(op, flags, m, s, m2, s2), [xs], Activation.passes)
        if op != Op.SIGMOID and not flags & Flag.NEG:
            # The ISA form is the scale-level golden function (int_silu / shift_gelu).
            fn = intops.shift_gelu if op == Op.GELU else intops.int_silu
            assert seg["expect"] == fn(torch.tensor(xs), scale, out,
                                       out_bits=8 if flags & Flag.OUT8 else 16).tolist()
        segs.append(seg)
    return segs


@pytest.fixture(scope="module")
def activation_model():
    dut = Activation()
    return _build(dut, "activation_bench"), dut.latency


@pytest.mark.parametrize("run", RUNS)
def test_activation_every_element(activation_model, run):
    model, latency = activation_model
    segs = _activation_segments()
    res = _run(model, segs, run)
    for seg, r in zip(segs, res):
        if r["mode"] == "none":   # one element a cycle after the pipeline fills
            assert r["cycles"] <= seg["n_out"] + latency + 2, (seg["label"], r["cycles"])


@pytest.fixture(scope="module")
def serial_activation_model():
    dut = SerialActivation()
    return _build(dut, "serial_activation_bench"), dut.latency


@pytest.mark.parametrize("run", RUNS)
def test_serial_activation_every_element(serial_activation_model, run):
    """hw.activation_serial.SerialActivation (one element every four cycles, one shared
    barrel shifter, a four-step divider): the Activation's segments, every element against
    golden, with and without stalls; without stalls it takes an element every
    ``interval`` cycles (a cycle count above that bound fails)."""
    model, latency = serial_activation_model
    segs = _activation_segments()
    # Every int16 x at a gain whose shift-exp output e sweeps [0, 2^15] (12 nats at full
    # scale): the division's low dividend bits change a quotient only near an integer, which
    # the random segments rarely meet (a dividend bit of D2 taken one place off passed them).
    m, s = intops.exp_gain(12 / INT16)
    xs = list(range(-INT16, INT16 + 1))
    segs.append(_isa_segment("sigmoid every int16 x, e over [0, 2^15]",
                             _instr(Op.SIGMOID, 0, m, s, 1, 0), [xs], SerialActivation.passes))
    res = _run(model, segs, run)
    for seg, r in zip(segs, res):
        if r["mode"] == "none":
            bound = SerialActivation.interval * (seg["n_out"] - 1) + latency + 2
            assert r["cycles"] <= bound, (seg["label"], r["cycles"], bound)


@pytest.fixture(scope="module")
def activation_ff_model():
    dut = Activation(x_delay="ff")
    return _build(dut, "activation_ff_bench"), dut.latency


@pytest.mark.parametrize("run", FAST_RUNS)
def test_activation_ff_delay_every_element(activation_ff_model, run):
    """The Activation with x delayed by flip-flops (x_delay="ff", the default before the
    block-RAM delay line): the same segments, every element against golden."""
    model, latency = activation_ff_model
    _run(model, _activation_segments(), run)


@pytest.mark.parametrize("sps, e_reg", [(1, False), (2, False), (3, False), (2, True)])
def test_sigmoid_division_every_e(sps, e_reg):
    """hw.activation.sigmoid_division (Amaranth simulator): for every e in [0, 2^15] (the
    shift-exp core's whole range), fed as t = 2e or 2e - 1 (both round to e), sig+ ==
    (2^30 + (d >> 1)) // d with d = 2^15 + e (golden.intops._sigmoid_core), one a cycle
    with random clock-enable stalls (seed printed); ``e_reg``: with e given registered
    (as a pool shifter slot's rounding register gives it) and the remainder formed from t;
    fails with the e = 0 case or the e = 2^15 remainder dropped, or a dividend bit
    misplaced."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator
    from ternac.hw.activation import sigmoid_division
    from ternac.hw.vector import Pipe, rhu_round
    seed = SEED + sps + 10 * e_reg
    print(f"seed {seed}")
    es = list(range((1 << 15) + 1))
    ts = [2 * e - (e & 1 if e else 0) for e in es]          # 2e or 2e - 1
    m = Module()
    ce, vin, t_in = Signal(), Signal(), Signal(28)
    pipe = Pipe(m, ce, "t")
    t = pipe.reg(t_in)
    v = pipe.reg(vin)
    er = pipe.reg(rhu_round(t), 16) if e_reg else None
    sig_pos, stages = sigmoid_division(m, pipe, t, er, steps_per_stage=sps)
    assert stages == 1 + -(-14 // sps)
    v = pipe.delay(v, stages)
    rng = random.Random(seed)
    got = []

    async def bench(ctx):
        k = 0
        while len(got) < len(ts):
            stall = rng.random() < 0.2
            ctx.set(ce, 0 if stall else 1)
            ctx.set(vin, int(k < len(ts)))
            ctx.set(t_in, ts[k] if k < len(ts) else 0)
            if not stall and ctx.get(v):
                got.append(ctx.get(sig_pos))
            await ctx.tick()
            k += 0 if stall else 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = [((1 << 30) + (((1 << 15) + e) >> 1)) // ((1 << 15) + e) for e in es]
    bad = [(e, g, w) for e, g, w in zip(es, got, want) if g != w]
    assert len(got) == len(want) and not bad, f"{len(bad)} wrong, first {bad[:3]}"


@pytest.mark.parametrize("n", [2, 3, 16, 17, 23, 256])
def test_delay_line_equals_register_chain(n):
    """hw.activation.delay_line (a block-RAM circular buffer) against ``n`` registers on
    the same clock enable (Amaranth simulator): every cycle, 3,000 cycles, random values
    and random enable stalls (seed printed), the two outputs are equal once the chain has
    filled; fails with the read pointer one word off (an n - 1 or n + 1 delay) or a read
    port not held while ``ce`` is low."""
    from amaranth.hdl import Module, Signal, signed
    from amaranth.sim import Simulator
    from ternac.hw.activation import delay_line
    from ternac.hw.vector import Pipe
    seed = SEED + n
    print(f"seed {seed}")
    m = Module()
    ce, x = Signal(), Signal(signed(16))
    want = Pipe(m, ce, "chain").delay(x, n)
    got = delay_line(m, ce, x, n)
    rng = random.Random(seed)
    bad, checked = [], 0

    async def bench(ctx):
        nonlocal checked
        enables = 0
        for cyc in range(3000):
            en = rng.random() < 0.7
            ctx.set(ce, int(en))
            ctx.set(x, rng.randrange(-(1 << 15), 1 << 15))
            if enables >= n:          # the chain holds n values written through ce
                checked += 1
                if ctx.get(got) != ctx.get(want):
                    bad.append((cyc, ctx.get(got), ctx.get(want)))
            await ctx.tick()
            enables += en

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked > 1000 and not bad, f"{len(bad)} of {checked} wrong, first {bad[:3]}"


def test_delay_line_refuses_bad_length():
    from amaranth.hdl import Module, Signal
    from ternac.hw.activation import delay_line
    for n in (0, 1, 257):
        _rejects(lambda: delay_line(Module(), Signal(), Signal(16), n), "2 to 256")


# --- Norm ---------------------------------------------------------------------------------

def _norm_vectors(rng):
    vecs = [_rand(rng, n, 127) for n in (1, 2, 7, 64, 300)] + [_rand(rng, n, INT16)
                                                               for n in (3, 100)]
    vecs += [[42] * 50,                                   # all equal: zero variance
             [0] * 16,                                    # all zero (RMSNorm: V = 0)
             [INT16] + [0] * 99, [0] * 99 + [-INT16],     # one huge outlier
             [100, 101] * 20 + [100],                     # tiny variance
             [0, 1], [7, 6, 7],                           # V = 1, 2: k = 15, y shifted up
             [-289, 82, -240],                            # issue 11: G = 16 at int16
             [rng.choice((-INT16, INT16)) for _ in range(64)]]
    return vecs


def _norm_isa_segments(rng):
    vecs = _norm_vectors(rng)
    p = intops.norm_params(torch.randn(8, generator=torch.Generator().manual_seed(SEED)),
                           None, 0.05, 0.05)
    cases = [  # label, op, flags, m, s, vectors
        ("layernorm -> int8, realistic m/s", Op.LAYERNORM, Flag.OUT8, p.m, p.s, vecs),
        # int16 outputs keep G = 16 fraction bits of y (int8: 8): s sized for that
        ("layernorm -> int16, NEG", Op.LAYERNORM, Flag.NEG, 40000, 35, vecs),
        ("rmsnorm -> int8", Op.RMSNORM, Flag.OUT8, p.m, p.s, vecs),
        ("rmsnorm -> int16, NEG", Op.RMSNORM, Flag.NEG, 12345, 32, vecs),
        ("rmsnorm -> int16, saturating half", Op.RMSNORM, 0, 12345, 27, vecs[:6]),
        ("layernorm extreme m/s: saturating", Op.LAYERNORM, Flag.OUT8, 65535, 0, vecs[:5]),
        ("rmsnorm extreme m/s: all to 0", Op.RMSNORM, 0, 1, 63, vecs[:5]),
        ("layernorm max length 4096, +-32767", Op.LAYERNORM, 0, 30000, 33,
         [[rng.choice((-INT16, INT16)) for _ in range(MAX_LEN)]]),
        ("rmsnorm max length 4096, all 32767", Op.RMSNORM, Flag.OUT8, 50000, 24,
         [[INT16] * MAX_LEN]),
    ]
    segs = []
    for label, op, flags, m, s, v in cases:
        weights = [_rand(rng, len(xs), INT16) for xs in v]
        segs.append(_isa_segment(label, _instr(op, flags, m, s), v, Norm.passes, weights,
                                 long=len(v[0]) == MAX_LEN))
    return segs


def _norm_affine_segments(rng):
    """What the ISA leaves out (bias 0, eps 0 there): the 32-bit bias through ``c`` and the
    integer eps, against golden.intops.int_layernorm / int_rmsnorm directly."""
    vecs = _norm_vectors(rng)
    cases = [  # label, mode, wide, m, s, eps, vectors
        ("layernorm + bias -> int16, eps", NormMode.LAYERNORM, 1, 40000, 32, 12345, vecs),
        ("layernorm + bias, max eps 2^54-1", NormMode.LAYERNORM, 1, 65535, 22,
         intops.NORM_EPS_MAX, vecs[:6]),
        ("rmsnorm + bias -> int8, eps", NormMode.RMSNORM, 0, 12345, 27, 999, vecs),
        ("layernorm + bias, max length 4096, random int8", NormMode.LAYERNORM, 0, 40961, 34,
         7, [_rand(rng, MAX_LEN, 127)]),
    ]
    segs = []
    for label, mode, wide, m, s, eps, v in cases:
        beats, side, expect = [], [], []
        for xs in v:
            w = _rand(rng, len(xs), INT16)
            b = _rand(rng, len(xs), 2 ** 31 - 1)
            fn = intops.int_rmsnorm if mode == NormMode.RMSNORM else intops.int_layernorm
            expect += fn(torch.tensor(xs), torch.tensor(w), torch.tensor(b), m, s, eps=eps,
                         out_bits=16 if wide else 8).tolist()
            beats += _pass(xs, w) * Norm.passes
            side += [v & 0xFFFFFFFF for v in b]
        segs.append({"label": label, "beats": beats, "side_beats": side, "n_out": len(expect),
                     "expect": expect, "long": len(v[0]) == MAX_LEN,
                     "static": {"m": m, "s": s, "eps": eps, "mode": mode.value, "neg": 0,
                                "bias_en": 1, "wide": wide}})
    return segs


@pytest.fixture(scope="module")
def norm_model():
    return _build(Norm(max_len=MAX_LEN), "norm_bench")


@pytest.mark.parametrize("run", RUNS)
def test_norm_every_element(norm_model, run):
    rng = random.Random(SEED + 2)
    segs = _norm_isa_segments(rng) + _norm_affine_segments(rng)
    res = _run(norm_model, segs, run, side_src="c")
    # two passes at a beat a cycle, < 100 cycles of sums, isqrt, division
    for seg, r in zip(segs, res):
        if r["mode"] == "none":
            if seg["long"]:
                assert r["cycles"] <= 2 * MAX_LEN + 130, (seg["label"], r["cycles"])


@pytest.fixture(scope="module")
def norm_isa_model():
    return _build(Norm(max_len=MAX_LEN, affine=False), "norm_isa_bench")


@pytest.mark.parametrize("run", RUNS)
def test_norm_without_affine_every_element(norm_isa_model, run):
    """The accelerators' Norm (``affine=False``: bias and eps 0, as the ISA has them,
    hw/vector_units.py) on every ISA segment, with the same cycle bound."""
    rng = random.Random(SEED + 2)
    segs = _norm_isa_segments(rng)
    res = _run(norm_isa_model, segs, run, side_src="c")
    for seg, r in zip(segs, res):
        if r["mode"] == "none" and seg["long"]:
            assert r["cycles"] <= 2 * MAX_LEN + 130, (seg["label"], r["cycles"])


@pytest.fixture(scope="module")
def norm_fast_model():
    return _build(Norm(max_len=MAX_LEN, affine=False, work_steps=2), "norm_fast_bench")


@pytest.mark.parametrize("run", RUNS)
def test_norm_two_bits_a_cycle_every_element(norm_fast_model, run):
    """The Norm with its between-pass work two bits a cycle (``work_steps=2``,
    AccelConfig.norm_steps: the ULX3S LM's) on every ISA segment (RMSNorm and LayerNorm),
    every element equal to golden, and faster than the bound of one bit a cycle."""
    rng = random.Random(SEED + 2)
    segs = _norm_isa_segments(rng)
    res = _run(norm_fast_model, segs, run, side_src="c")
    for seg, r in zip(segs, res):
        if r["mode"] == "none" and seg["long"]:
            assert r["cycles"] <= 2 * MAX_LEN + 100, (seg["label"], r["cycles"])


@pytest.fixture(scope="module")
def norm_rms_model():
    return _build(Norm(max_len=MAX_LEN, affine=False, layernorm=False), "norm_rms_bench")


@pytest.mark.parametrize("run", RUNS)
def test_norm_rmsnorm_alone_every_element(norm_rms_model, run):
    """The LM's Norm (``affine=False, layernorm=False``: a build without LAYERNORM,
    hw/vector_units.py) on every RMSNORM segment of the ISA cases, with the same cycle
    bound."""
    rng = random.Random(SEED + 2)
    segs = [sg for sg in _norm_isa_segments(rng) if sg["label"].startswith("rmsnorm")]
    assert len(segs) == 5
    res = _run(norm_rms_model, segs, run, side_src="c")
    for seg, r in zip(segs, res):
        if r["mode"] == "none" and seg["long"]:
            assert r["cycles"] <= 2 * MAX_LEN + 130, (seg["label"], r["cycles"])


# --- Eltwise ------------------------------------------------------------------------------

def _eltwise_segments():
    rng = random.Random(SEED + 3)
    ext = [-32768, -INT16, -256, -128, -127, -1, 0, 1, 127, 128, 255, INT16]
    pairs = [(a, b) for a in ext for b in ext]
    pairs += [(rng.randint(-32768, INT16), rng.randint(-32768, INT16)) for _ in range(300)]
    pairs += [(rng.randint(-127, 127), rng.randint(-127, 127)) for _ in range(100)]
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    cases = [  # label, op, flags, m, s, m2, s2
        ("add, unit scales -> int8", Op.ADD, Flag.OUT8, 1, 0, 1, 0),
        ("add, unit scales -> int16", Op.ADD, 0, 1, 0, 1, 0),
        ("a - b, unit scales -> int16", Op.ADD, Flag.NEG, 1, 0, 1, 0),
        ("add, rescaled -> int16", Op.ADD, 0, 40000, 16, 23456, 15),
        ("add, m = 65535, s = 0 / s2 = 63 -> int8", Op.ADD, Flag.OUT8, 65535, 0, 65535, 63),
        ("mul -> int16, m/2^s = 2^-15", Op.MUL, 0, 1, 15, 0, 0),
        ("mul -> int8, realistic", Op.MUL, Flag.OUT8, 40000, 30, 0, 0),
        ("mul -> int16, m = 65535, s = 0, NEG", Op.MUL, Flag.NEG, 65535, 0, 0, 0),
        ("mul -> int16, s = 63", Op.MUL, 0, 65535, 63, 0, 0),
        ("mul -> int8, odd m, NEG", Op.MUL, Flag.OUT8 | Flag.NEG, 12345, 20, 0, 0),
    ]
    return [_isa_segment(label, _instr(op, flags, m, s, m2, s2), [a], Eltwise.passes, [b])
            for label, op, flags, m, s, m2, s2 in cases]


@pytest.fixture(scope="module")
def eltwise_model():
    return _build(Eltwise(), "eltwise_bench")


@pytest.mark.parametrize("run", RUNS)
def test_eltwise_every_element(eltwise_model, run):
    segs = _eltwise_segments()
    res = _run(eltwise_model, segs, run)
    for seg, r in zip(segs, res):
        if r["mode"] == "none":
            assert r["cycles"] <= seg["n_out"] + Eltwise.latency + 2, (seg["label"], r)


# --- Dot ----------------------------------------------------------------------------------

DOT_MAX_LEN = 64


def _dot_segment(label, flags, m, s, problems):
    """One segment: every ``(a, b)`` problem (``a`` of k, ``b`` of n * k) as the sequencer
    streams a DOT instruction (row j: ``a[i]``, ``b[j k + i]``, ``last`` at i = k - 1); the
    expected rows from golden.vecops.vector_op (golden.vecops.dot)."""
    beats, expect = [], []
    for a, b in problems:
        k = len(a)
        for j in range(len(b) // k):
            beats += [pack(VEC_IN, a=a[i], b=b[j * k + i], last=int(i == k - 1))
                      for i in range(k)]
        ins = Instr(op=Op.DOT, flags=int(flags), m=m, s=s, k=k)
        expect += vecops.vector_op(ins, torch.tensor(a), torch.tensor(b)).tolist()
    return {"label": label, "static": _ports(Instr(op=Op.DOT, flags=int(flags), m=m, s=s)),
            "beats": beats, "n_out": len(expect), "expect": expect}


def _dot_segments():
    rng = random.Random(SEED + 4)
    ext_a = [INT16, -INT16, -32768]
    ext_b = [127, -127]

    def problems(a_of, b_of, shapes):
        return [([a_of() for _ in range(k)], [b_of() for _ in range(n * k)]) for n, k in shapes]

    shapes = [(1, 1), (17, 16), (3, DOT_MAX_LEN), (9, 17), (5, 2), (1, DOT_MAX_LEN)]
    int8 = problems(lambda: rng.randint(-127, 127), lambda: rng.randint(-127, 127), shapes)
    q15 = problems(lambda: rng.randint(0, INT16), lambda: rng.randint(-127, 127), shapes)
    ext = problems(lambda: rng.choice(ext_a), lambda: rng.choice(ext_b), shapes)
    # Rows that saturate each way: a constant at the extremes times b of one sign.
    worst = [([INT16] * DOT_MAX_LEN, [127] * DOT_MAX_LEN + [-127] * DOT_MAX_LEN),
             ([-32768] * DOT_MAX_LEN, [-127] * DOT_MAX_LEN + [127] * DOT_MAX_LEN),
             ([-32768], [-127]), ([INT16], [0])]
    m_qk, s_qk = dyadic(1 / 8 / 127)          # int8 Q.K^T, d = 64, to int8
    m_pv, s_pv = dyadic(2 ** -15)             # Q15 P.V to the scale of V
    cases = [  # label, flags, m, s, problems
        ("Q.K^T int8 x int8 -> int8", Flag.OUT8, m_qk, s_qk, int8),
        ("Q.K^T int8 x int8 -> int16, NEG", Flag.NEG, 40000, 20, int8),
        ("P.V Q15 x int8 -> int8", Flag.OUT8, m_pv, s_pv, q15),
        ("P.V Q15 x int8 -> int16", 0, 65535, 31, q15),
        ("extremes +-32767/-32768 x +-127 -> int16", 0, 1, 12, ext),
        ("extremes -> int8, NEG", Flag.OUT8 | Flag.NEG, 1, 20, ext),
        ("exact sums, m = 1, s = 0 -> int16", 0, 1, 0,
         problems(lambda: rng.randint(-3, 3), lambda: rng.randint(-127, 127), shapes)),
        ("worst rows, m = 65535, s = 0: saturating", 0, 65535, 0, worst),
        ("worst rows, m = 65535, s = 63 (the widest product, rounded to 0)", Flag.NEG,
         65535, 63, worst),
        ("worst rows, m = 65535, s = 44 -> int8", Flag.OUT8, 65535, 44, worst),
    ]
    return [_dot_segment(label, flags, m, s, probs) for label, flags, m, s, probs in cases]


@pytest.fixture(scope="module")
def dot_model():
    return _build(Dot(max_len=DOT_MAX_LEN), "dot_bench")


@pytest.mark.parametrize("run", RUNS)
def test_dot_every_element(dot_model, run):
    segs = _dot_segments()
    res = _run(dot_model, segs, run)
    flat = [v for seg in segs for v in seg["expect"]]
    assert {127, -127, INT16, -INT16} <= set(flat)      # every saturation bound is reached
    for seg, r in zip(segs, res):
        if r["mode"] == "none":   # one beat a cycle, rows back to back
            assert r["cycles"] <= len(seg["beats"]) + Dot.latency + 2, (seg["label"], r)


# --- Parameters ---------------------------------------------------------------------------

def _rejects(make, match):
    """``make()`` raises ValueError matching ``match``; the half-built component's
    UnusedElaboratable warning (emitted when it is collected) is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=match):
            make()
        gc.collect()


def test_unit_parameters_are_checked():
    for bad in (0, 17, 8.0):
        _rejects(lambda: Shiftmax(out_bits=bad), "out_bits")
    for bad in (0, 4097):
        _rejects(lambda: Shiftmax(max_len=bad), "max_len")
        _rejects(lambda: Norm(max_len=bad), "max_len")
    _rejects(lambda: Activation(steps_per_stage=0), "steps_per_stage")
    _rejects(lambda: Activation(x_delay="ebr"), "x_delay")
    assert (Shiftmax.passes, Activation.passes, Norm.passes, Eltwise.passes) == (3, 1, 2, 1)
