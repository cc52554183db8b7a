"""``ternac sim``: one cocotb bench of one RTL unit, for a user, with a waveform to look at.

    ternac sim UNIT [--waves FILE.vcd|FILE.fst] [--seed N] [--stall P] [--build-dir DIR]

UNIT is one of :data:`UNITS`: ``streamer`` (PackedWeightStreamer, I2, over its weight
memory), ``engine`` (TernaryEngine), ``requantizer``, the vector units ``activation``,
``norm``, ``eltwise``, ``shiftmax``, ``dot``, and ``top`` (the whole Accelerator running the
compiled digits classifier, L=8, on a few test digits). The bench sends seeded random and
extreme inputs (``--seed``, default 1) with seeded random valid/ready stalls of
probability ``--stall`` on its input and output streams (default 0.3; the top's host port
has no stream to stall), and every output element is compared with the golden function
named in the result line (and, for the stream units, the output stream's valid/ready
contract is checked by a passive monitor). The same benches as tests/test_rtl_units.py and
tests/test_rtl_vector.py (sim/bench_units.py, sim/bench_top.py), with fewer cases.

``--waves FILE`` writes a waveform of every signal of the unit (Verilator ``--trace``),
which GTKWave and Surfer open: VCD for ``.vcd``; for ``.fst`` an FST where Verilator's FST
writer can be built (it needs the lz4 and zlib headers: Debian's liblz4-dev and
zlib1g-dev), else a VCD beside it with one sentence saying so (no pip package converts VCD
to FST). A traced build is a build of its own (sim.runner.build ``waves=``: its own cache
key and folder), so the untraced builds the tests and the other commands use stay as they
are.

Exit codes: 0 every element equal to golden; 1 a difference, a contract violation or a
failing bench; 2 bad input (an unknown unit, a --stall outside [0, 1), a --seed that is not
a whole number from 0 to 2^32 - 1, a --waves path that cannot be written or does not end in .vcd or .fst), one
sentence on stderr.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import subprocess
import sys
import time

from ternac.cliargs import number, range_message, whole
from ternac.errors import InputError, check_output_file

__all__ = ["UNITS", "add_sim_parser", "sim_main", "run_unit", "fst_available"]

#: The units ``ternac sim`` runs.
UNITS = ("streamer", "engine", "requantizer", "activation", "norm", "eltwise", "shiftmax",
         "dot", "top")
DEFAULT_SEED = 1
DEFAULT_STALL = 0.3
INT16 = (1 << 15) - 1


#: Seeds of the benches: random.Random takes any int >= 0 without wrapping, so the bound
#: is the CLI's other seeds' (train, generate, sweep): 32 bits.
SEED_MAX = (1 << 32) - 1
_SEED_WHY = "a negative seed would give the inputs and stalls of its absolute value"
_seed = whole("--seed", 0, SEED_MAX, why=_SEED_WHY)
_STALL = {"lo": 0, "hi": 1, "noun": "a probability", "below": True}
_stall = number("--stall", **_STALL)


def add_sim_parser(sub) -> None:
    """Add ``sim`` to an argparse subparsers object (``--seed`` and ``--stall`` are checked
    by their types, the unit and the paths by :func:`run_unit`, so a bad one is one
    sentence)."""
    p = sub.add_parser("sim", help="run one unit's cocotb bench against golden, optionally "
                                   "writing a waveform (VCD/FST)")
    p.add_argument("unit", metavar="UNIT", help=f"one of {', '.join(UNITS)}")
    p.add_argument("--waves", default=None, metavar="FILE",
                   help="write a waveform of every signal (FILE.vcd, or FILE.fst where "
                        "Verilator's FST writer builds) for GTKWave or Surfer")
    p.add_argument("--seed", type=_seed, default=DEFAULT_SEED,
                   help=f"seed of the inputs and the stalls, 0 to 2^32 - 1 (default "
                        f"{DEFAULT_SEED})")
    p.add_argument("--stall", type=_stall, default=None, metavar="P",
                   help=f"probability of a stall cycle on valid and on ready, 0 <= P < 1 "
                        f"(default {DEFAULT_STALL}; the top has none)")
    p.add_argument("--build-dir", default=None,
                   help="root of the Verilator builds (default: sim.runner's, build/sim)")
    p.add_argument("--quiet", action="store_true", help="no build messages")
    p.set_defaults(func=sim_main)


# ----------------------------------------------------------------------------- waveforms

def fst_available() -> bool:
    """Whether Verilator's FST writer can be compiled and linked here: a C++ program that
    includes ``lz4.h`` and ``zlib.h`` and links ``-llz4 -lz`` (what verilated.mk adds for
    an FST build) builds."""
    src = ('#include <lz4.h>\n#include <zlib.h>\n'
           'int main() { return LZ4_versionNumber() > 0 && zlibVersion() ? 0 : 1; }\n')
    try:
        r = subprocess.run(["c++", "-x", "c++", "-", "-o", os.devnull, "-llz4", "-lz"],
                           input=src, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _waves_target(path: str | None, say) -> tuple[pathlib.Path | None, str | None]:
    """The waveform file and its format (``"vcd"`` / ``"fst"``) for ``--waves path``.
    Raises InputError (one sentence) for a path that cannot be written or a suffix that
    is neither .vcd nor .fst."""
    if path is None:
        return None, None
    check_output_file(path, "waveform", make_folder=True)
    p = pathlib.Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".vcd", ".fst"):
        raise InputError(f"the waveform {path} must end in .vcd or .fst")
    if suffix == ".fst":
        if fst_available():
            return p.resolve(), "fst"
        vcd = p.with_suffix(".vcd")
        say(f"ternac: FST needs the lz4 and zlib development headers (Debian: apt-get install "
            f"liblz4-dev zlib1g-dev), which this machine lacks, so the waveform is a VCD, "
            f"{vcd}, instead.")
        check_output_file(str(vcd), "waveform")
        return vcd.resolve(), "vcd"
    return p.resolve(), "vcd"


# ----------------------------------------------------------------------------- benches

@dataclasses.dataclass
class Bench:
    """One bench run: the component built as ``name``, the cocotb ``module`` /
    ``testcase`` with its JSON ``inputs``, and ``check(out) -> (compared, mismatches,
    notes)`` on the bench's output (``mismatches``: a list of ``(where, rtl, golden)``)."""
    unit: str
    what: str
    component: object
    name: str
    module: str
    testcase: str | None
    inputs: dict
    check: object
    golden: str
    elements: str
    top: tuple | None = None      # (cfg, weight_words, program_words): the Accelerator


