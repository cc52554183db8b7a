"""Switching activity of the real workload, counted from a Verilator waveform (FST).

What the power model (:mod:`ternac.power`) needs and no vendor estimator gives here: how
often each kind of resource switches while the accelerator runs one LM token or one digits
inference. The Accelerator (:class:`ternac.hw.top.Accelerator`, the same Verilog as the
verilator backend) is built by Verilator with ``--trace-fst`` (a build of its own, cached
under ``build/power_sim`` by a hash of the Verilog and the flags), the ordinary cocotb bench
(``sim/bench_lm.py`` or ``sim/bench_top.py``) runs one token or one inference, and the FST is
read back with pywellen (the wellen waveform library's Python binding, from pip). Only the
cycles with ``busy`` high count (the program's run, not the bench's host-port writes).

Counted (every figure *measured* on the waveform, per run and per cycle):

* flip-flop toggles: bit flips of every register of the Verilog (a variable assigned with
  ``<=`` in an ``always @(posedge clk)`` block of its module), over all register bits;
* logic toggles: bit flips of every other traced net (the combinational signals: LUT
  outputs and routing after synthesis), over all their bits;
* memory accesses, per memory of the Verilog (``reg [w:0] name [d:0]``): ``reads`` the
  cycles whose read address differs from the previous cycle's (a new word read; Amaranth's
  read ports have no enable, so the port also re-reads the same word every other cycle:
  ``read_cycles``), and ``writes`` the cycles with the write enable high;
* multiplier operations, per ``*`` of two non-constant operands: the cycles in which an
  operand changes (a DSP block switches only then).

The FST is also a file a user can open in GTKWave or Surfer.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import pathlib
import re
import sys
import time

__all__ = ["TRACE_ARGS", "build_traced", "trace_run", "activity", "verilog_structure",
           "DEFAULT_ROOT"]

from ternac.sim.runner import REPO, VERILATOR_ARGS, run_bench, to_verilog, verilator_env

DEFAULT_ROOT = REPO / "build" / "power_sim"
#: Verilator flags of the traced build, besides the runner's and the ``--trace`` (VCD) that
#: cocotb's runner adds for ``waves=True``: signals whose names begin with ``_`` traced too
#: (Yosys names memory read registers ``_0_``). Not FST: the pip wheel's FST writer needs
#: the system's lz4 headers (``lz4.h``), absent on a bare machine; VCD needs nothing, and
#: one token's VCD is small enough (pywellen reads it with several threads).
TRACE_ARGS = ["--trace-underscore"]
#: The file the cocotb Verilator main writes (VCD build).
DUMP = "dump.vcd"
CLK_NS = 10


def _cocotb_runner():
    from cocotb_tools.runner import Verilator
    return Verilator()


def build_traced(component, name: str, *, build_root=None, progress: bool = True):
    """Build a Verilator model of ``component`` (top module ``name``) that writes an FST;
    cached by a hash of the Verilog and the flags. Returns ``(runner, build_dir)`` for
    :func:`ternac.sim.runner.run_bench` (with ``WAVES=1`` in the environment, see
    :func:`trace_run`). The build folder holds the Verilog as ``<name>.v``."""
    import cocotb
    verilator_env()
    text = to_verilog(component, name)
    args = [*VERILATOR_ARGS, *TRACE_ARGS]
    h = hashlib.sha256(text.encode())
    h.update(json.dumps({"args": args, "cocotb": cocotb.__version__}).encode())
    build_dir = (pathlib.Path(build_root or DEFAULT_ROOT) / f"{name}-{h.hexdigest()[:12]}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    vfile = build_dir / f"{name}.v"
    runner = _cocotb_runner()
    stamp = build_dir / ".built"
    kw = dict(sources=[vfile], hdl_toplevel=name, build_dir=build_dir, build_args=args,
              timescale=("1ns", "1ps"), waves=True, log_file=build_dir / "build.log")
    with open(build_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if stamp.exists():
                runner._execute = lambda cmds, cwd: None   # configure only, build nothing
                runner.build(**kw)
                del runner._execute
                return runner, build_dir
            if progress:
                print(f"[power] traced Verilator build of {name} ({len(text.splitlines())} "
                      "lines of Verilog) ...", file=sys.stderr, flush=True)
            t0 = time.time()
            vfile.write_text(text)
            runner.build(**kw)
            stamp.write_text(f"{time.time() - t0:.1f} s\n")
            if progress:
                print(f"[power] built in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return runner, build_dir


def trace_run(cfg, weight_words, program_words, bench: str, inputs: dict, *, fst=None,
              build_root=None, progress: bool = True) -> dict:
    """Run ``bench`` (``"bench_lm"`` or ``"bench_top"``, with their JSON ``inputs``) on the
    traced Accelerator and keep its FST.

    Returns ``{"fst": path, "verilog": path, "toplevel": name, "bench": {the bench's
    output}}``. The FST is written to ``fst`` (default ``<build dir>/<bench>.fst``).

    Raises
    ------
    ternac.sim.runner.BenchFailed if the bench fails.
    """
    from ternac.hw.top import Accelerator
    top = Accelerator(cfg, weight_words=weight_words, program_words=program_words)
    name = f"ternac_power_L{cfg.lanes}"
    runner, bdir = build_traced(top, name, build_root=build_root, progress=progress)
    fst = pathlib.Path(fst) if fst else bdir / f"{bench}.vcd"
    fst.parent.mkdir(parents=True, exist_ok=True)
    with open(bdir / ".run.lock", "w") as lock:
        # One traced run at a time in a build folder.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fst.unlink(missing_ok=True)
            # sim.runner.run_bench(waves=path): the model writes its waveform to ``path``.
            out = run_bench(runner, bdir, name, bench, inputs=inputs, waves=fst)
            if not fst.exists():
                raise RuntimeError(f"the traced run wrote no waveform ({fst})")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return {"fst": str(fst), "verilog": str(bdir / f"{name}.v"), "toplevel": name, "bench": out}


# ---------------------------------------------------------------------------------------
# The Verilog's structure: registers, memories, multipliers of each module
# ---------------------------------------------------------------------------------------

_MODULE = re.compile(r"^module\s+(\\\S+|\w+)\s*\(", re.M)
_MEM = re.compile(r"^\s*reg\s+(?:\[(\d+):(\d+)\]\s+)?(\\\S+|[\w$]+)\s*\[(\d+):(\d+)\]\s*;", re.M)
_NBA = re.compile(r"^\s*(\\\S+|[\w$]+)\s*(\[[^\]]*\])*\s*<=", re.M)
_MUL = re.compile(r"^\s*assign\s+(\\\S+|[\w$]+)\s*=\s*(.+?)\s*\*\s*(.+?)\s*;\s*$", re.M)
_IDENT = re.compile(r"\\\S+|[A-Za-z_$][\w$]*")
_MEM_RD = re.compile(r"<=\s*(\\\S+|[\w$]+)\s*\[\s*(\\\S+|[\w$]+)(?:\s*\[[^\]]*\])?\s*\]\s*;")
_MEM_WR = re.compile(r"if\s*\(\s*(\\\S+|[\w$]+)\s*\)\s*\n?\s*(\\\S+|[\w$]+)\s*\[")
_KEYWORDS = {"signed", "unsigned", "begin", "end", "if", "else", "assign"}


def _plain(name: str) -> str:
    """A Verilog identifier as the waveform names it (an escaped ``\\name`` without its
    backslash)."""
    return name[1:] if name.startswith("\\") else name


def _operands(expr: str) -> list[tuple[str, int | None]]:
    """Signal names in a multiplier operand (``$signed(x)``, ``{ 1'h0, m2 }``, ``a[15:0]``),
    each with the width of its slice (None: the whole signal); constants and system
    functions dropped."""
    expr = re.sub(r"\d+'[sS]?[bodhBODH][0-9a-fA-F_xzXZ]+", " ", expr)
    out = []
    for m in re.finditer(r"(\\\S+|[A-Za-z_$][\w$]*)\s*(?:\[\s*(\d+)\s*(?::\s*(\d+))?\s*\])?", expr):
        tok = m.group(1)
        if tok in _KEYWORDS or tok in ("$signed", "$unsigned"):
            continue
        width = None
        if m.group(2) is not None:
            width = abs(int(m.group(2)) - int(m.group(3) or m.group(2))) + 1
        out.append((_plain(tok), width))
    return out


def verilog_structure(text: str) -> dict:
    """Registers, memories and multipliers of each module of Amaranth's Verilog ``text``.

    Returns ``{module: {"regs": set of names, "memories": {name: {"width", "depth",
    "raddr": [read-address names], "wen": [write-enable names]}}, "muls": [{"out",
    "a": [names], "b": [names]}]}}``; module names as the waveform's scopes name them
    (Amaranth names modules by their hierarchical path, ``top.seq.engine``)."""
    mods = {}
    starts = [(m.start(), _plain(m.group(1))) for m in _MODULE.finditer(text)]
    for k, (pos, name) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        body = text[pos:end]
        mems = {}
        for mm in _MEM.finditer(body):
            width = abs(int(mm.group(1)) - int(mm.group(2))) + 1 if mm.group(1) else 1
            depth = abs(int(mm.group(4)) - int(mm.group(5))) + 1
            mems[_plain(mm.group(3))] = {"width": width, "depth": depth, "raddr": [], "wen": []}
        for mr in _MEM_RD.finditer(body):
            mem = _plain(mr.group(1))
            if mem in mems:
                mems[mem]["raddr"].append(_plain(mr.group(2)))
        for mw in _MEM_WR.finditer(body):
            mem = _plain(mw.group(2))
            if mem in mems and _plain(mw.group(1)) not in mems[mem]["wen"]:
                mems[mem]["wen"].append(_plain(mw.group(1)))
        regs = {_plain(r.group(1)) for r in _NBA.finditer(body)} - set(mems)
        muls = []
        for mu in _MUL.finditer(body):
            a, b = _operands(mu.group(2)), _operands(mu.group(3))
            if a and b:              # a constant operand is a shift or an adder tree, not a DSP
                muls.append({"out": _plain(mu.group(1)), "a": a, "b": b})
        mods[name] = {"regs": regs, "memories": mems, "muls": muls}
    return mods


# ---------------------------------------------------------------------------------------
# Counting activity in the FST
# ---------------------------------------------------------------------------------------

def _bits(v) -> int | None:
    """A waveform value as an int (x/z read as 0); None for a non-binary value."""
    if isinstance(v, int):
        return v
    try:
        return int(v.replace("x", "0").replace("z", "0").replace("X", "0").replace("Z", "0"), 2)
    except (ValueError, AttributeError):
        return None


def _changes(var, t0: int, t1: int):
    """(time, int value) changes of the waveform variable ``var`` with ``t0 <= time <= t1``,
    and its value before ``t0`` (None if it had none)."""
    sig = var.signal
    prev = None
    out = []
    for i in range(len(sig)):
        t, v = sig[i]
        iv = _bits(v)
        if iv is None:
            continue
        if t < t0:
            prev = iv
        elif t <= t1:
            last = out[-1][1] if out else prev
            if iv != last:           # a record of the same value is no change
                out.append((t, iv))
        else:
            break
    return prev, out


def activity(fst, verilog, toplevel: str, *, clk_ns: float = CLK_NS) -> dict:
    """Count the switching activity of the run in ``fst`` (one program run, ``busy`` high).

    Parameters
    ----------
    fst : path of the waveform (Verilator FST of :func:`trace_run`)
    verilog : path of the Verilog it was built from (for registers, memories, multipliers)
    toplevel : the top module's name
    clk_ns : clock period of the bench (ns)

    Returns
    -------
    dict (every count *measured* on the waveform): ``cycles`` (the run's clock cycles,
    ``busy`` high), ``window_ns`` [start, end], ``ff_bits``, ``ff_toggles``,
    ``ff_alpha`` (toggles a register bit a cycle), ``logic_bits``, ``logic_toggles``,
    ``logic_alpha``, ``memories`` {hierarchical name: {``width``, ``depth``, ``reads``,
    ``read_cycles``, ``writes``}}, ``multipliers`` {name: {``a_bits``, ``b_bits``,
    ``ops``}}, ``vars`` (traced variables counted), ``parse_s``.

    Raises
    ------
    ValueError if the waveform has no ``busy`` run.
    """
    import pywellen
    t_start = time.perf_counter()
    struct = verilog_structure(pathlib.Path(verilog).read_text())
    wave = pywellen.Waveform(str(fst))
    allv = list(wave.all_vars())
    names = [v.full_name for v in allv]
    # The top's scope: the variable ``<...>.<toplevel>.busy``.
    busy = next((v for v, n in zip(allv, names) if n.endswith(f"{toplevel}.busy")), None)
    if busy is None:
        raise ValueError(f"no {toplevel}.busy in the waveform {fst}")
    scope_of_top = names[allv.index(busy)][:-len(".busy")]
    prefix = scope_of_top[:-len(toplevel)]
    _, bch = _changes(busy, 0, 1 << 62)
    hi = [t for t, v in bch if v == 1]
    lo = [t for t, v in bch if v == 0]
    if not hi:
        raise ValueError(f"the waveform {fst} has no cycle with busy high")
    t0 = hi[0]
    t1 = next((t for t in lo if t > t0), None)
    if t1 is None:
        raise ValueError(f"the run in {fst} never ends (busy stays high)")
    ps = _ps_per_unit(wave)
    cycles = round((t1 - t0) * ps / (clk_ns * 1000))
    t1 -= 1                       # changes at the falling time of busy belong to the next state
    ff_bits = ff_tog = lg_bits = lg_tog = 0
    seen = set()
    by_scope: dict[str, dict[str, object]] = {}
    for v, n in zip(allv, names):
        scope, _, leaf = n.rpartition(".")
        by_scope.setdefault(scope, {})[leaf] = v
    for v, n in zip(allv, names):
        scope, _, leaf = n.rpartition(".")
        if not scope.startswith(scope_of_top) or leaf in ("clk",):
            continue
        w = v.bitwidth or 1
        if not v.is_bit_vector:
            continue
        mod = struct.get(scope[len(prefix):], {})
        key = (scope, leaf)
        if key in seen:
            continue
        seen.add(key)
        prev, ch = _changes(v, t0, t1)
        tog = 0
        for _, iv in ch:
            if prev is not None:
                tog += (prev ^ iv).bit_count()
            prev = iv
        if leaf in mod.get("regs", ()):
            ff_bits += w
            ff_tog += tog
        else:
            lg_bits += w
            lg_tog += tog
    memories, mults = {}, {}
    for mname, mod in struct.items():
        scope = prefix + mname
        sv = by_scope.get(scope, {})
        for mem, info in mod["memories"].items():
            reads = writes = 0
            for a in info["raddr"]:
                if a in sv:
                    _, ch = _changes(sv[a], t0, t1)
                    reads += sum(1 for _ in _per_cycle(ch, clk_ns * 1000 / ps))
            for e in info["wen"]:
                if e in sv:
                    writes += _high_cycles(sv[e], t0, t1, clk_ns * 1000 / ps)
            memories[f"{mname}.{mem}"] = {"width": info["width"], "depth": info["depth"],
                                          "read_ports": len(info["raddr"]), "reads": reads,
                                          "read_cycles": cycles * len(info["raddr"]),
                                          "writes": writes}
        for mu in mod["muls"]:
            ops_t = set()
            widths = []
            for side in ("a", "b"):
                bits = 0
                for s, sw in mu[side]:
                    if s in sv:
                        _, ch = _changes(sv[s], t0, t1)
                        ops_t.update(_per_cycle(ch, clk_ns * 1000 / ps))
                        bits += sw or sv[s].bitwidth or 1
                widths.append(bits)
            mults[f"{mname}.{mu['out']}"] = {"a_bits": widths[0], "b_bits": widths[1],
                                             "ops": len(ops_t)}
    return {"cycles": cycles, "window_ns": [t0 * ps / 1000, (t1 + 1) * ps / 1000],
            "ff_bits": ff_bits, "ff_toggles": ff_tog,
            "ff_alpha": ff_tog / (ff_bits * cycles) if ff_bits and cycles else 0.0,
            "logic_bits": lg_bits, "logic_toggles": lg_tog,
            "logic_alpha": lg_tog / (lg_bits * cycles) if lg_bits and cycles else 0.0,
            "memories": memories, "multipliers": mults, "vars": len(seen),
            "parse_s": round(time.perf_counter() - t_start, 2)}


def _ps_per_unit(wave) -> float:
    """Picoseconds a time unit of the waveform."""
    ts = wave.timescale
    if ts is None:
        return 1.0
    exp = {"fs": -15, "ps": -12, "ns": -9, "us": -6, "ms": -3, "s": 0}[str(ts.unit)]
    return ts.factor * 10.0 ** (exp + 12)


def _per_cycle(changes, units_per_cycle: float):
    """The distinct clock cycles (index from time 0) in which ``changes`` hold a change."""
    return {int(t // units_per_cycle) for t, _ in changes}


def _high_cycles(var, t0, t1, units_per_cycle: float) -> int:
    """Cycles in [t0, t1] during which a 1-bit ``var`` is high."""
    prev, ch = _changes(var, t0, t1)
    n = 0
    level = prev or 0
    t = t0
    for tc, v in ch:
        if level:
            n += int((tc - t) // units_per_cycle)
        t, level = tc, v
    if level:
        n += int((t1 + 1 - t) // units_per_cycle)
    return n
