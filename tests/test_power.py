"""The power model's arithmetic (ternac.power) and the waveform activity counter
(ternac.sim.power_trace) on a small hand-made VCD whose toggles are known."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ternac import power


def test_calibration_reproduces_marlann_within_stated_error():
    cal = power.calibrate()
    assert len(cal["points"]) == 3
    errs = []
    for p, (f, busy, pll, mW, _) in zip(cal["points"], power.MARLANN):
        assert p["measured_mW"] == mW and p["MHz"] == f and p["busy"] == busy
        err = p["model_mW"] / mW - 1
        assert abs(err - p["error"]) < 1e-12
        assert abs(err) <= power.CALIBRATION_ERROR_BOUND, p
        errs.append(abs(err))
    assert cal["max_error"] == max(errs)
    assert cal["E_memclk_pJ"] > 0 and cal["E_mem_pJ"] > 0
    print("MARLANN residuals:", [f"{p['error']:+.3%}" for p in cal["points"]])


def test_idle_point_by_hand():
    """The idle 12 MHz MARLANN point written out term by term from the coefficients."""
    c = {k: v.point for k, v in power.COEFFS["ice40"].items()}
    cal = power.calibrate()
    d = power.MARLANN_DESIGN
    f = 12.0
    by_hand = (c["P_static_mW"] + f * c["k_clk_uW_per_MHz"] / 1000
               + f * (d["LUT"].point * c["E_ffclk_pJ"]
                      + (d["EBR"] + d["SPRAM"]) * cal["E_memclk_pJ"]) / 1000)
    assert by_hand == pytest.approx(cal["points"][0]["model_mW"], rel=1e-12)
    # and the ice40_power figures the fixed coefficients come from
    assert c["P_static_mW"] == pytest.approx(85.6e-3 * 1.219)
    assert c["k_clk_uW_per_MHz"] == pytest.approx((613.5 - 92.1) * 1.219 / 12)


def test_terms_by_hand():
    c = {k: v.point for k, v in power.COEFFS["ice40"].items()}
    res = {"LUT": 1000, "FF": 500, "EBR": 10, "SPRAM": 4, "DSP": 2}
    r = {"lut_alpha": 0.1, "ff_alpha": 0.2, "ebr_accesses": 3.0, "spram_accesses": 4.0,
         "dsp_ops": 1.5}
    t = power.model_mW("ice40", c, (5.0, 20.0), 10.0, res, r, pll=True)
    f = 10.0
    assert t["clock_tree"] == pytest.approx(f * c["k_clk_uW_per_MHz"] / 1000)
    assert t["clock_loads"] == pytest.approx(f * (500 * c["E_ffclk_pJ"] + 14 * 5.0) / 1000)
    assert t["logic_toggles"] == pytest.approx(f * 1000 * 0.1 * c["glitch"] * c["E_toggle_pJ"] / 1000)
    assert t["ff_toggles"] == pytest.approx(f * 500 * 0.2 * c["E_toggle_pJ"] / 1000)
    assert t["memory_accesses"] == pytest.approx(f * 7.0 * 20.0 / 1000)
    assert t["dsp_operations"] == pytest.approx(f * 1.5 * c["E_dsp_pJ"] / 1000)
    assert t["pll"] == c["P_pll_mW"]
    assert t["total"] == pytest.approx(sum(v for k, v in t.items() if k != "total"))


_rates = st.fixed_dictionaries({
    "lut_alpha": st.floats(0, 0.5), "ff_alpha": st.floats(0, 0.5),
    "ebr_accesses": st.floats(0, 20), "spram_accesses": st.floats(0, 4),
    "dsp_ops": st.floats(0, 8)})
_res = st.fixed_dictionaries({
    "LUT": st.integers(0, 80000), "FF": st.integers(0, 80000), "EBR": st.integers(0, 200),
    "SPRAM": st.integers(0, 4), "DSP": st.integers(0, 150)})


@settings(max_examples=25, deadline=None, derandomize=True)
@given(family=st.sampled_from(["ice40", "ecp5"]), f=st.floats(1, 100), res=_res, rates=_rates,
       extra=st.floats(0, 3), pll=st.booleans())
def test_range_contains_point(family, f, res, rates, extra, pll):
    rates = {**rates, "ebr_accesses_high": rates["ebr_accesses"] + extra,
             "spram_accesses_high": rates["spram_accesses"] + extra / 4}
    e = power.estimate(family, f, res, rates, pll=pll)
    assert 0 < e["low_mW"] <= e["point_mW"] <= e["high_mW"]
    assert e["point_mW"] == pytest.approx(e["terms_mW"]["total"])
    assert e["kind"] == "modelled" and e["corners"] > 0
    for name, c in e["coefficients"].items():
        assert c["low"] <= c["point"] <= c["high"], name
    # more activity never costs less
    busier = {k: v * 2 if isinstance(v, float) else v for k, v in rates.items()}
    assert power.estimate(family, f, res, busier, pll=pll)["point_mW"] >= e["point_mW"]


def test_ecp5_coefficients_say_unsourced():
    for name, c in power.COEFFS["ecp5"].items():
        if name != "glitch":
            assert c.kind == "unsourced", name
    e = power.estimate("ecp5", 40, {"LUT": 1, "FF": 1, "EBR": 1, "DSP": 1}, {})
    assert e["coefficients"]["E_mem_pJ"]["kind"] == "unsourced"
    assert "not sourced" in e["what_it_cannot_know"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="no power coefficients"):
        power.estimate("gowin", 10, {}, {})
    with pytest.raises(ValueError, match="positive"):
        power.estimate("ice40", 0, {}, {})
    with pytest.raises(ValueError, match="does not hold"):
        power.Coeff(5, 6, 7, "pJ", "assumed", "x")


def test_energy():
    e = power.energy(10.0, 34_000, 40.0, 425_000)
    assert e["uJ"] == pytest.approx(8.5)            # 10 mW for 850 us
    assert e["pJ_per_trit_mac"] == pytest.approx(8.5e6 / 425_000)


def test_rates_from_activity_blocks():
    act = {"cycles": 100, "logic_alpha": 0.1, "ff_alpha": 0.05,
           "memories": {
               "top.weights.mem": {"width": 64, "depth": 16384, "reads": 40, "read_cycles": 100, "writes": 0},
               "top.scratch": {"width": 16, "depth": 4096, "reads": 50, "read_cycles": 200, "writes": 10},
               "top.seq.fifo.storage": {"width": 65, "depth": 4, "reads": 0, "read_cycles": 0, "writes": 30}},
           "multipliers": {"top.m": {"a_bits": 16, "b_bits": 16, "ops": 60},
                           "top.w": {"a_bits": 34, "b_bits": 16, "ops": 20}}}
    r = power.rates_from_activity(act, "ice40", "spram", 8)
    assert r["spram_accesses"] == pytest.approx(4 * 40 / 100)       # four 16-bit SPRAMs a word
    assert r["spram_accesses_high"] == pytest.approx(4 * 100 / 100)
    assert r["ebr_accesses"] == pytest.approx(1 * 60 / 100)         # 16-bit words: one block
    assert r["ebr_accesses_high"] == pytest.approx(210 / 100)
    assert "top.seq.fifo.storage" not in r["memories"]              # 4 words: logic
    assert r["dsp_ops"] == pytest.approx((1 * 60 + 3 * 20) / 100)   # 34x16 takes 3 SB_MAC16s
    r5 = power.rates_from_activity(act, "ecp5", "ebr", 1)
    assert r5["spram_accesses"] == 0
    assert r5["ebr_accesses"] == pytest.approx((2 * 40 + 1 * 60) / 100)  # 512x36: 2 wide
    assert r5["dsp_ops"] == pytest.approx((60 + 2 * 20) / 100 * 1 / 3)  # 3 blocks, 1 used


# --------------------------------------------------------------------------- the counter

_TOY_V = r"""
module toy(clk, busy, a, b);
  input clk;
  output busy;
  reg busy = 1'h0;
  input [3:0] a;
  input [3:0] b;
  reg [3:0] cnt = 4'h0;
  wire [7:0] p;
  reg [7:0] mem [31:0];
  reg [4:0] addr = 5'h0;
  reg we = 1'h0;
  always @(posedge clk)
    if (we)
      mem[addr] <= p;
  reg [7:0] _0_;
  always @(posedge clk) begin
    _0_ <= mem[addr];
  end
  assign p = a * b;
  always @(posedge clk)
    cnt <= cnt + 1;
  always @(posedge clk)
    busy <= \busy$next ;
  always @(posedge clk)
    addr <= \addr$next ;