def _compare(got: list, expect: list, label) -> list:
    bad = [(label(j), g, e) for j, (g, e) in enumerate(zip(got, expect)) if g != e]
    if len(got) != len(expect):
        bad.append((f"{len(got)} outputs for {len(expect)}", len(got), len(expect)))
    return bad


def _segment_bench(unit, what, component, name, segments, decode, golden, elements,
                   seed, stall, side_src=None, src="i") -> Bench:
    """A stream unit driven by bench_units.stream_segments: ``segments`` are dicts with
    ``label``, ``static``, ``beats``, ``n_out``, ``expect`` (and ``side_beats``)."""
    longest = max(len(s["beats"]) + len(s.get("side_beats", ())) for s in segments)
    inputs = {"seed": seed, "stall": stall, "monitor": True, "side_src": side_src, "src": src,
              # a unit that loses a beat fails its segment instead of hanging
              "max_cycles": int(12 * longest / (1 - stall) ** 2) + 2000,
              "segments": [{k: s[k] for k in ("static", "beats", "n_out", "side_beats")
                            if k in s} for s in segments]}

    def check(out):
        bad, n = [], 0
        for seg, res in zip(segments, out["segments"]):
            got = decode(res["out"])
            n += len(seg["expect"])
            bad += _compare(got, seg["expect"], lambda j, l=seg["label"]: f"[{l}] element {j}")
        notes = {"cycles": sum(r["cycles"] for r in out["segments"]),
                 "beats": out["beats"], "violations": out["violations"], "extra": out["extra"]}
        return n, bad, notes
    return Bench(unit, what, component, name, "bench_units", "stream_segments", inputs, check,
                 golden, elements)


def _rand(rng, n, lim):
    return [rng.randint(-lim, lim) for _ in range(n)]


