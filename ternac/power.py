"""Power model of a board build: static + clock tree + activity terms per resource kind,
calibrated against published iCE40 UP5K rail measurements. Every output is *modelled*.

No vendor power estimator exists for the open Yosys/nextpnr flow (Lattice's Power
Calculator reads only its own tools' netlists), so power is a stated model whose
coefficients are sourced (literature), derived from sourced figures, fitted to the
published MARLANN rail measurements, or assumed (said so). It gives a point and a range.

The model (core rail only; I/O banks, the PLL's own rail, the board's regulators, LEDs and
USB bridge are not included)::

    P = P_static + P_pll
        + f * ( k_clk + N_FF * E_ffclk + N_mem * E_memclk )            clock tree and loads
        + f * ( N_FF * a_FF + N_LUT * a_LUT * g ) * E_toggle            logic and register toggles
        + f * ( m_EBR * E_ebr + m_SPRAM * E_spram )                     memory block accesses
        + f * d_DSP * E_dsp                                             DSP operations

with f in MHz and energies in pJ (f * E is in uW). ``N_*`` are the resources the build
report says are used (LUT4s, FFs, EBR + SPRAM blocks); ``a_FF`` / ``a_LUT`` the toggles a
register bit / a logic bit a cycle, ``m_*`` the memory block accesses a cycle and ``d_DSP``
the DSP operations a cycle, all counted from a waveform of the real workload
(:mod:`ternac.sim.power_trace`); ``g`` a glitch factor (the zero-delay simulation shows no
glitches; 1.0 at the point, 2.0 at the high end).

Coefficients, iCE40 UP5K (1.2 V core rail)
------------------------------------------
From tinyvision-ai-inc/ice40_power (README, Joulescope JS110 on the iCE40 UltraPlus
breakout board, core rail at 1.219 V):

* ``P_static`` = 85.6 uA * 1.219 V = 0.104 mW ("Blank design"); 92.1 uA with the clock
  halted and a 24-bit counter;
* ``k_clk`` = (613.5 - 92.1) uA * 1.219 V / 12 MHz = 53.0 uW/MHz (external 12 MHz clock and
  a 28-bit counter against the halted clock: the clock tree; the HFOSC sweep 6-48 MHz gives
  42.75 uA/MHz = 52.1 uW/MHz, the low end);
* ``E_ffclk`` <= 14.4 fJ a flip-flop a cycle: the counter series (32 to 228 LCs at 12 MHz,
  +27.8 uA for +196 LCs) bounds what a clocked LC costs (its counter toggles included);
  point 7 fJ, range 0-14.4 fJ;
* ``E_toggle``: "Math (no DSP)" (an 8x8 multiplier of two counters in 180 LCs) draws
  351 uA more than the counter alone: 0.198 pJ an LC a cycle; at an assumed 0.25-0.5
  toggles an LC a cycle (glitches included) that is 0.4-0.8 pJ a toggle (point 0.5);
* ``E_dsp``: "Math (1 DSP)" draws 237 uA more than the counter for one SB_MAC16 and 44
  LCs: less the LCs at 0.198 pJ, 15.3 pJ an operation (range 10-24 pJ, the latter all
  of the 237 uA);
* ``P_pll``: the PLL rows (16/32/48 MHz) draw 395-632 uA on the core rail above the line
  of the external clock: 0.48-0.77 mW (point 0.64) when a PLL is used.

Fitted to MARLANN's power test (SymbioticEDA/MARLANN power-test/README.md, 1.2 V core rail,
uncalibrated multimeter, 0.1 mA resolution): 3.53 mW configured and idle at 12 MHz, 10.58 mW
running the longrun convolutions at 12 MHz, 16.99 mW at 20 MHz from the PLL. The MARLANN
design (docs/isa.md): 128 kB main memory = 4 SPRAMs read 64 bits (4 blocks) a cycle,
coefficients 2 x 512 x 64 bit and code 512 x 32 bit = 20 EBRs, 16 MACs a cycle in 8
SB_MAC16s (assumed), busy at 154 MMAC/s of 16 x 12 MHz = 0.802 of its cycles; its LUT/FF
count (assumed 3,000, range 2,000-4,500) and toggle rate (assumed 0.1, range 0.05-0.2) are
not published. Least squares over the three points fits the two coefficients nothing else
measures: ``E_memclk`` (a clocked memory block a cycle: the idle draw the clock tree and
the flip-flops cannot explain) and ``E_mem`` (one block access, EBR or SPRAM alike). The
calibration error is the largest residual of the three points.

Coefficients, ECP5-85F (1.1 V core rail)
----------------------------------------
Not sourced: no published rail measurement of an ECP5 design was found with the search
tool, Lattice's Power Calculator (Diamond) is not part of this flow, and the data sheet's
supply-current table was not read. Each coefficient is the iCE40 one scaled by (1.1/1.2)^2
for the core voltage and by a stated factor with a wide range for the larger fabric and
blocks (clock tree 3x, range 1-10x; toggles 1.5x, range 1-3x; DP16KD 18 Kbit blocks 2x,
range 1-4x; MULT18X18D 1.5x, range 1-3x); static 100 mW, range 20-250 mW; PLL 5 mW, range
1-15 mW. The ECP5 figures are an order of magnitude, not a calibration.

What the model cannot know: the routed capacitance of each net (nextpnr's placement is not
read), glitches (the simulation is zero-delay), the data dependence of a memory read
(a read port enabled every cycle may cost a full access or almost nothing when its address
does not change: the range covers both), temperature and process corner, and the parts of
the board outside the FPGA core. The range is the smallest and the largest result over
every corner of the uncertain coefficients and activities (with the MARLANN fit redone at
each corner; a corner whose fit misses a MARLANN point by more than the stated calibration
error is ruled out by the measurement and dropped), each widened by its fit's error.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

__all__ = ["Coeff", "COEFFS", "MARLANN", "MARLANN_DESIGN", "CALIBRATION_ERROR_BOUND",
           "calibrate", "model_mW", "estimate", "rates_from_activity", "energy", "SOURCES"]

SOURCES = {
    "ice40_power": {"title": "iCE40 Power Testing (README: rail currents of test designs)",
                    "authors": "tinyvision-ai-inc", "year": 2021,
                    "url": "https://github.com/tinyvision-ai-inc/ice40_power"},
    "marlann": {"title": "MARLANN FPGA power usage (power-test/README.md)",
                "authors": "Symbiotic EDA", "year": 2018,
                "url": "https://github.com/SymbioticEDA/MARLANN/blob/master/power-test/README.md"},
    "marlann_isa": {"title": "MARLANN architecture and ISA (docs/isa.md)",
                    "authors": "Symbiotic EDA", "year": 2019,
                    "url": "https://github.com/SymbioticEDA/MARLANN/blob/master/docs/isa.md"},
}


@dataclasses.dataclass(frozen=True)
class Coeff:
    """One model coefficient: ``point`` and the ``low``/``high`` of its range, in ``unit``;
    ``kind`` literature / derived / fitted / assumed / unsourced; ``source`` in words."""
    point: float
    low: float
    high: float
    unit: str
    kind: str
    source: str

    def __post_init__(self):
        if not (self.low <= self.point <= self.high):
            raise ValueError(f"coefficient range {self.low}..{self.high} does not hold its "
                             f"point {self.point}")


_V_ICE = 1.219
_ICE40 = {
    "P_static_mW": Coeff(85.6e-3 * _V_ICE, 85.6e-3 * _V_ICE, 92.1e-3 * _V_ICE, "mW", "derived",
                         "ice40_power: blank design 85.6 uA (halted clock + counter 92.1 uA) x 1.219 V"),
    "k_clk_uW_per_MHz": Coeff((613.5 - 92.1) * _V_ICE / 12, 42.75 * _V_ICE,
                              (613.5 - 92.1) * _V_ICE / 12, "uW/MHz", "derived",
                              "ice40_power: external 12 MHz + 28-bit counter minus halted clock; "
                              "HFOSC 6-48 MHz slope 42.75 uA/MHz (low)"),
    "E_ffclk_pJ": Coeff(0.007, 0.0, 27.8 * _V_ICE / 196 / 12, "pJ", "derived",
                        "ice40_power counter series: +27.8 uA for +196 LCs at 12 MHz bounds a "
                        "clocked LC (14.4 fJ); point half of it"),
    "E_toggle_pJ": Coeff(0.5, 0.351 * _V_ICE / 180 / 12 * 1e3 / 0.5,
                         0.351 * _V_ICE / 180 / 12 * 1e3 / 0.25, "pJ", "derived",
                         "ice40_power 'Math (no DSP)': 351 uA for 180 LCs at 12 MHz = 0.198 pJ "
                         "an LC a cycle, at 0.25-0.5 toggles an LC a cycle (assumed)"),
    "E_dsp_pJ": Coeff(15.3, 10.0, 0.237 * _V_ICE / 12 * 1e3, "pJ", "derived",
                      "ice40_power 'Math (1 DSP)': 237 uA at 12 MHz for one SB_MAC16 and 44 LCs"),
    "P_pll_mW": Coeff(0.64, 0.395 * _V_ICE, 0.632 * _V_ICE, "mW", "derived",
                      "ice40_power PLL rows: 395-632 uA on the core rail above the external "
                      "clock's line"),
    "glitch": Coeff(1.0, 1.0, 2.0, "", "assumed",
                    "zero-delay simulation: no glitches counted; up to 2x assumed"),
}
_S_ECP = (1.1 / 1.2) ** 2
_ECP5 = {
    "P_static_mW": Coeff(100.0, 20.0, 250.0, "mW", "unsourced",
                         "not sourced (no ECP5 rail measurement found); an 85k-LUT 40 nm die"),
    "k_clk_uW_per_MHz": Coeff(_ICE40["k_clk_uW_per_MHz"].point * _S_ECP * 3,
                              _ICE40["k_clk_uW_per_MHz"].low * _S_ECP * 1,
                              _ICE40["k_clk_uW_per_MHz"].high * _S_ECP * 10, "uW/MHz",
                              "unsourced", "iCE40 x (1.1/1.2)^2 x 3 (range 1-10) for the larger die"),
    "E_ffclk_pJ": Coeff(_ICE40["E_ffclk_pJ"].point * _S_ECP * 1.5, 0.0,
                        _ICE40["E_ffclk_pJ"].high * _S_ECP * 3, "pJ", "unsourced",
                        "iCE40 x (1.1/1.2)^2 x 1.5 (range 0-3)"),
    "E_toggle_pJ": Coeff(_ICE40["E_toggle_pJ"].point * _S_ECP * 1.5,
                         _ICE40["E_toggle_pJ"].low * _S_ECP, _ICE40["E_toggle_pJ"].high * _S_ECP * 3,
                         "pJ", "unsourced", "iCE40 x (1.1/1.2)^2 x 1.5 (range 1-3)"),
    "E_dsp_pJ": Coeff(_ICE40["E_dsp_pJ"].point * _S_ECP * 1.5, _ICE40["E_dsp_pJ"].low * _S_ECP,
                      _ICE40["E_dsp_pJ"].high * _S_ECP * 3, "pJ", "unsourced",
                      "SB_MAC16 x (1.1/1.2)^2 x 1.5 (range 1-3) for a MULT18X18D"),
    "P_pll_mW": Coeff(5.0, 1.0, 15.0, "mW", "unsourced", "not sourced (EHXPLLL)"),
    "glitch": _ICE40["glitch"],
}
#: Memory-block coefficients of ECP5 relative to the fitted iCE40 ones: (point, low, high).
_ECP5_MEM_SCALE = (2.0 * _S_ECP, 1.0 * _S_ECP, 4.0 * _S_ECP)

#: Coefficients by device family.
COEFFS = {"ice40": _ICE40, "ecp5": _ECP5}

#: MARLANN's published core-rail points: (clock MHz, busy?, PLL?, mW, what).
MARLANN = (
    (12.0, False, False, 3.53, "configured and idle, 12 MHz: 2.9 mA at 1.218 V"),
    (12.0, True, False, 10.58, "longrun demo, 12 MHz: 8.7 mA at 1.216 V"),
    (20.0, True, True, 16.99, "longrun demo, 20 MHz from the PLL: 14.0 mA at 1.214 V"),
)
#: The MARLANN design as the fit assumes it: resources and activity a busy cycle.
MARLANN_DESIGN = {
    "SPRAM": 4, "EBR": 20, "DSP": 8,
    "LUT": Coeff(3000, 2000, 4500, "cells", "assumed", "not published"),
    "alpha": Coeff(0.1, 0.05, 0.2, "toggles/bit/cycle", "assumed", "not published"),
    "duty": 154.0 / (16 * 12.0),      # 154 MMAC/s of 16 MAC/cycle at 12 MHz (power-test README)
    "spram_per_busy_cycle": 4,        # a 64-bit read over the four 16-bit SPRAMs
    "ebr_per_busy_cycle": 8,          # two 64-bit coefficient reads (4 blocks of 256 x 16 each)
}
#: The stated calibration error: at the coefficients' points every MARLANN point is
#: reproduced within this fraction (tests/test_power.py checks it); each corner of the range
#: is widened by its own fit's largest residual.
CALIBRATION_ERROR_BOUND = 0.10


def _terms(c: dict, f: float, res: dict, r: dict, pll: bool, mem: tuple[float, float]) -> dict:
    """The model's terms in mW. ``c``: {name: float} coefficients; ``res``: used resources;
    ``r``: activity a cycle; ``mem``: (E_memclk_pJ, E_mem_pJ)."""
    e_memclk, e_mem = mem
    n_mem = res.get("EBR", 0) + res.get("SPRAM", 0)
    uW = {
        "clock_tree": f * c["k_clk_uW_per_MHz"],
        "clock_loads": f * (res.get("FF", 0) * c["E_ffclk_pJ"] + n_mem * e_memclk),
        "logic_toggles": f * res.get("LUT", 0) * r.get("lut_alpha", 0.0) * c["glitch"] * c["E_toggle_pJ"],
        "ff_toggles": f * res.get("FF", 0) * r.get("ff_alpha", 0.0) * c["E_toggle_pJ"],
        "memory_accesses": f * (r.get("ebr_accesses", 0.0) + r.get("spram_accesses", 0.0)) * e_mem,
        "dsp_operations": f * r.get("dsp_ops", 0.0) * c["E_dsp_pJ"],
    }
    out = {k: v / 1000.0 for k, v in uW.items()}
    out["static"] = c["P_static_mW"]
    out["pll"] = c["P_pll_mW"] if pll else 0.0
    return out


def _marlann_rows(c: dict, lut: float, alpha: float):
    """Rows (a, b, y) of the MARLANN fit: y - fixed terms = a * E_memclk + b * E_mem."""
    d = MARLANN_DESIGN
    res = {"LUT": lut, "FF": lut, "EBR": d["EBR"], "SPRAM": d["SPRAM"], "DSP": d["DSP"]}
    rows = []
    for f, busy, pll, mW, _ in MARLANN:
        duty = d["duty"] if busy else 0.0
        r = {"lut_alpha": alpha * duty, "ff_alpha": alpha * duty,
             "spram_accesses": d["spram_per_busy_cycle"] * duty,
             "ebr_accesses": d["ebr_per_busy_cycle"] * duty, "dsp_ops": d["DSP"] * duty}
        fixed = sum(_terms(c, f, res, r, pll, (0.0, 0.0)).values())
        a = f * (d["EBR"] + d["SPRAM"]) / 1000.0
        b = f * (r["ebr_accesses"] + r["spram_accesses"]) / 1000.0
        rows.append((a, b, mW - fixed, mW))
    return rows


def _nnls2(rows) -> tuple[float, float]:
    """Least squares of y = a x1 + b x2 over ``rows`` (a, b, y, _) with x1, x2 >= 0: the
    unconstrained solution if it is non-negative, else the better of the one-variable fits
    (clamped at 0)."""
    saa = sum(a * a for a, b, y, _ in rows)
    sab = sum(a * b for a, b, y, _ in rows)
    sbb = sum(b * b for a, b, y, _ in rows)
    say = sum(a * y for a, b, y, _ in rows)
    sby = sum(b * y for a, b, y, _ in rows)
    det = saa * sbb - sab * sab
    if det > 0:
        x1 = (say * sbb - sby * sab) / det
        x2 = (saa * sby - sab * say) / det
        if x1 >= 0 and x2 >= 0:
            return x1, x2

    def sse(x1, x2):
        return sum((y - a * x1 - b * x2) ** 2 for a, b, y, _ in rows)
    cands = [(max(say / saa, 0.0), 0.0), (0.0, max(sby / sbb, 0.0))]
    return min(cands, key=lambda x: sse(*x))


def calibrate(coeffs: dict | None = None, *, lut: float | None = None,
              alpha: float | None = None) -> dict:
    """Fit ``E_memclk`` and ``E_mem`` (pJ) to the MARLANN points by least squares, the other
    iCE40 coefficients held at ``coeffs`` (default: the points of :data:`COEFFS`
    ``["ice40"]``, as ``{name: float}``), the MARLANN design at ``lut`` cells and toggle
    rate ``alpha`` (default their assumed points).

    Returns ``{"E_memclk_pJ", "E_mem_pJ", "points": [{"MHz", "busy", "pll",
    "measured_mW", "model_mW", "error"}], "max_error"}`` (error = model / measured - 1).

    Both energies are kept non-negative (where the fixed coefficients already explain
    more than MARLANN drew, one of them is 0 and the residuals grow).
    """
    c = {k: v.point for k, v in COEFFS["ice40"].items()} if coeffs is None else dict(coeffs)
    lut = MARLANN_DESIGN["LUT"].point if lut is None else lut
    alpha = MARLANN_DESIGN["alpha"].point if alpha is None else alpha
    rows = _marlann_rows(c, lut, alpha)
    x1, x2 = _nnls2(rows)
    pts = []
    for (a, b, y, mW), (f, busy, pll, _, what) in zip(rows, MARLANN):
        model = mW - y + a * x1 + b * x2
        pts.append({"MHz": f, "busy": busy, "pll": pll, "what": what, "measured_mW": mW,
                    "model_mW": model, "error": model / mW - 1})
    return {"E_memclk_pJ": x1, "E_mem_pJ": x2, "points": pts,
            "max_error": max(abs(p["error"]) for p in pts)}


def model_mW(family: str, coeffs: dict, mem: tuple[float, float], f_MHz: float,
             resources: dict, rates: dict, pll: bool) -> dict:
    """The model's terms (mW) for one set of coefficients (``{name: float}``) and memory
    energies ``mem`` = (E_memclk_pJ, E_mem_pJ); ``"total"`` is their sum."""
    t = _terms(coeffs, f_MHz, resources, rates, pll, mem)
    t["total"] = sum(t.values())
    return t


def _corners(family: str):
    """Every corner of the uncertain inputs: (coefficients {name: float}, MARLANN lut,
    MARLANN alpha, memory scale for ECP5, memory reads 'low'/'high')."""
    names = [k for k, v in COEFFS[family].items() if v.low != v.high]
    ice_names = [k for k, v in COEFFS["ice40"].items() if v.low != v.high]
    base = {k: v.point for k, v in COEFFS[family].items()}
    lim = {k: (v.low, v.high) for k, v in COEFFS[family].items()}
    ice_lim = {k: (v.low, v.high) for k, v in COEFFS["ice40"].items()}
    d = MARLANN_DESIGN
    if family == "ice40":
        for vals in itertools.product((0, 1), repeat=len(names) + 3):
            c = {**base, **{k: lim[k][b] for k, b in zip(names, vals)}}
            yield (c, c, (d["LUT"].low, d["LUT"].high)[vals[-3]],
                   (d["alpha"].low, d["alpha"].high)[vals[-2]], 1.0, ("low", "high")[vals[-1]])
    else:
        # ECP5: its own coefficients' corners; the MARLANN fit (for the memory energies) at
        # the iCE40 points and at the corners that give the lowest and the highest energies.
        ice_point = {k: v.point for k, v in COEFFS["ice40"].items()}
        for vals in itertools.product((0, 1), repeat=len(names) + 2):
            c = {**base, **{k: lim[k][b] for k, b in zip(names, vals)}}
            yield (c, ice_point, d["LUT"].point, d["alpha"].point,
                   (_ECP5_MEM_SCALE[1], _ECP5_MEM_SCALE[2])[vals[-2]], ("low", "high")[vals[-1]])


def estimate(family: str, f_MHz: float, resources: dict, rates: dict, *, pll: bool = False) -> dict:
    """Modelled core-rail power of a build running a workload.

    Parameters
    ----------
    family : ``"ice40"`` or ``"ecp5"``
    f_MHz : the clock (MHz)
    resources : used cells ``{"LUT", "FF", "EBR", "SPRAM", "DSP"}`` (the build report's)
    rates : activity a cycle, from :func:`rates_from_activity` (``lut_alpha``, ``ff_alpha``,
        ``ebr_accesses``, ``spram_accesses``, ``dsp_ops``, and ``*_high`` variants for the
        memory accesses when every enabled read port is counted every cycle)
    pll : whether the build's clock comes from a PLL

    Returns
    -------
    dict: ``point_mW``, ``low_mW``, ``high_mW``, ``terms_mW`` (the point's terms),
    ``calibration`` (:func:`calibrate` at the point), ``calibration_error`` (the largest
    residual at the point), ``coefficients`` ({name: {point, low, high, unit, kind,
    source}}, the fitted memory energies included), ``corners`` (corners of the range kept),
    ``corners_rejected`` (corners whose MARLANN fit misses a point by more than
    :data:`CALIBRATION_ERROR_BOUND`: coefficients the measurement rules out),
    ``what_it_cannot_know`` (a sentence), ``kind`` = "modelled".

    Raises
    ------
    ValueError for an unknown family or a clock that is not positive.
    """
    if family not in COEFFS:
        raise ValueError(f"no power coefficients for the {family!r} family; known: "
                         f"{', '.join(COEFFS)}")
    if not (f_MHz > 0 and math.isfinite(f_MHz)):
        raise ValueError(f"the clock must be a positive number of MHz, not {f_MHz!r}")
    cal = calibrate()
    mem_pt = (cal["E_memclk_pJ"], cal["E_mem_pJ"])
    scale_pt = _ECP5_MEM_SCALE[0] if family == "ecp5" else 1.0
    c_pt = {k: v.point for k, v in COEFFS[family].items()}
    terms = model_mW(family, c_pt, (mem_pt[0] * scale_pt, mem_pt[1] * scale_pt), f_MHz,
                     resources, rates, pll)
    lo, hi = math.inf, -math.inf
    n = rejected = 0
    fits = {}
    for c, cice, lut, alpha, scale, reads in _corners(family):
        key = (tuple(sorted(cice.items())), lut, alpha)
        if key not in fits:
            fits[key] = calibrate(cice, lut=lut, alpha=alpha)
        fit = fits[key]
        r = dict(rates)
        if reads == "high":
            r["ebr_accesses"] = rates.get("ebr_accesses_high", rates.get("ebr_accesses", 0.0))
            r["spram_accesses"] = rates.get("spram_accesses_high", rates.get("spram_accesses", 0.0))
        t = model_mW(family, c, (fit["E_memclk_pJ"] * scale, fit["E_mem_pJ"] * scale), f_MHz,
                     resources, r, pll)["total"]
        err = fit["max_error"]
        if err > CALIBRATION_ERROR_BOUND:
            rejected += 1      # these coefficients cannot reproduce MARLANN's rail: excluded
            continue
        lo, hi = min(lo, t * (1 - err)), max(hi, t * (1 + err))
        n += 1
    coeffs = {k: dataclasses.asdict(v) for k, v in COEFFS[family].items()}
    fitted_kind = "fitted" if family == "ice40" else "unsourced"
    for name, x, i in (("E_memclk_pJ", mem_pt[0], 0), ("E_mem_pJ", mem_pt[1], 1)):
        vals = [f[("E_memclk_pJ", "E_mem_pJ")[i]] for f in fits.values()
                if f["max_error"] <= CALIBRATION_ERROR_BOUND]
        sc = _ECP5_MEM_SCALE if family == "ecp5" else (1.0, 1.0, 1.0)
        coeffs[name] = {"point": x * sc[0], "low": min(vals) * sc[1], "high": max(vals) * sc[2],
                        "unit": "pJ", "kind": fitted_kind,
                        "source": "least-squares fit to MARLANN's three rail points"
                                  + ("" if family == "ice40" else
                                     ", x (1.1/1.2)^2 x 2 (range 1-4) for DP16KD blocks")}
    return {"point_mW": terms["total"], "low_mW": min(lo, terms["total"]),
            "high_mW": max(hi, terms["total"]), "terms_mW": terms, "calibration": cal,
            "calibration_error": cal["max_error"], "coefficients": coeffs, "corners": n,
            "corners_rejected": rejected,
            "what_it_cannot_know": WHAT_IT_CANNOT_KNOW, "kind": "modelled"}


WHAT_IT_CANNOT_KNOW = (
    "No vendor power estimator exists for the open Yosys/nextpnr flow: this is a model, "
    "not a measurement. It cannot see the routed capacitance of each net, glitches (the "
    "simulation is zero-delay), whether a read port re-reading an unchanged address costs a "
    "full access, temperature or process corner, or anything outside the FPGA core rail "
    "(I/O banks, PLL rail, regulators, USB bridge, LEDs). The ECP5 coefficients are not "
    "sourced by any measurement and are an order of magnitude only.")


def _blocks(family: str, kind: str, width: int, depth: int) -> tuple[int, int]:
    """(blocks, blocks active an access) of a memory of ``depth`` x ``width`` bits."""
    from ternac.boards.facts import FAMILIES
    fam = FAMILIES[family]
    if kind == "SPRAM":
        sd, sw = fam["spram"]
        across = -(-width // sw)
        return across * -(-depth // sd), across
    # The mapping with the fewest blocks; of equals, the widest (fewest blocks an access).
    return min(((-(-width // mw)) * -(-depth // md), -(-width // mw))
               for md, mw in fam["ebr_modes"])


def rates_from_activity(act: dict, family: str, weights_in: str, dsp_used: int) -> dict:
    """Activity a cycle for :func:`estimate` from the waveform counts of
    :func:`ternac.sim.power_trace.activity`.

    Memories of at most 16 words are logic (LUT RAM or FFs) and not counted as blocks; the
    weight memory is SPRAM when ``weights_in`` is ``"spram"`` (the iCEBreaker), else EBR;
    every access of a memory counts its blocks side by side (the blocks a word spans).
    ``*_accesses`` count new words read (a changed address) and writes; ``*_accesses_high``
    count every cycle of every read port. DSP operations: each multiplier of two signals
    switches ceil(a/16) x ceil(b/16) SB_MAC16s (ECP5: ceil(a/18) x ceil(b/18) MULT18X18Ds)
    in a cycle an operand changes; when these exceed ``dsp_used`` (the build mapped the rest
    to LUTs) they are scaled down to it.

    Returns ``{"lut_alpha", "ff_alpha", "ebr_accesses", "ebr_accesses_high",
    "spram_accesses", "spram_accesses_high", "dsp_ops", "memories": {name: {kind,
    blocks_active}}}`` (a cycle each).
    """
    cyc = act["cycles"]
    out = {"lut_alpha": act["logic_alpha"], "ff_alpha": act["ff_alpha"], "ebr_accesses": 0.0,
           "ebr_accesses_high": 0.0, "spram_accesses": 0.0, "spram_accesses_high": 0.0,
           "dsp_ops": 0.0, "memories": {}}
    for name, m in act["memories"].items():
        if m["depth"] <= 16:
            continue
        kind = "SPRAM" if (name.endswith("weights.mem") and weights_in == "spram") else "EBR"
        _, across = _blocks(family, kind, m["width"], m["depth"])
        k = kind.lower()
        out[f"{k}_accesses"] += across * (m["reads"] + m["writes"]) / cyc
        out[f"{k}_accesses_high"] += across * (m["read_cycles"] + m["writes"]) / cyc
        out["memories"][name] = {"kind": kind, "blocks_active": across}
    unit = 16 if family == "ice40" else 18
    ops, blocks = 0.0, 0
    for m in act["multipliers"].values():
        n = -(-max(m["a_bits"], 1) // unit) * -(-max(m["b_bits"], 1) // unit)
        ops += n * m["ops"] / cyc
        blocks += n
    if blocks > dsp_used:
        ops *= dsp_used / blocks if blocks else 0.0
    out["dsp_ops"] = ops
    return out


def energy(p_mW: float, cycles: float, f_MHz: float, trits: int) -> dict:
    """Energy of one unit of work (a token or an inference) of ``cycles`` at ``f_MHz`` drawing
    ``p_mW``: ``{"uJ": ..., "pJ_per_trit_mac": ...}`` (uJ = mW x cycles / (MHz x 1000);
    pJ per trit-MAC divides by the ``trits`` a unit uses)."""
    uj = p_mW * cycles / (f_MHz * 1000.0)
    return {"uJ": uj, "pJ_per_trit_mac": uj * 1e6 / trits if trits else None}