endmodule
"""


def _vcd(path, changes, t_end):
    """A VCD of scope ``toy`` with the given {name: (width, [(time_ps, value)])}."""
    ids = {n: chr(33 + i) for i, n in enumerate(changes)}
    lines = ["$timescale 1ps $end", "$scope module toy $end"]
    for n, (w, _) in changes.items():
        lines.append(f"$var wire {w} {ids[n]} {n} {'[' + str(w - 1) + ':0]' if w > 1 else ''} $end")
    lines += ["$upscope $end", "$enddefinitions $end"]
    events = sorted({t for _, ch in changes.values() for t, _ in ch} | {t_end})
    for t in events:
        lines.append(f"#{t}")
        for n, (w, ch) in changes.items():
            for tt, v in ch:
                if tt == t:
                    lines.append(f"b{v:b} {ids[n]}" if w > 1 else f"{v}{ids[n]}")
    path.write_text("\n".join(lines) + "\n")


def test_activity_counts_a_known_waveform(tmp_path):
    from ternac.sim.power_trace import activity, verilog_structure
    st_ = verilog_structure(_TOY_V)["toy"]
    assert st_["regs"] >= {"cnt", "busy", "addr", "_0_"} and "p" not in st_["regs"]
    assert st_["memories"]["mem"] == {"width": 8, "depth": 32, "raddr": ["addr"], "wen": ["we"]}
    assert st_["muls"] == [{"out": "p", "a": [("a", None)], "b": [("b", None)]}]
    T = 10_000                                   # 10 ns a cycle, in ps
    ch = {
        "clk": (1, [(k * T // 2, (k + 1) % 2) for k in range(24)]),
        "busy": (1, [(0, 0), (2 * T, 1), (10 * T, 0)]),          # 8 busy cycles
        "cnt": (4, [(k * T, k % 16) for k in range(12)]),        # counts every cycle
        "a": (4, [(0, 0), (3 * T, 5), (4 * T, 5), (6 * T, 15)]),  # changes at 3 and 6
        "b": (4, [(0, 1), (6 * T, 2), (11 * T, 3)]),             # 6 (11 is outside)
        "p": (8, [(0, 0), (3 * T, 5), (6 * T, 30)]),
        "addr": (5, [(0, 0), (4 * T, 1), (5 * T, 1), (7 * T, 3)]),
        "we": (1, [(0, 0), (8 * T, 1), (9 * T, 0)]),             # one write cycle
        "_0_": (8, [(0, 0)]),
    }
    vcd = tmp_path / "toy.vcd"
    _vcd(vcd, ch, 12 * T)
    v = tmp_path / "toy.v"
    v.write_text(_TOY_V)
    a = activity(vcd, v, "toy")
    assert a["cycles"] == 8
    # register toggles in [2T, 10T): cnt 1->2 ... 7->8 at 2..9: popcounts of k ^ (k-1)
    cnt_t = sum(bin(k ^ (k - 1)).count("1") for k in range(2, 10))
    addr_t = bin(0 ^ 1).count("1") + bin(1 ^ 3).count("1")
    busy_t = 1                                    # rises at 2T (its fall at 10T is outside)
    assert a["ff_toggles"] == cnt_t + addr_t + busy_t
    assert a["ff_bits"] == 4 + 5 + 1 + 8
    # logic: a 0->5 (2 bits), 5->15 (2 bits); b 1->2 (2 bits); p 0->5 (2), 5->30 (4); we 2
    assert a["logic_toggles"] == 2 + 2 + 2 + 2 + 4 + 2
    assert a["logic_bits"] == 4 + 4 + 8 + 1
    assert a["ff_alpha"] == pytest.approx(a["ff_toggles"] / (a["ff_bits"] * 8))
    m = a["memories"]["toy.mem"]
    assert (m["reads"], m["read_cycles"], m["writes"]) == (2, 8, 1)
    assert a["multipliers"]["toy.p"] == {"a_bits": 4, "b_bits": 4, "ops": 2}
    with pytest.raises(ValueError, match="busy"):
        activity(vcd, v, "other")