def _streamer(rng, seed, stall) -> Bench:
    import warnings

    from amaranth.hdl import UnusedElaboratable
    # StreamerBench elaborates a prototype streamer only to read its port signature.
    warnings.filterwarnings("ignore", category=UnusedElaboratable)
    from ternac.golden.packing import pack_i2_word
    from ternac.hw.streamer import StreamCmd, trit_layout
    from ternac.sim.streams import pack, unpack
    from ternac.sim.wrappers import StreamerBench
    lanes, depth = 8, 64
    rows = [[rng.choice((-1, 0, 1)) for _ in range(lanes)] for _ in range(depth - 3)]
    rows += [[1] * lanes, [-1] * lanes, [0] * lanes]            # the extremes
    words = [pack_i2_word(r) for r in rows]
    cmds = [(0, depth), (depth - 3, 3), (5, 1)]
    cmds += [(b, rng.randint(1, depth - b)) for b in (rng.randrange(depth) for _ in range(6))]
    layout = trit_layout(lanes)
    expect = [{"nz": sum((v != 0) << l for l, v in enumerate(rows[a])),
               "neg": sum((v < 0) << l for l, v in enumerate(rows[a])),
               "last": int(a == b + c - 1)} for b, c in cmds for a in range(b, b + c)]
    seg = {"label": "commands " + " ".join(f"{b}+{c}" for b, c in cmds), "static": {},
           "beats": [pack(StreamCmd, base=b, count=c) for b, c in cmds],
           "n_out": len(expect), "expect": expect}
    return _segment_bench(
        "streamer", f"PackedWeightStreamer (I2, {lanes} lanes) over a {depth}-word weight "
        f"memory, {len(cmds)} commands", StreamerBench(lanes=lanes, words=words, depth=depth),
        "streamer_bench", [seg], lambda ws: [unpack(layout, w) for w in ws],
        "the trits golden.packing.pack_i2_word packed", "words", seed, stall, src="cmd")


def _engine(rng, seed, stall) -> Bench:
    import torch

    from ternac.golden import numerics as nm
    from ternac.hw.engine import TernaryEngine, engine_in_layout, engine_out_layout
    from ternac.sim.streams import pack, unpack
    lanes, max_k = 8, 300                  # tests/test_rtl_units.py's engine: its build
    acc_bits = nm.acc_width(max_k)
    tiles = [[([t] * lanes, x) for _ in range(max_k)] for t, x in ((1, 127), (-1, -127))]
    for k in (1, 3, 8, 9, rng.randint(10, max_k), rng.randint(10, max_k)):
        tiles.append([([rng.choice((-1, 0, 1)) for _ in range(lanes)], rng.randint(-127, 127))
                      for _ in range(k)])
    layout = engine_in_layout(lanes)
    beats, expect = [], []
    for tile in tiles:
        trits = torch.tensor([t for t, _ in tile], dtype=torch.int8).T
        accs = nm.ternary_matvec(trits, torch.tensor([x for _, x in tile])).tolist()
        expect += [{"acc": a, "last": int(l == lanes - 1)} for l, a in enumerate(accs)]
        beats += [pack(layout, x=x, nz=sum((v != 0) << l for l, v in enumerate(t)),
                       neg=sum((v < 0) << l for l, v in enumerate(t)),
                       last=int(k == len(tile) - 1)) for k, (t, x) in enumerate(tile)]
    seg = {"label": f"tiles of K {[len(t) for t in tiles]}", "static": {}, "beats": beats,
           "n_out": len(expect), "expect": expect}
    out_layout = engine_out_layout(acc_bits)
    return _segment_bench(
        "engine", f"TernaryEngine, {lanes} lanes, {acc_bits}-bit accumulators, {len(tiles)} "
        f"tiles", TernaryEngine(lanes=lanes, acc_bits=acc_bits), "engine_bench", [seg],
        lambda ws: [unpack(out_layout, w) for w in ws],
        "ternac.golden.numerics.ternary_matvec", "accumulators", seed, stall)


