"""Resource model before synthesis: what a board build of an AccelConfig will use.

``ternac build --board B`` asks :func:`check_fit` before it runs Yosys and refuses, in one
sentence and exit 2, a design that clearly cannot fit the board's device; after a build,
the estimate is written into the report beside the measured utilization
(``report["estimate"]``, with the error of each figure).

The figures are **modelled**, from per-unit costs **measured** out of context
(``ternac build unit NAME --device D``) and from measured board builds, stored as data in
``boards/unit_costs.json``: every entry holds the exact command that measured it, the
commit it ran on, the tool versions, the date and the figures. The model, per device family:

* ``engine``: ``a + L * (b + c * (acc_bits - 18))`` LUT/FF (least squares over the
  engine builds at L = 8, 16, 32 with 18-bit accumulators and L = 32 with 16-bit ones);
* ``streamer``: ``a + b * L`` (builds at L = 8, 16, 32);
* ``requant``: the build with the nearest accumulator width (18: digits, 16: the LM);
* ``sequencer`` (its own control, derived): each sequencer build minus the engine, streamer
  and requantizer builds at the same L, then ``a + b * L``;
* ``top`` (the Accelerator's host port and memory muxes, derived): each top build minus
  the sequencer build at the same L, then ``a + b * L``; its memories are counted apart;
* the vector units of ``cfg.vector``, the host link and the UART receiver and transmitter:
  their builds as measured;
* ``board`` (clock, reset, LEDs, the link's wiring, and whatever the composition changes,
  derived): the calibration board build (digits, L = 8) minus the sum of the above, a
  constant per family;
* DSP: the multipliers of the requantizer, the sequencer (EMBED, SAMPLE) and every vector
  unit come from one shared pool (hw/mulpool.py), so a design's DSP count is that pool's
  slot count, derived from the RTL by elaborating the sequencer (``mulpool`` in the units;
  the LM and the ViT: 8, the digits: 5); the measured builds of the data predate the pool,
  so :func:`validation` checks their DSPs against the per-unit sums they measured;
* memories, counted from depth and width: block RAM blocks are the fewest of the device's
  shapes (``facts.FAMILIES[family]["ebr_modes"]``) that cover the memory; the scratchpad
  is built twice (two read ports, one each block); the weights take SPRAM on the iCEBreaker
  (``ceil(2L / 16) * ceil(depth / 16384)`` blocks, ``hw/spram.py``) and EBR on the ULX3S.

Every OOC figure is first reduced by its wrapper's cost (``boards.build.OOCWrapper``: FF
exact, LUT modelled), since the wrapper is not part of the board. A unit's figures are
``measured - wrapper`` (derived). The wrapper gives the unit a reset, as the boards do
(without one Yosys drops the reset logic and the engine alone costs 18 LUT4s a lane less
than in a board). Accuracy on every measured board build is what
``python -m ternac.boards.resources`` prints (``boards/README.md`` lists it): on the five
held-out builds (iCEBreaker digits L = 16, 32 and the LM; ULX3S digits L = 32 and the LM)
LUT within -2.7 .. +4.4 %, FF within 0 .. +3.4 %, EBR, SPRAM and DSP exact.

The fit check (:data:`MARGIN`): logic (LUT, FF) is refused only above capacity x 1.10, more
than twice the largest error seen, so that only designs that clearly cannot fit are refused
and one just over the line is left to place and route; block counts (EBR, SPRAM, DSP) are
counted, not fitted, and equal every measured build, so they are refused above capacity.

Pure Python (no Amaranth, no torch): importing it is cheap.
"""
from __future__ import annotations

import functools
import json
import math
import pathlib

from ternac.golden.tritcode import T3_ENTRY_BITS, T3_TRITS_PER_BYTE
from ternac.golden.widths import SCRATCH_BITS

from .facts import BOARDS, DEVICES, FAMILIES, board as _board, device as _device

__all__ = ["DATA", "KINDS", "MARGIN", "FitError", "NoEstimate", "load", "memory_blocks", "memories",
           "unit_model", "estimate", "check_fit", "compare", "validation", "entry_from_build"]

