"""ternac bench lm (ternac/bench.py): one configuration without a board build, on the
Verilator RTL (the LM_CONFIG build test_lm_rtl.py also uses), every figure labelled, the
record found again in the sweep's cache; bad arguments one sentence, exit 2."""
import json
import os

import pytest

from ternac import bench
from ternac.cli import main


def test_bench_lm_without_build_and_cache(tmp_path, capsys):
    cache = tmp_path / "cache"
    reps = bench.bench_lm(["icebreaker-L32-i2"], out_dir=tmp_path / "out", tokens=1,
                          build=False, cache_dir=cache, work_dir=tmp_path / "work",
                          progress=False)
    rep = json.loads((tmp_path / "out" / "lm-icebreaker-L32-i2.json").read_text())
    assert rep == json.loads(json.dumps(reps[0]))
    assert rep["matches_golden"] and rep["logit_mismatches"] == 0
    assert rep["logits_compared"] == 2 * 65          # "RO", then one token: 2 steps
    assert len(rep["cycles_per_step"]) == 2
    assert rep["cycles_per_token"] == sum(rep["cycles_per_step"]) / 2
    assert rep["ternary_weights"] == 426112 and rep["trits_per_cycle"] == 32
    assert rep["weight_stream_bound_cycles"] == 426112 / 32
    assert rep["fraction_of_bound"] == pytest.approx(13316 / rep["cycles_per_token"])
    b = rep["build"]
    assert b["status"] in ("not_built", "does_not_fit") and b["fmax_MHz_achieved"] is None
    assert b["resources_kind"].startswith("modelled")
    assert rep["tokens_per_s"] is None and rep["tokens_per_s_at_constraint_unbuilt"] == \
        pytest.approx(24e6 / rep["cycles_per_token"])
    for key in ("cycles_per_token", "fraction_of_bound", "tokens_per_s", "build.resources",
                "build.fmax_MHz_achieved", "tokens_per_s_at_fmax"):
        assert key in rep["kinds"]
    assert not b["cached"]
    # The lane-scaling study is written beside the configurations (modelled).
    sc = json.loads((tmp_path / "out" / "lm-lane-scaling.json").read_text())
    assert sorted(sc["lanes"], key=int) == [str(L) for L in bench.SCALING_LANES]
    # The same inputs again: the sweep's stored record, not a new one.
    again = bench.bench_config(bench.CONFIGS[0], tokens=1, build=False, cache_dir=cache,
                               work_dir=tmp_path / "work", progress=False)
    assert again["build"]["cached"] and again["build"]["key"] == b["key"]
    assert (cache / f"{b['key']}.json").is_file()


TOKENS = ("--tokens must be a whole number from 1 to 64 (tokens generated on the RTL in "
          "Verilator, every logit compared with golden), not ")