def _requantizer(rng, seed, stall) -> Bench:
    import torch
    from amaranth.hdl import signed
    from amaranth.lib import data

    from ternac.golden import numerics as nm
    from ternac.hw.requant import Requantizer
    from ternac.sim.streams import pack, unpack
    acc_bits, tag_bits = 20, 12            # tests/test_rtl_units.py's requantizer
    lim = (1 << (acc_bits - 1)) - 1
    in_layout = data.StructLayout({"acc": signed(acc_bits), "tag": tag_bits})
    out_layout = data.StructLayout({"y": signed(16), "tag": tag_bits})
    segs = []
    for m, s, relu, wide in ((3, 2, 0, 0), (40000, 20, 1, 0), (65535, 25, 0, 1), (1, 0, 0, 1),
                             (rng.randint(1, 65535), rng.randint(0, 40), 0, rng.randint(0, 1))):
        accs = [0, 1, -1, lim, -lim - 1] + [rng.randint(-lim - 1, lim) for _ in range(60)]
        hi = nm.WIDE_MAX if wide else nm.ACT_MAX
        y = nm.requantize(torch.tensor(accs), m, s, -hi, hi)
        y = nm.relu(y) if relu else y
        segs.append({"label": f"m={m} s={s} relu={relu} wide={wide}",
                     "static": {"m": m, "s": s, "relu": relu, "wide": wide},
                     "beats": [pack(in_layout, acc=a, tag=k) for k, a in enumerate(accs)],
                     "n_out": len(accs),
                     "expect": [{"y": v, "tag": k} for k, v in enumerate(y.tolist())]})
    return _segment_bench(
        "requantizer", f"Requantizer, {acc_bits}-bit accumulators, {len(segs)} (m, s) settings",
        Requantizer(acc_bits=acc_bits, tag_bits=tag_bits), "requant_bench", segs,
        lambda ws: [unpack(out_layout, w) for w in ws],
        "golden.numerics.requantize (+ relu)", "outputs", seed, stall)


def _vec_ports(ins) -> dict:
    """The config ports of the unit that executes vector instruction ``ins`` (as the
    sequencer drives them; tests/test_rtl_vector.py's ``_ports``)."""
    from ternac.golden import vecops
    from ternac.golden.isa import Flag, Op
    from ternac.hw.activation import ActMode
    from ternac.hw.eltwise import EltMode
    from ternac.hw.norm import NormMode
    op = Op(ins.op)
    m2, s2 = vecops.m2s2(ins)
    st = {"m": ins.m, "s": ins.s, "neg": int(bool(ins.flags & Flag.NEG))}
    wide = int(not ins.flags & Flag.OUT8)
    acts = {Op.SIGMOID: ActMode.SIGMOID, Op.SILU: ActMode.SILU, Op.GELU: ActMode.GELU}
    if op in acts:
        st.update(m2=m2, s2=s2, mode=acts[op].value, wide=wide)
    elif op in (Op.LAYERNORM, Op.RMSNORM):
        mode = NormMode.LAYERNORM if op == Op.LAYERNORM else NormMode.RMSNORM
        st.update(mode=mode.value, wide=wide, eps=0, bias_en=0)
    elif op in (Op.ADD, Op.MUL):
        st.update(m2=m2, s2=s2, mode=(EltMode.ADD if op == Op.ADD else EltMode.MUL).value,
                  wide=wide)
    elif op == Op.DOT:
        st.update(wide=wide)
    return st


def _isa_segment(label, ins, vecs, passes, bvecs=None) -> dict:
    """Every vector (and its ``b``) through ``passes`` passes; golden.vecops.vector_op."""
    import torch

    from ternac.golden import vecops
    from ternac.hw.vector import VEC_IN
    from ternac.sim.streams import pack
    beats, expect = [], []
    for j, xs in enumerate(vecs):
        bs = bvecs[j] if bvecs is not None else [0] * len(xs)
        one = [pack(VEC_IN, a=x, b=b, last=int(i == len(xs) - 1))
               for i, (x, b) in enumerate(zip(xs, bs))]
        beats += one * passes
        expect += vecops.vector_op(ins, torch.tensor(xs), torch.tensor(bs)).tolist()
    return {"label": label, "static": _vec_ports(ins), "beats": beats, "n_out": len(expect),
            "expect": expect}