#: The measured data the model reads.
DATA = pathlib.Path(__file__).resolve().with_name("unit_costs.json")
#: Resource kinds estimated, in the order messages name them.
KINDS = ("LUT", "FF", "EBR", "SPRAM", "DSP")
#: Fraction over capacity an estimate may reach before :func:`check_fit` refuses it.
MARGIN = {"LUT": 0.10, "FF": 0.10, "EBR": 0.0, "SPRAM": 0.0, "DSP": 0.0}
#: Accumulator width the lane-scaled fits are referred to (AccelConfig's default fan-in).
ACC_REF = 18
#: Bits of an output-buffer word (hw/top.py's ``outbuf``; the host port's 32-bit word).
OUT_WORD_BITS = 32


class FitError(RuntimeError):
    """The design needs more of some resource than the device has (before synthesis, from
    the estimate; or after it, when place and route runs out of cells). One sentence."""


class NoEstimate(ValueError):
    """The unit-cost data is missing or cannot determine the model for this design (e.g. a
    vector unit never measured on this family). One sentence."""


# -- the data ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict:
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as e:
        raise NoEstimate(f"no resource estimate: the unit-cost data {path} cannot be read "
                         f"({type(e).__name__}: {e})") from None


def load(path=None) -> dict:
    """``boards/unit_costs.json`` (or ``path``) as a dict; cached. See its ``about`` key."""
    return _load(str(path or DATA))


def _entries(data, *, family=None, unit=None, board=None) -> list[dict]:
    out = []
    for e in data["entries"]:
        dev = DEVICES[e["device"]]
        if family is not None and dev.family != family:
            continue
        if unit is not None and e.get("unit") != unit:
            continue
        if board is not None and e.get("board") != board:
            continue
        out.append(e)
    return out


def _cost(e: dict) -> dict:
    """A unit entry's cost without its OOC wrapper: ``measured - wrapper`` (derived)."""
    m, w = e["measured"], e.get("wrapper") or {}
    return {"LUT": m["LUT"] - w.get("LUT_modelled", 0), "FF": m["FF"] - w.get("FF", 0),
            "EBR": m.get("EBR", 0), "SPRAM": m.get("SPRAM", 0), "DSP": m.get("DSP", 0)}


def _lstsq(rows: list[list[float]], ys: list[float]) -> list[float]:
    """Least squares ``rows @ x ~= ys`` by the normal equations (a few unknowns). A feature
    that is zero in every row (no build varies it) gets the coefficient 0."""
    used = [i for i in range(len(rows[0])) if any(r[i] for r in rows)]
    if len(used) < len(rows[0]):
        sub = _lstsq([[r[i] for i in used] for r in rows], ys)
        full = [0.0] * len(rows[0])
        for i, c in zip(used, sub):
            full[i] = c
        return full
    n = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    b = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(n)]
    for col in range(n):                                  # Gauss-Jordan, partial pivoting
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[piv][col]) < 1e-12:
            raise NoEstimate("the unit-cost data cannot determine this fit (too few builds)")
        a[col], a[piv], b[col], b[piv] = a[piv], a[col], b[piv], b[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(n)]


def _linear(points: list[tuple[list[float], dict]]) -> dict:
    """Fit every kind over ``(features, cost)`` points; returns {kind: coefficients}."""
    rows = [f for f, _ in points]
    return {k: _lstsq(rows, [c[k] for _, c in points]) for k in KINDS}


def _apply(coef: dict, features: list[float]) -> dict:
    return {k: sum(c * f for c, f in zip(coef[k], features)) for k in KINDS}


def _sub(a: dict, *bs: dict) -> dict:
    return {k: a[k] - sum(b[k] for b in bs) for k in KINDS}


#: Units whose cost the model fits or derives (the others are used as measured).
_SCALED = ("engine", "streamer", "requant", "sequencer", "top")


def _engine_features(lanes, acc_bits):
    return [1.0, float(lanes), float(lanes * (acc_bits - ACC_REF))]