@pytest.mark.parametrize("argv, msg", [
    (["--tokens", "0"], TOKENS + "'0' (see ternac bench lm --help)"),
    (["--tokens", "65"], TOKENS + "'65' (see ternac bench lm --help)"),
    (["--tokens", "two"], TOKENS + "'two' (see ternac bench lm --help)"),
])
def test_bench_lm_bad_arguments(argv, msg, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:            # the parser's type refuses it
        main(["bench", "lm", "--out", str(tmp_path / "b"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ternac: error: {msg}"
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("kw, msg", [
    ({"tokens": 0}, TOKENS + "0"),
    ({"tokens": True}, TOKENS + "True"),
    ({"text": ""}, "the --text path is empty; give a path or leave the option out for the "
                   "corpus "),
])
def test_bench_lm_api_bad_arguments(kw, msg, tmp_path):
    """bench_lm refuses what the parser would, with the parser's sentence; an empty corpus
    path names the default corpus (cli.when_left_out's words), not 'the default corpus'."""
    from ternac.errors import InputError
    from ternac.golden.shakespeare_data import DEFAULT_TEXT
    with pytest.raises(InputError) as e:
        bench.bench_lm(out_dir=tmp_path / "b", build=False, progress=False, **kw)
    assert str(e.value).startswith(msg) and not (tmp_path / "b").exists()
    if "text" in kw:
        assert str(e.value) == msg + os.path.relpath(str(DEFAULT_TEXT))


def test_synthesized_cells_reads_what_yosys_mapped(tmp_path):
    """A build that place and route cannot fit keeps Yosys's measured cell counts
    (boards.build.synthesized_cells), which bench lm reports instead of the estimate."""
    import json
    from ternac.boards.build import synthesized_cells
    assert synthesized_cells(tmp_path, "top") is None           # no stat file
    (tmp_path / "top.stat.json").write_text("{not json")
    assert synthesized_cells(tmp_path, "top") is None
    cells = {"SB_LUT4": 7374, "SB_DFF": 4000, "SB_DFFE": 783, "SB_RAM40_4K": 30,
             "SB_SPRAM256KA": 4, "SB_MAC16": 8, "SB_CARRY": 900}
    (tmp_path / "top.stat.json").write_text(json.dumps({"design": {"num_cells_by_type": cells}}))
    assert synthesized_cells(tmp_path, "top") == {"LUT": 7374, "FF": 4783, "EBR": 30,
                                                   "SPRAM": 4, "DSP": 8}


def test_packed_logic_cells_come_from_the_packer_log(tmp_path):
    """A design that does not fit still says how many logic cells the packer needed (an
    ICESTORM_LC is one LUT4 + one FF: more than either Yosys count), from nextpnr's log."""
    import json
    from ternac.boards.build import _failure, packed_logic_cells, synthesized_cells
    assert packed_logic_cells(tmp_path, "top") is None           # no log
    (tmp_path / "top.tim").write_text("Info: Packing LUT-FFs..\n")
    assert packed_logic_cells(tmp_path, "top") is None           # no utilisation line
    (tmp_path / "top.tim").write_text(
        "Info: Device utilisation:\nInfo: \t         ICESTORM_LC:   10122/   5280   191%\n"
        "Info: \t        ICESTORM_RAM:      30/     30   100%\n")
    assert packed_logic_cells(tmp_path, "top") == (10122, 5280)
    cells = {"SB_LUT4": 7374, "SB_DFF": 4783, "SB_MAC16": 8}
    (tmp_path / "top.stat.json").write_text(json.dumps({"design": {"num_cells_by_type": cells}}))
    assert synthesized_cells(tmp_path, "top")["LC"] == 10122
    log = "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'"
    msg = _failure("place and route", log, tmp_path, "nextpnr-ice40", "top", tmp_path)
    assert "ran out of logic cells" in msg and "needed 10,122 of the 5,280" in msg
    assert "Yosys mapped 7374 LUT4s, 4783 FFs, 8 DSP" in msg


def test_fit_check_false_changes_the_key_and_true_keeps_older_keys():
    """Point.fit_check is left out of the key when True (older records keep theirs)."""
    import dataclasses
    from ternac.sweep import Point, point_key
    p = Point("icebreaker", "shakespeare", 32, 24.0, config="LM_CONFIG")
    inputs = {"checkpoint": "c", "corpus": "t", "tools": {}, "source": "s"}
    assert point_key(p, inputs) == point_key(dataclasses.replace(p, fit_check=True), inputs)
    assert point_key(p, inputs) != point_key(dataclasses.replace(p, fit_check=False), inputs)


def test_lane_scaling_terms_add_up():
    """The scaling study (issue 9's L = 256 question): each entry's figures follow from the
    program and the lane count, and the bottleneck it names is the largest term."""
    from ternac.config import LM_ULX3S_CONFIG
    from ternac.golden.isa import Op
    from ternac.golden.lm_int import IntLM
    from ternac.lower import compile_lm
    intlm = IntLM.from_checkpoint(None)
    sc = bench.lane_scaling(intlm=intlm)
    prog = compile_lm(intlm, LM_ULX3S_CONFIG).program
    mvs = [i for i in prog if i.op == Op.MATVEC]
    for L, e in sc["lanes"].items():
        assert sum(e["by_op"].values()) == e["cycles_per_token"]
        assert e["weight_stream_bound_cycles"] == sc["ternary_weights"] / L
        assert e["padded_stream_cycles"] == sum(-(-i.n // L) * i.k for i in mvs)
        assert e["padded_stream_cycles"] >= e["weight_stream_bound_cycles"]
        assert e["drain_cycles"] == sum(-(-i.n // L) * L for i in mvs)
        assert e["outside_matvec_cycles"] == e["cycles_per_token"] - e["by_op"]["MATVEC"]
        terms = {"weight stream": e["padded_stream_cycles"], "engine drain": e["drain_cycles"],
                 "vector ops": e["outside_matvec_cycles"]}
        assert e["bottleneck"].startswith(max(terms, key=terms.get))
        for key in ("cycles_per_token", "fraction_of_bound", "drain_cycles"):
            assert key in sc["kinds"]
    # Wider is not always faster: at 256 lanes every 128-row matrix drains 256 lanes.
    assert sc["lanes"][256]["drain_cycles"] > sc["lanes"][128]["drain_cycles"]
    with pytest.raises(ValueError, match="multiple of 4"):
        bench.lane_scaling((6,), intlm=intlm)