def _vector(unit, rng, seed, stall) -> Bench:
    from ternac.golden import intops
    from ternac.golden.isa import Flag, Instr, Op
    from ternac.golden.numerics import dyadic
    from ternac.hw.vector import VEC_IN
    from ternac.sim.streams import pack, to_signed
    signed16 = lambda ws: [to_signed(w, 16) for w in ws]         # noqa: E731

    def ins(op, flags=0, m=0, s=0, m2=0, s2=0):
        return Instr(op=op, flags=int(flags), m=m, s=s, wbase=m2, k=s2)
    int8 = [rng.randint(-127, 127) for _ in range(64)]
    if unit == "activation":
        from ternac.hw.activation import Activation
        xs = list(range(-127, 128))
        int16 = [INT16, -INT16, 0] + _rand(rng, 100, INT16)
        cases = [("sigmoid int8 +-8 -> Q15", Op.SIGMOID, 0, 8 / 127, (1, 0), xs),
                 ("sigmoid int16 +-64 -> int8, NEG", Op.SIGMOID, Flag.NEG | Flag.OUT8,
                  64 / INT16, (127, 15), int16),
                 ("silu int8 +-8 -> int8", Op.SILU, Flag.OUT8, 8 / 127, 8 / 127, xs),
                 ("gelu int16 +-8 -> int16", Op.GELU, 0, 8 / INT16, 8 / INT16, int16)]
        segs = []
        for label, op, flags, scale, out, v in cases:
            m, s = intops.exp_gain(scale, intops.GELU_ALPHA if op == Op.GELU else 1.0)
            m2, s2 = out if isinstance(out, tuple) else intops.act_out_multiplier(scale, out)
            segs.append(_isa_segment(label, ins(op, flags, m, s, m2, s2), [v],
                                     Activation.passes))
        return _segment_bench(unit, "Activation (sigmoid, SiLU, ShiftGELU)", Activation(),
                              "activation_bench", segs, signed16,
                              "golden.vecops.vector_op (SIGMOID, SILU, GELU)", "outputs",
                              seed, stall)
    if unit == "norm":
        from ternac.hw.norm import Norm
        vecs = [int8, _rand(rng, 100, INT16), [42] * 20, [0] * 8, [INT16] + [0] * 31]
        w = [_rand(rng, len(v), INT16) for v in vecs]
        segs = [_isa_segment("layernorm -> int8", ins(Op.LAYERNORM, Flag.OUT8, 40000, 30),
                             vecs, Norm.passes, w),
                _isa_segment("rmsnorm -> int16, NEG", ins(Op.RMSNORM, Flag.NEG, 12345, 32),
                             vecs, Norm.passes, w)]
        return _segment_bench(unit, "Norm (LayerNorm, RMSNorm)", Norm(max_len=4096),
                              "norm_bench", segs, signed16,
                              "golden.vecops.vector_op (LAYERNORM, RMSNORM)", "outputs",
                              seed, stall, side_src="c")
    if unit == "eltwise":
        from ternac.hw.eltwise import Eltwise
        ext = [-32768, -INT16, -128, -1, 0, 1, 127, INT16]
        a = [x for x in ext for _ in ext] + _rand(rng, 100, INT16)
        b = [y for _ in ext for y in ext] + _rand(rng, 100, INT16)
        segs = [_isa_segment("add -> int8", ins(Op.ADD, Flag.OUT8, 1, 0, 1, 0), [a], 1, [b]),
                _isa_segment("a - b, rescaled -> int16", ins(Op.ADD, Flag.NEG, 40000, 16,
                                                             23456, 15), [a], 1, [b]),
                _isa_segment("mul -> int16", ins(Op.MUL, 0, 1, 15), [a], 1, [b]),
                _isa_segment("mul -> int8, NEG", ins(Op.MUL, Flag.OUT8 | Flag.NEG, 12345, 20),
                             [a], 1, [b])]
        return _segment_bench(unit, "Eltwise (add, multiply)", Eltwise(), "eltwise_bench",
                              segs, signed16, "golden.vecops.vector_op (ADD, MUL)", "outputs",
                              seed, stall)
    if unit == "shiftmax":
        from ternac.golden import vecops
        from ternac.hw.shiftmax import Shiftmax
        vecs = [int8, _rand(rng, 17, 127), [37] * 30, [-127] * 15 + [127]]
        segs = [_isa_segment(f"int8 logits, +-{r}", ins(Op.SHIFTMAX, 0, *intops.exp_gain(r / 127)),
                             vecs, Shiftmax.passes) for r in (6, 16)]
        segs.append(_isa_segment("int16 logits, NEG", ins(Op.SHIFTMAX, Flag.NEG,
                                                          *intops.exp_gain(64 / INT16)),
                                 [[INT16, -INT16] + _rand(rng, 50, INT16)], Shiftmax.passes))
        return _segment_bench(unit, f"Shiftmax ({vecops.SHIFTMAX_OUT_BITS}-bit outputs)",
                              Shiftmax(out_bits=vecops.SHIFTMAX_OUT_BITS, max_len=4096),
                              f"shiftmax{vecops.SHIFTMAX_OUT_BITS}_bench", segs, list,
                              "golden.vecops.vector_op (SHIFTMAX)", "outputs", seed, stall)
    if unit == "dot":
        import torch

        from ternac.golden import vecops
        from ternac.hw.dot import Dot
        segs = []
        m_qk, s_qk = dyadic(1 / 8 / 127)
        for label, flags, m, s, a_lim in (("Q.K^T int8 x int8 -> int8", Flag.OUT8, m_qk, s_qk,
                                           127),
                                          ("Q15 x int8 -> int16, NEG", Flag.NEG, 65535, 31,
                                           INT16)):
            beats, expect = [], []
            for n, k in ((1, 1), (5, 16), (3, 64), (2, 17)):
                a = _rand(rng, k, a_lim)
                b = _rand(rng, n * k, 127)
                for j in range(n):
                    beats += [pack(VEC_IN, a=a[i], b=b[j * k + i], last=int(i == k - 1))
                              for i in range(k)]
                expect += vecops.vector_op(Instr(op=Op.DOT, flags=int(flags), m=m, s=s, k=k),
                                           torch.tensor(a), torch.tensor(b)).tolist()
            segs.append({"label": label, "beats": beats, "n_out": len(expect),
                         "expect": expect,
                         "static": _vec_ports(Instr(op=Op.DOT, flags=int(flags), m=m, s=s))})
        return _segment_bench(unit, "Dot (rows of a dot product)", Dot(max_len=64),
                              "dot_bench", segs, signed16, "golden.vecops.vector_op (DOT)",
                              "rows", seed, stall)
    raise AssertionError(unit)