@functools.lru_cache(maxsize=8)
def _family_model(family: str, path: str) -> dict:
    """The fitted coefficients and measured costs of one family (see the module docstring)."""
    data = _load(path)

    def units(name):
        es = _entries(data, family=family, unit=name)
        if not es:
            raise NoEstimate(f"boards/unit_costs.json has no {name!r} build for the {family} "
                             f"family; run `ternac build unit {name}` and record it")
        return es

    engine = _linear([(_engine_features(e["lanes"], e["acc_bits"]), _cost(e))
                      for e in units("engine")])
    streamer = _linear([([1.0, float(e["lanes"])], _cost(e)) for e in units("streamer")])
    requant = {e["acc_bits"]: _cost(e) for e in units("requant")}

    def measured_at(name, lanes, acc_bits):
        for e in units(name):
            if e["lanes"] == lanes and e["acc_bits"] == acc_bits:
                return _cost(e)
        return None

    seq_points = []
    for e in units("sequencer"):
        L, W = e["lanes"], e["acc_bits"]
        parts = [measured_at("engine", L, W), measured_at("streamer", L, W)]
        if None in parts or W not in requant:
            continue
        seq_points.append(([1.0, float(L)], _sub(_cost(e), *parts, requant[W])))
    top_points = []
    for e in units("top"):
        seq = measured_at("sequencer", e["lanes"], e["acc_bits"])
        if seq is not None:
            own = _sub(_cost(e), seq)
            own["EBR"] = own["SPRAM"] = 0          # its memories are counted by memories()
            top_points.append(([1.0, float(e["lanes"])], own))
    if len(seq_points) < 2 or len(top_points) < 2:
        raise NoEstimate(f"boards/unit_costs.json needs sequencer and top builds at two lane "
                         f"counts, with engine and streamer builds at the same counts, for "
                         f"the {family} family")
    # Every other unit (host link, UART, each vector unit) as measured, at any lane count
    # (their ports do not depend on L): the first build of each in the data.
    fixed = {}
    for e in _entries(data, family=family):
        name = e.get("unit")
        if name and name not in _SCALED and name not in fixed:
            fixed[name] = _cost(e)
    return {"engine": engine, "streamer": streamer, "requant": requant,
            "sequencer": _linear(seq_points), "top": _linear(top_points), "fixed": fixed}


# -- memories ------------------------------------------------------------------------------

def memory_blocks(depth: int, width: int, family: str) -> int:
    """Block RAM blocks for a ``depth`` x ``width``-bit memory with one read and one write
    port: the fewest over the family's block shapes of ``ceil(width / w) * ceil(depth / d)``
    (what Yosys's memory_libmap reaches for these memories; checked on every measured build).
    """
    return min(math.ceil(width / w) * math.ceil(depth / d)
               for d, w in FAMILIES[family]["ebr_modes"])


def weight_column_bits(depth: int, family: str) -> int:
    """The widest block-RAM data width of ``family`` whose depth holds ``depth`` words (the
    narrowest, 1 bit, past the deepest shape): a weight memory of ``depth`` words built in
    columns of this many bits (:class:`hw.memory.WeightMemory` ``column_bits``) takes
    ``memory_blocks(depth, bits)`` blocks a column and no read multiplexer behind them. The
    ULX3S builds its weights so (boards/ulx3s.py): the LM at 128 lanes, 4,608 words -> 2 bits,
    128 DP16KD; at 32 lanes, 16,384 words -> 1 bit, 64 DP16KD."""
    fits = [w for d, w in FAMILIES[family]["ebr_modes"] if depth <= d]
    return max(fits) if fits else min(w for _, w in FAMILIES[family]["ebr_modes"])


