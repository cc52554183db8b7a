"""The resource model before synthesis (boards/resources.py) and its data
(boards/unit_costs.json): the fit check refuses what cannot fit and accepts what does, the
block counts equal every measured build, the logic estimate stays within the check's
margin on the held-out builds, and ``ternac build`` refuses before any synthesis. Fast: no
synthesis runs here (a test that would start one fails instead)."""
import dataclasses
import json

import pytest

from ternac.boards import facts, resources
from ternac.boards.resources import FitError, check_fit, estimate, memory_blocks, validation
from ternac.config import AccelConfig

DATA = resources.load()
ROWS = validation()


def _lm_config():
    from ternac.boards_cli import _model_config
    return _model_config("shakespeare", 32)


def test_every_entry_says_how_it_was_measured():
    assert DATA["entries"], "no measured builds"
    for e in DATA["entries"]:
        assert e["command"].startswith("ternac build ") and (
            "--device" in e["command"] or "--board" in e["command"]), e["command"]
        sha = e["commit"].removesuffix("+changes")
        assert len(sha) == 40 and int(sha, 16) >= 0, e["commit"]
        assert e["date"] and e["tools"]["yosys"].startswith("Yosys")
        assert isinstance(e["wall_time_s"], int)
        assert set(resources.KINDS) <= set(e["measured"])
        # Capacities are stated once (boards/facts.py) and nextpnr agrees wherever it ran.
        cap = facts.DEVICES[e["device"]].capacity()
        for k, avail in e.get("available", {}).items():
            if k in cap:
                assert avail == cap[k], (e["command"], k, avail, cap[k])


def test_memory_blocks_from_depth_and_width():
    # iCE40 SB_RAM40_4K is 4 Kbit (256x16 .. 2048x2); ECP5 DP16KD 18 Kbit (16384x1 .. 512x36).
    assert memory_blocks(1024, 16, "ice40") == 4
    assert memory_blocks(64, 128, "ice40") == 8           # 8 blocks side by side, 256 deep
    assert memory_blocks(4096, 16, "ice40") == 16
    assert memory_blocks(1024, 16, "ecp5") == 1
    assert memory_blocks(64, 128, "ecp5") == 4            # 512 x 36
    assert memory_blocks(16384, 64, "ecp5") == 64         # 16384 x 1
    assert memory_blocks(1, 1, "ice40") == 1


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['board']}-{r['model']}-L{r['lanes']}")
def test_blocks_equal_every_measured_build(row):
    """EBR, SPRAM and DSP are counted, not fitted: equal to the measured build exactly;
    except a multiplier pool that does not share its slots (at most 8 products: the
    digits), where Yosys's ``share`` pass may merge the EMBED and SAMPLE products (used in
    exclusive states) into one SB_MAC16, so the pool's slot count is one above."""
    for k in ("EBR", "SPRAM", "DSP"):
        f = row["figures"][k]
        meas = f["measured"] or 0
        if k == "DSP" and row["mulpool"] and f["estimate"] < 8:
            assert 0 <= f["estimate"] - meas <= 1, (row["command"], k, f)
        else:
            assert f["estimate"] == meas, (row["command"], k, f)


@pytest.mark.parametrize("row", [r for r in ROWS if r["role"] == "validation"],
                         ids=lambda r: f"{r['board']}-{r['model']}-L{r['lanes']}")
def test_logic_estimate_within_the_margin_on_held_out_builds(row):
    """The builds not used to calibrate: LUT and FF within the fit check's margin, so that
    the margin is what the model's error needs, not a guess."""
    print(f"{row['command']}: " + ", ".join(
        f"{k} {f['estimate']} vs {f['measured']} ({f['error_pct']:+.1f}%)"
        for k, f in row["figures"].items() if f["error_pct"] is not None))
    for k in ("LUT", "FF"):
        f = row["figures"][k]
        assert abs(f["error_pct"]) <= 100 * resources.MARGIN[k], (row["command"], k, f)


def test_calibration_builds_are_met_exactly():
    cal = [r for r in ROWS if r["role"] == "calibration"]
    assert sorted(r["board"] for r in cal) == sorted(facts.BOARDS)
    for r in cal:
        assert abs(r["figures"]["LUT"]["estimate"] - r["figures"]["LUT"]["measured"]) <= 1


@pytest.mark.parametrize("lanes", [8, 16])
def test_digits_builds_that_fit_today_pass(lanes):
    est = estimate(AccelConfig(lanes=lanes), "icebreaker")
    check_fit(est)
    assert est["resources"]["LUT"] < facts.DEVICES["up5k"].lut4


def test_lm_on_icebreaker_is_refused_with_its_figures():
    est = estimate(_lm_config(), "icebreaker")
    dev = facts.DEVICES["up5k"]
    assert est["resources"]["LUT"] > dev.lut4 * (1 + resources.MARGIN["LUT"])
    # Its multipliers fit since the shared pool (hw/mulpool.py): 8 SB_MAC16, the Norm
    # unit's eight products; the per-unit sum of the measured builds was 18.
    assert est["resources"]["DSP"] == est["units"]["mulpool"]["DSP"] == dev.dsp
    assert estimate(_lm_config(), "icebreaker", pool=False)["resources"]["DSP"] > dev.dsp
    with pytest.raises(FitError) as info:
        check_fit(est)
    msg = str(info.value)
    assert msg.count(". ") == 0 and "\n" not in msg          # one sentence
    assert f"{est['resources']['LUT']:,} LUT4s against the 5,280" in msg
    assert "SB_MAC16" not in msg
    assert "iCEBreaker's iCE40 UP5K" in msg