def _top(rng, seed, stall) -> Bench:
    from ternac.golden import mlp
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.vecops import argmax
    from ternac.lower import compile_mlp
    from ternac.runner import accel_config
    layers = mlp.int_layers_from_checkpoint(mlp.DEFAULT_CHECKPOINT)
    cfg = accel_config(8)
    c = compile_mlp(layers, cfg)
    _, _, x_te, _ = load_split()
    pick = sorted(rng.sample(range(len(x_te)), 4))
    x = quantize_pixels(x_te[pick])
    golden = mlp.int_forward(layers, x)
    ref_logits, ref_results = golden.tolist(), argmax(golden).tolist()
    inputs = {"inputs": x.tolist(), "input_addr": c.input_addr, "logits_addr": c.logits_addr,
              "n_logits": c.n_logits}

    def check(out):
        bad = []
        for j, (got, exp) in enumerate(zip(out["logits"], ref_logits)):
            bad += _compare(got, exp, lambda i, j=j: f"digit {pick[j]} logit {i}")
        bad += _compare(out["results"], ref_results, lambda j: f"digit {pick[j]} ARGMAX")
        return (len(ref_logits) * c.n_logits + len(ref_results), bad,
                {"cycles": sum(out["cycles"]), "per_inference": out["cycles"]})
    return Bench("top", f"Accelerator (L={cfg.lanes}) running the compiled digits classifier "
                        f"({len(c.program)} instructions) on test digits {pick}",
                 None, f"ternac_top_L{cfg.lanes}", "bench_top", None, inputs, check,
                 "golden.mlp.int_forward (logits) and golden.vecops.argmax", "values",
                 top=(cfg, c.weight_words, c.program_words))


def make_bench(unit: str, seed: int, stall: float) -> Bench:
    """The bench of ``unit`` for ``seed`` and ``stall``. Raises InputError for an unknown
    unit."""
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    rng = random.Random(seed)
    if unit == "streamer":
        return _streamer(rng, seed, stall)
    if unit == "engine":
        return _engine(rng, seed, stall)
    if unit == "requantizer":
        return _requantizer(rng, seed, stall)
    if unit == "top":
        return _top(rng, seed, stall)
    return _vector(unit, rng, seed, stall)