def memories(cfg, board: str) -> dict:
    """The accelerator's memories on ``board``: ``{name: {depth, width, copies, EBR, SPRAM}}``
    (hw/top.py: the scratchpad, a copy a read port, the one of port a only
    ``scratch_a_depth`` deep when that is set (``scratch_a``); output buffer of
    ``out_bits``-bit words; program; weights; the host link's frame buffer is part of the
    ``hostlink`` unit's measured cost)."""
    b = _board(board)
    fam = b.family
    out = {}
    window = cfg.scratch_a_window
    scratch = [("scratch", cfg.scratch_depth, SCRATCH_BITS, 2)] if window == cfg.scratch_depth \
        else []
    for name, depth, width, copies in scratch + [
            ("out", cfg.out_depth, cfg.out_bits, 1),
            ("prog", cfg.prog_depth, cfg.prog_word_bits, 1)]:
        out[name] = {"depth": depth, "width": width, "copies": copies,
                     "EBR": copies * memory_blocks(depth, width, fam), "SPRAM": 0}
    if window < cfg.scratch_depth:
        # The full copy and port a's window, each in banks of SCRATCH_BANK words (hw/memory.py
        # BankedMemory), each bank mapped on its own (Yosys maps an unbanked 3,840 x 16 on 16
        # iCE40 blocks of 2048 x 2, measured, not on 15).
        from ternac.hw.top import SCRATCH_BANK
        for name, depth in (("scratch_a", window), ("scratch", cfg.scratch_depth)):
            full, rest = divmod(depth, SCRATCH_BANK)
            banks = [SCRATCH_BANK] * full + ([rest] if rest else [])
            out[name] = {"depth": depth, "width": SCRATCH_BITS, "copies": 1,
                         "EBR": sum(memory_blocks(d, SCRATCH_BITS, fam) for d in banks),
                         "SPRAM": 0}
    if cfg.weight_format == "t3":
        # The streamer's T3 decode ROMs (hw/streamer.py, decode="ebr"): 256 x T3_ENTRY_BITS,
        # one ROM a byte pair with two read ports: a true-dual-port block on ECP5, one block
        # a read port (a byte) on iCE40, whose SB_RAM40_4K has one read port.
        nbytes = cfg.lanes // T3_TRITS_PER_BYTE
        copies = nbytes if fam == "ice40" else -(-nbytes // 2)
        out["t3_decode"] = {"depth": 256, "width": T3_ENTRY_BITS, "copies": copies,
                            "EBR": copies * memory_blocks(256, T3_ENTRY_BITS, fam), "SPRAM": 0}
    w = {"depth": cfg.weight_depth, "width": cfg.word_bits, "copies": 1, "EBR": 0, "SPRAM": 0}
    if b.weights == "spram":
        sd, sw = FAMILIES[fam]["spram"]
        w["SPRAM"] = math.ceil(cfg.word_bits / sw) * math.ceil(cfg.weight_depth / sd)
    elif fam == "ecp5":
        # In columns (boards/ulx3s.py, weight_column_bits): no depth multiplexer, which was
        # the ULX3S LM's critical path at 128 lanes.
        cb = weight_column_bits(cfg.weight_depth, fam)
        w["EBR"] = math.ceil(cfg.word_bits / cb) * memory_blocks(cfg.weight_depth, cb, fam)
    else:
        w["EBR"] = memory_blocks(cfg.weight_depth, cfg.word_bits, fam)
    out["weights"] = w
    return out


# -- the estimate --------------------------------------------------------------------------

def _pool_slots(cfg) -> int:
    """The multipliers of the accelerator for ``cfg``: the slots of its one shared
    hw.mulpool.MulPool (:func:`_pool`)."""
    return _pool(cfg)[0]


def shifter_sharing(cfg) -> dict:
    """What the pool's shared barrel shifters save against the units' own (derived from the
    RTL by elaborating the sequencer, as :func:`_pool_slots`): the units' out-of-context
    builds in the data each have a shifter a shift (a private pool), but in an accelerator
    the shifts of units that never run together share a slot (hw.mulpool ``shift``), as
    wide as its widest user. A barrel shifter costs about one LUT4 a bit a level (a 2:1
    multiplexer; the LM's 56-bit, 6-level slot maps on 355 LUT4, measured) and a shared
    slot about one LUT4 a bit for each user past the first (its AND-OR input); a slot's
    registered users (``shift_reg``) share its one register (and rounding register).

    Returns ``{"LUT": saved LUT4s, "FF": saved flip-flops}`` (floats, >= 0; *derived*)."""
    return _pool(cfg)[1]


@functools.lru_cache(maxsize=16)
def _pool(cfg):
    """``(slots, shifter_sharing)`` of the accelerator for ``cfg``. The slots: those of its
    one shared hw.mulpool.MulPool (one SB_MAC16 / MULT18X18D each), counted by elaborating its
    sequencer with the vector units of ``cfg.vector`` (every client asks for its products
    while it elaborates). Derived from the RTL, a few seconds for the LM; Yosys reaches it
    exactly where the pool shares its slots (the LM, the ViT: 8) and may use one fewer
    where it does not (its ``share`` pass merges the EMBED and SAMPLE products, used in
    exclusive states: the digits accelerator measures 4 of 5), so an upper bound."""
    from amaranth.hdl import Fragment

    from ternac.hw.sequencer import Sequencer
    from ternac.hw.vector_units import vector_units_for
    seq = Sequencer(lanes=cfg.lanes, acc_bits=cfg.acc_bits, prog_depth=cfg.prog_depth,
                    scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                    weight_depth=cfg.weight_depth, vector_units=vector_units_for(cfg),
                    weight_format=cfg.weight_format)
    Fragment.get(seq, None)
    pool = seq.mulpool
    lut = ff = 0.0
    for sl in pool._shift_slots:
        if len(sl) < 2:
            continue
        sizes = [(pool._shift_width(v), len(sh)) for _, v, sh, _ in sl]
        w = max(x for x, _ in sizes)
        lut += sum(x * b for x, b in sizes) - w * max(b for _, b in sizes) \
            - w * (len(sl) - 1)
        regs = [pool._shift_regs[id(o)] for _, _, _, o in sl if id(o) in pool._shift_regs]
        if len(regs) > 1:
            widths = [len(t) * (2 if r is not None else 1) for _, _, t, r in regs]
            ff += sum(widths) - max(widths)
    return pool.n_slots, {"LUT": max(lut, 0.0), "FF": max(ff, 0.0)}


#: The units whose multipliers come from the shared pool (hw/mulpool.py): with
#: ``pool=True`` their measured DSP figures are replaced by the pool's slot count.
POOL_CLIENTS = ("requant", "sequencer", "activation", "norm", "eltwise", "shiftmax", "dot")


def unit_model(cfg, family: str, *, path=None, pool: bool = True, xline: bool = True) -> dict:
    """Modelled cost of each unit of the accelerator for ``cfg`` on ``family``, without
    the board: ``{unit: {LUT, FF, EBR, SPRAM, DSP}}`` (floats, LUT4s/FFs/blocks).

    DSP: with ``pool`` (the RTL since hw/mulpool.py) the units borrow their multipliers
    from one pool, so the design's DSP count is the pool's slot count (``mulpool``,
    derived from the RTL by :func:`_pool_slots`), not a sum over the units; without it,
    the sum of the units' measured figures (the RTL the data's builds measured before the
    pool: :func:`validation` compares those). EBR: with ``xline`` the Activation's delay
    line of x is a memory (hw/activation.py ``x_delay="ram"``, the RTL since 2026-12-01
    20:00 UTC); without it, its flip-flops (the data's builds before: its measured 0)."""
    fm = _family_model(family, str(path or DATA))
    L, W = cfg.lanes, cfg.acc_bits
    req = fm["requant"][min(fm["requant"], key=lambda w: (abs(w - W), -w))]
    out = {"engine": _apply(fm["engine"], _engine_features(L, W)),
           "streamer": _apply(fm["streamer"], [1.0, float(L)]),
           "requant": dict(req),
           "sequencer": _apply(fm["sequencer"], [1.0, float(L)]),
           "top": _apply(fm["top"], [1.0, float(L)])}
    for name in cfg.vector:
        if name not in fm["fixed"]:
            raise NoEstimate(f"boards/unit_costs.json has no {name!r} build for the {family} "
                             f"family")
        out[name] = dict(fm["fixed"][name])
    if xline and "activation" in out:
        # Its delay line of x is a memory (hw/activation.py x_delay="ram", which
        # vector_units_for builds): a block RAM on the iCE40, distributed RAM on the ECP5.
        from ternac.hw.activation import EBR_BLOCKS
        out["activation"]["EBR"] = float(EBR_BLOCKS["ram"][family])
    if pool:
        for name in POOL_CLIENTS:
            if name in out:
                out[name]["DSP"] = 0.0
        # The pool's shared shifters, less than the units' own (shifter_sharing): a
        # negative logic cost against the units' out-of-context figures.
        saved = shifter_sharing(cfg)
        out["mulpool"] = {"LUT": -saved["LUT"], "FF": -saved["FF"], "EBR": 0.0, "SPRAM": 0.0,
                          "DSP": float(_pool_slots(cfg))}
    return out


def _board_units(cfg, board: str, path, pool: bool = True, xline: bool = True) -> dict:
    b = _board(board)
    fm = _family_model(b.family, str(path or DATA))
    units = unit_model(cfg, b.family, path=path, pool=pool, xline=xline)
    for name in ("hostlink", "uart_rx", "uart_tx"):
        units[name] = dict(fm["fixed"][name])
    return units


@functools.lru_cache(maxsize=8)
def _glue(board: str, path: str) -> dict:
    """The board's own cost (derived): its calibration build minus the modelled rest."""
    data = _load(path)
    cal = [e for e in _entries(data, board=board) if e.get("role") == "calibration"]
    if len(cal) != 1:
        raise NoEstimate(f"boards/unit_costs.json needs exactly one calibration build of the "
                         f"{board} board, not {len(cal)}")
    e = cal[0]
    cfg = _config(e["config"])
    rest = _sum(_board_units(cfg, board, path, pool=False, xline=False).values())
    mem = _sum(memories(cfg, board).values())
    glue = _sub({k: e["measured"][k] for k in KINDS}, rest, mem)
    # Blocks are counted, not calibrated: a non-zero block residual is a model error, shown
    # by the validation (compare()), not absorbed here.
    for k in ("EBR", "SPRAM", "DSP"):
        glue[k] = 0
    return glue


def _config(d: dict):
    """The AccelConfig a data entry was measured with (fields this AccelConfig no longer
    has are left out; fields it gained take their defaults)."""
    import dataclasses

    from ternac.config import AccelConfig
    names = {f.name for f in dataclasses.fields(AccelConfig)}
    return AccelConfig(**{k: v for k, v in d.items() if k in names})


def _sum(costs) -> dict:
    costs = list(costs)
    return {k: sum(c.get(k, 0) for c in costs) for k in KINDS}


def estimate(cfg, board: str, *, path=None, pool: bool = True, xline: bool = True) -> dict:
    """Modelled resources of the ``board`` build of ``cfg``, before synthesis.

    Parameters
    ----------
    cfg : ternac.config.AccelConfig
    board : str
        ``facts.BOARDS`` key.
    path : path or None
        Unit-cost data (default ``boards/unit_costs.json``).
    pool : bool
        DSP as the current RTL's shared multiplier pool (hw/mulpool.py; default), or as
        the sum of the units' measured DSPs (the RTL of the data's builds; the validation).
    xline : bool
        The Activation unit's delay line of x in a memory (the current RTL, default), or
        in flip-flops (the RTL of the data's builds without ``"xline": true``).

    Returns
    -------
    dict: ``board``, ``device``, ``resources`` {LUT, FF, EBR, SPRAM, DSP: int, rounded},
    ``capacity`` (the device's), ``units`` {unit: {kind: float}} (``board`` is the
    calibrated glue), ``memories`` (:func:`memories`), ``margin`` (:data:`MARGIN`),
    ``kind``, ``data`` (where the coefficients come from) and ``data_commits`` (the
    commits its builds ran on).

    Raises
    ------
    ValueError for an unknown board; NoEstimate (a ValueError) for data that is missing or
    cannot determine the model of this design.
    """
    b = _board(board)
    dev = b.dev
    units = _board_units(cfg, board, path, pool=pool, xline=xline)
    units["board"] = _glue(board, str(path or DATA))
    mem = memories(cfg, board)
    total = _sum(list(units.values()) + list(mem.values()))
    return {
        "board": board, "device": dev.key,
        "resources": {k: max(0, int(round(total[k]))) for k in KINDS},
        "capacity": dev.capacity(),
        "units": {u: {k: round(v, 1) for k, v in c.items()} for u, c in units.items()},
        "memories": mem,
        "margin": dict(MARGIN),
        "kind": "modelled (boards/resources.py: per-unit out-of-context builds and one "
                "calibration board build, boards/unit_costs.json)",
        "data": str(pathlib.Path(path or DATA).name),
        # The RTL the data measured: an estimate of later RTL is only as good as its
        # changes are small (python -m ternac.boards.measure_costs measures it again).
        "data_commits": sorted({e["commit"] for e in load(path)["entries"]}),
    }


def _fmt(n: int) -> str:
    return f"{n:,}"


def check_fit(est: dict, margin: dict | None = None) -> None:
    """Refuse an estimate (:func:`estimate`) that exceeds its device's capacity by more than
    ``margin`` (default :data:`MARGIN`) in any resource.

    Raises
    ------
    FitError, one sentence naming each resource over, its estimate and the capacity, worst
    first.
    """
    margin = MARGIN if margin is None else margin
    dev = DEVICES[est["device"]]
    cap = dev.capacity()
    over = [(est["resources"][k] / cap[k] if cap[k] else math.inf, k) for k in KINDS
            if est["resources"][k] > cap[k] * (1 + margin.get(k, 0.0))]
    if not over:
        return
    over.sort(reverse=True)
    parts = [f"{_fmt(est['resources'][k])} {dev.words(k)} against the {_fmt(cap[k])} it has"
             for _, k in over]
    said = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    b = BOARDS[est["board"]]
    raise FitError(
        f"the design cannot fit the {b.name}'s {dev.name}: it needs an estimated {said} "
        f"(modelled before synthesis; logic is refused only above capacity + "
        f"{round(100 * margin.get('LUT', 0))}%); use fewer lanes, fewer vector units or "
        f"smaller memories, or pass --no-fit-check to run synthesis anyway")


def compare(est: dict, measured: dict) -> dict:
    """``{kind: {estimate, measured, error_pct}}`` for a report's ``resources`` (``{kind:
    {used, available}}``) or plain ``{kind: n}``; error_pct = 100 * (estimate - measured) /
    measured (None where measured is 0 or absent)."""
    out = {}
    for k in KINDS:
        m = measured.get(k)
        if isinstance(m, dict):
            m = m.get("used")
        e = est["resources"][k]
        err = None if not m else round(100.0 * (e - m) / m, 1)
        out[k] = {"estimate": e, "measured": m, "error_pct": err}
    return out


def validation(path=None) -> list[dict]:
    """Estimate against measurement for every board build in the data: a row each with
    ``board``, ``model``, ``lanes``, ``role`` (calibration / validation), ``command`` and
    :func:`compare`'s figures."""
    data = load(path)
    rows = []
    for e in data["entries"]:
        if "board" not in e:
            continue
        # A build from before the multiplier pool measured per-unit multipliers (DSP the
        # per-unit sums); one with ``"mulpool": true`` measured the pool, whose slot count
        # is derived from the current RTL (:func:`_pool_slots`).
        pool = bool(e.get("mulpool", False))
        # A build with ``"xline": true`` has the Activation's delay line in a block RAM.
        est = estimate(_config(e["config"]), e["board"], path=path, pool=pool,
                       xline=bool(e.get("xline", False)))
        rows.append({"board": e["board"], "model": e.get("model"), "lanes": e["lanes"],
                     "role": e.get("role"), "command": e["command"], "mulpool": pool,
                     "figures": compare(est, e["measured"])})
    return rows


# -- recording measured builds -------------------------------------------------------------

_YOSYS_CELLS = {"ice40": {"EBR": ("SB_RAM40_4K",), "SPRAM": ("SB_SPRAM256KA",),
                          "DSP": ("SB_MAC16",)},
                "ecp5": {"EBR": ("DP16KD", "PDPW16KD"), "SPRAM": (), "DSP": ("MULT18X18D",)}}


def entry_from_build(build_dir, *, command: str, device: str, config: dict, date: str,
                     tools: dict, commit: str, unit=None, board=None, model=None,
                     role=None) -> dict:
    """An entry of ``unit_costs.json`` from a finished build folder: its ``report.json``
    when place and route ran, else (iCE40 only, where nextpnr ran out of cells) the Yosys
    ``top.stat.json`` (LUT, FF and the primitive counts Yosys mapped).

    The recorded ``config`` is the report's where there is one, else ``config``.

    Raises
    ------
    ValueError if the folder holds neither report, or only a Yosys stat of an ECP5 build
    (whose LUT figure is nextpnr's TRELLIS_COMB count, not in the stat).
    """
    build_dir = pathlib.Path(build_dir)
    dev = _device(device)
    cfg = _config(config)
    e = {"unit": unit, "board": board, "model": model, "device": dev.key, "lanes": cfg.lanes,
         "acc_bits": cfg.acc_bits, "config": dict(config), "command": command,
         "commit": commit, "date": date, "tools": tools, "role": role,
         "xline": True,      # the RTL's Activation has its delay line of x in a block RAM
         "mulpool": True}    # and its units borrow their multipliers from one pool
    e = {k: v for k, v in e.items() if v is not None}
    rep = build_dir / "report.json"
    if rep.exists():
        r = json.loads(rep.read_text())
        e["config"] = r.get("config", e["config"])
        res = r["resources"]
        e["measured"] = {k: res.get(k, {}).get("used", 0) for k in KINDS}
        if "LC" in res:
            e["measured"]["LC"] = res["LC"]["used"]
        e["available"] = {k: res[k]["available"] for k in (*KINDS, "LC")
                          if res.get(k, {}).get("available") is not None}
        e["source"] = "measured: Yosys stat -json (iCE40 LUT/FF) and nextpnr --report"
        if r.get("wrapper"):
            e["wrapper"] = {"FF": r["wrapper"]["FF"], "LUT_modelled": r["wrapper"]["LUT_modelled"],
                            "in_bits": r["wrapper"]["in_bits"],
                            "out_bits": r["wrapper"]["out_bits"]}
        e["fmax_MHz_achieved"] = r.get("fmax_MHz_achieved")
        e["clock_MHz_constrained"] = r.get("clock_MHz_constrained")
        return e
    stat = build_dir / "top.stat.json"
    if not stat.exists() or dev.family != "ice40":
        raise ValueError(f"{build_dir} holds no report.json (nor an iCE40 Yosys stat)")
    cells = json.loads(stat.read_text())["design"]["num_cells_by_type"]
    if (build_dir / "wrapper.json").exists():          # a unit build (boards.build.build_unit)
        e["wrapper"] = json.loads((build_dir / "wrapper.json").read_text())
    m = {"LUT": cells.get("SB_LUT4", 0),
         "FF": sum(v for k, v in cells.items() if k.startswith("SB_DFF"))}
    for k, names in _YOSYS_CELLS["ice40"].items():
        m[k] = sum(cells.get(n, 0) for n in names)
    e["measured"] = m
    e["source"] = ("measured: Yosys stat -json only (place and route could not place the "
                   "design on the device)")
    return e


def _table(rows) -> str:
    lines = ["| board | model | L | role | " + " | ".join(f"{k} est / meas (err %)" for k in KINDS)
             + " |", "|" + "---|" * (4 + len(KINDS))]
    for r in rows:
        cells = []
        for k in KINDS:
            f = r["figures"][k]
            err = "" if f["error_pct"] is None else f" ({f['error_pct']:+.1f})"
            cells.append(f"{_fmt(f['estimate'])} / "
                         f"{'-' if f['measured'] is None else _fmt(f['measured'])}{err}")
        lines.append(f"| {r['board']} | {r['model']} | {r['lanes']} | {r['role']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m ternac.boards.resources``: the estimate against every measured board
    build of the data, as a Markdown table."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m ternac.boards.resources",
                                description=main.__doc__)
    p.add_argument("--data", default=None, help="unit-cost data (default boards/unit_costs.json)")
    a = p.parse_args(argv)
    print(_table(validation(a.data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