def test_dsp_is_the_pool_of_the_design():
    """DSP counted from the RTL: the one multiplier pool's slots (the LM and the ViT share
    8; the digits accelerator's 5 products, no more than the UP5K's 8, get one each), no
    unit with DSPs of its own."""
    from ternac.config import VIT_CONFIG
    for cfg, n in ((_lm_config(), 8), (VIT_CONFIG, 8), (AccelConfig(lanes=8), 5)):
        est = estimate(cfg, "icebreaker")
        assert est["resources"]["DSP"] == est["units"]["mulpool"]["DSP"] == n, cfg
        assert all(c["DSP"] == 0 for u, c in est["units"].items() if u != "mulpool")


def test_the_lm_fits_the_ulx3s():
    check_fit(estimate(_lm_config(), "ulx3s"))


def test_too_big_for_ulx3s_and_for_icebreaker():
    big = AccelConfig(lanes=64, weight_depth=65536, max_fan_in=8192)
    est = estimate(big, "ulx3s")
    assert est["memories"]["weights"]["EBR"] >= 128 * 65536 // (18 * 1024)   # 8 Mbit of trits
    with pytest.raises(FitError, match=rf"the ULX3S's ECP5-85F: it needs an estimated "
                                       rf"{est['resources']['EBR']} DP16KD blocks against the "
                                       rf"208 it has \(modelled"):
        check_fit(est)
    with pytest.raises(FitError, match=r"SB_SPRAM256KA blocks against the 4 it has") as info:
        check_fit(estimate(dataclasses.replace(big, weight_depth=4096), "icebreaker"))
    assert "LUT4s against the 5,280" in str(info.value)


def test_margin_refuses_only_clearly_over():
    est = estimate(AccelConfig(lanes=8), "icebreaker")
    cap = facts.DEVICES["up5k"].lut4
    just_over = json.loads(json.dumps(est))
    just_over["resources"]["LUT"] = int(cap * 1.05)
    check_fit(just_over)                                   # within the 10% margin
    just_over["resources"]["LUT"] = int(cap * 1.11)
    with pytest.raises(FitError, match="LUT4s"):
        check_fit(just_over)


def test_estimate_is_a_sum_of_its_parts():
    cfg = _lm_config()
    est = estimate(cfg, "icebreaker")
    parts = list(est["units"].values()) + list(est["memories"].values())
    for k in resources.KINDS:
        assert abs(sum(p.get(k, 0) for p in parts) - est["resources"][k]) <= len(parts)
    assert set(cfg.vector) <= set(est["units"])
    assert est["memories"]["weights"]["SPRAM"] == 4 and est["memories"]["weights"]["EBR"] == 0
    assert estimate(cfg, "ulx3s")["memories"]["weights"]["EBR"] == 64


def test_ulx3s_weights_are_counted_in_columns():
    """The ULX3S builds its weight memory in columns of one DP16KD shape each (no depth
    multiplexer): 4,608 x 256 bits (the LM at 128 lanes) is 128 columns of 8192 x 2, one
    block each, where one memory would take 72 blocks of 512 x 36 (the build measured 140
    EBR in all at 1de9abe, the estimate's figure)."""
    import dataclasses
    from ternac.boards.resources import memory_blocks, weight_column_bits
    from ternac.config import LM_ULX3S_CONFIG
    assert [weight_column_bits(d, "ecp5") for d in (512, 1024, 4608, 16384, 20000)] == [36, 18, 2, 1, 1]
    assert [weight_column_bits(d, "ice40") for d in (256, 300, 2048, 4096)] == [16, 8, 2, 2]
    est = estimate(LM_ULX3S_CONFIG, "ulx3s")
    assert est["memories"]["weights"]["EBR"] == 128 != memory_blocks(4608, 256, "ecp5") == 72
    assert est["resources"]["EBR"] == 140


def test_cli_refuses_the_lm_before_synthesis(tmp_path, monkeypatch, capsys):
    """`ternac build --board icebreaker --model shakespeare --lanes 32`: exit 2, one line,
    before compiling or synthesis (either would fail this test)."""
    import ternac.boards.build as bb
    import ternac.boards_cli as cli

    def no(*a, **k):
        raise AssertionError("synthesis or compilation started")
    monkeypatch.setattr(bb, "_run_plan", no)
    monkeypatch.setattr(cli, "_compile", no)
    from ternac.cli import main
    out = tmp_path / "lm"
    rc = main(["build", "--board", "icebreaker", "--model", "shakespeare", "--lanes", "32",
               "--build-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    est = estimate(_lm_config(), "icebreaker")
    assert err[0].startswith("ternac: error: the design cannot fit the iCEBreaker's iCE40 UP5K")
    assert f"{est['resources']['LUT']:,} LUT4s against the 5,280 it has" in err[0]
    assert not out.exists()


def test_shifter_sharing_only_where_units_share_a_shifter():
    """The pool's shared shifters (boards.resources.shifter_sharing, derived from the RTL)
    save nothing without vector units (the requantizer's shifter is its own) and some
    hundreds of LUT4s for the LM's three units; the held-out LM builds above hold the
    estimate to the margin only with it (8,060 LUT4 against 6,898 measured without)."""
    from ternac.config import LM_CONFIG
    digits = AccelConfig(lanes=8, weight_depth=4096, scratch_depth=1024, out_depth=256,
                         prog_depth=64, max_fan_in=1024)
    assert resources.shifter_sharing(digits) == {"LUT": 0.0, "FF": 0.0}
    lm = resources.shifter_sharing(LM_CONFIG)
    assert 100 < lm["LUT"] < 5280 and 0 < lm["FF"] < lm["LUT"]
    units = resources.unit_model(LM_CONFIG, "ice40")
    assert units["mulpool"]["LUT"] == -lm["LUT"] and units["mulpool"]["FF"] == -lm["FF"]