def run_unit(unit: str, *, seed: int = DEFAULT_SEED, stall: float | None = None,
             waves: str | None = None, build_dir: str | None = None,
             progress: bool = True) -> dict:
    """Build ``unit`` (traced if ``waves``), run its bench and compare with golden.

    Returns
    -------
    dict: ``unit``, ``seed``, ``stall``, ``passed`` (bool), ``compared`` (elements),
    ``mismatches`` (count) and ``first`` (``[where, rtl, golden]`` or None), ``notes``
    (cycles, beats, contract violations, extra outputs), ``waves`` (path or None),
    ``waves_format``, ``build`` (the build folder), ``error`` (a failing bench's message or
    None).

    Raises
    ------
    InputError (one sentence) for an unknown unit, a bad stall or waves path.
    """
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    if stall is None:
        stall = 0.0 if unit == "top" else DEFAULT_STALL
    if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 0 <= stall < 1:
        raise InputError(range_message("--stall", stall, **_STALL))
    if unit == "top" and stall:
        raise InputError("--stall applies to the stream units; the top's host port has no "
                         "valid/ready to stall")
    path, fmt = _waves_target(waves, lambda m: print(m, file=sys.stderr, flush=True))
    bench = make_bench(unit, seed, stall)
    from ternac.sim.runner import BenchFailed, build, run_bench
    root = pathlib.Path(build_dir) if build_dir else None
    say(f"[build] {bench.name}{f', traced ({fmt.upper()})' if fmt else ''}: {bench.what} ...")
    if bench.top is not None:
        from ternac.sim.accel import build_accelerator
        runner, bdir, name = build_accelerator(*bench.top, build_dir=build_dir,
                                               progress=progress, waves=fmt)
    else:
        runner, bdir = build(bench.component, bench.name, build_root=root, progress=progress,
                             waves=fmt)
        name = bench.name
    say(f"[run] {bench.module}{'.' + bench.testcase if bench.testcase else ''}, seed {seed}, "
        f"stall {stall:g} ...")
    if path is not None:
        path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    error = None
    compared, bad, notes = 0, [], {}
    try:
        out = run_bench(runner, bdir, name, bench.module, testcase=bench.testcase,
                        inputs=bench.inputs, seed=seed, waves=path)
        compared, bad, notes = bench.check(out)
    except BenchFailed as exc:
        error = " ".join(str(exc).split())
    seconds = time.perf_counter() - t0
    contract_ok = not notes.get("violations") and not notes.get("extra")
    wrote = path if path is not None and path.exists() and path.stat().st_size else None
    if path is not None and wrote is None and error is None:
        error = f"the simulator wrote no waveform to {path}"
    return {"unit": unit, "seed": seed, "stall": stall, "what": bench.what,
            "golden": bench.golden, "elements": bench.elements,
            "passed": error is None and not bad and contract_ok and compared > 0,
            "compared": compared, "mismatches": len(bad),
            "first": list(bad[0]) if bad else None, "notes": notes,
            "waves": str(wrote) if wrote else None, "waves_format": fmt if wrote else None,
            "build": str(bdir), "error": error, "wall_seconds": round(seconds, 3)}


def sim_main(args) -> int:
    """``ternac sim``: prints the bench's result line and the waveform's path."""
    # cocotb's WAVES variable (e.g. from `make sim WAVES=1`) would trace every build and
    # run of this process; only --waves says what is traced here.
    os.environ.pop("WAVES", None)
    seed = args.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        # Not from the parser (its type checked it). random.Random(-n) is random.Random(n):
        # a negative seed would repeat its opposite.
        raise InputError(range_message("--seed", seed, 0, SEED_MAX, why=_SEED_WHY))
    r = run_unit(args.unit, seed=seed, stall=args.stall, waves=args.waves,
                 build_dir=args.build_dir, progress=not args.quiet)
    n = r["notes"]
    tail = []
    if "beats" in n:
        tail.append(f"stream contract {'held' if not n['violations'] else 'VIOLATED'} on o "
                    f"({n['beats']} beats, {n['violations']} violations"
                    + (f", {n['extra']} outputs too many" if n["extra"] else "") + ")")
    if "cycles" in n:
        tail.append(f"{n['cycles']:,} cycles (measured)")
    if r["error"]:
        print(f"FAIL {r['unit']}: the bench failed: {r['error']}")
    elif r["mismatches"]:
        where, rtl, gold = r["first"]
        print(f"FAIL {r['unit']}: {r['mismatches']} of {r['compared']:,} {r['elements']} differ "
              f"from golden ({r['golden']}); first {where}: RTL {rtl}, golden {gold}")
    else:
        print(f"{'PASS' if r['passed'] else 'FAIL'} {r['unit']}: {r['compared']:,} "
              f"{r['elements']} equal to golden ({r['golden']}), seed {r['seed']}, stall "
              f"{r['stall']:g}" + "".join(f"; {t}" for t in tail))
    if r["waves"]:
        size = os.path.getsize(r["waves"])
        print(f"waves: {r['waves']} ({r['waves_format'].upper()}, {size / 1e6:.1f} MB); open "
              f"with: gtkwave {r['waves']}   or   surfer {r['waves']}")
    return 0 if r["passed"] else 1
