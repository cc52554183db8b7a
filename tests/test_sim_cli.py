"""``ternac sim UNIT --waves F``: one unit's bench against golden with a waveform a user can
open (parsed back here with pywellen), its traced build kept apart from the untraced cache,
and bad input refused in one sentence."""
import os
import subprocess
import sys

import pytest

from ternac.cli import main
from ternac.simcli import UNITS, fst_available, make_bench, run_unit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 7

#: The engine's ports as the waveform names them (TernaryEngine, 8 lanes: x int8 + nz 8 +
#: neg 8 + last 1 = 25 payload bits in; acc_width(300) = 17 bits + last out).
ENGINE_PORTS = {"clk": 1, "rst": 1, "i__valid": 1, "i__ready": 1, "i__payload": 25,
                "o__valid": 1, "o__ready": 1, "o__payload": 18}


def _handshakes(wave, scope: str) -> int:
    """Transfers on ``o`` in the waveform: rising clock edges with o__valid and o__ready
    high (values as they were just before the edge)."""
    sig = {}
    for v in wave.all_vars():
        if v.full_name in (f"{scope}.clk", f"{scope}.o__valid", f"{scope}.o__ready"):
            sig[v.full_name.rsplit(".", 1)[1]] = [(t, int(x)) for t, x in
                                                  (v.signal[i] for i in range(len(v.signal)))
                                                  if str(x) in ("0", "1")]

    def value_before(changes, t):
        last = 0
        for tc, x in changes:
            if tc >= t:
                break
            last = x
        return last
    edges = [t for k, (t, x) in enumerate(sig["clk"]) if x == 1 and k > 0]
    return sum(1 for t in edges
               if value_before(sig["o__valid"], t) and value_before(sig["o__ready"], t))


def test_sim_engine_writes_a_vcd_with_its_ports(tmp_path, capsys):
    import pywellen
    path = tmp_path / "waves" / "engine.vcd"
    print(f"seed={SEED} stall=0.3")
    assert main(["sim", "engine", "--waves", str(path), "--seed", str(SEED)]) == 0
    out = capsys.readouterr().out
    assert "\nPASS engine: 64 accumulators equal to golden" in out, out
    assert f"waves: {path}" in out
    wave = pywellen.Waveform(str(path))
    widths = {v.full_name: v.bitwidth for v in wave.all_vars()}
    for port, width in ENGINE_PORTS.items():
        assert widths.get(f"engine_bench.{port}") == width, (port, widths.get(f"engine_bench.{port}"))
    # Inside the engine too (every signal is traced): its 8 accumulators.
    assert all(f"engine_bench.acc{l}" in widths for l in range(8))
    # The waveform is the run: one handshake on o for each accumulator compared.
    assert _handshakes(wave, "engine_bench") == 64


def test_traced_build_leaves_the_untraced_cache_alone(tmp_path):
    """The traced build has its own folder (its own cache key) in the same build root; the
    untraced build's folder and binary (the one tests/test_rtl_units.py uses) are not
    touched, and its key is unchanged."""
    from ternac.sim.runner import DEFAULT_BUILD, build
    b = make_bench("engine", SEED, 0.0)
    root = DEFAULT_BUILD
    _, plain = build(b.component, b.name, build_root=root, progress=False)
    stamp = (plain / ".built").stat().st_mtime_ns
    binary = (plain / b.name).stat().st_mtime_ns
    r = run_unit("engine", seed=SEED, stall=0.0, waves=str(tmp_path / "e.vcd"),
                 build_dir=str(root), progress=False)
    assert r["passed"] and r["waves_format"] == "vcd"
    assert os.path.dirname(r["build"]) == str(root.resolve()) and r["build"] != str(plain)
    assert (plain / ".built").stat().st_mtime_ns == stamp
    assert (plain / b.name).stat().st_mtime_ns == binary
    _, again = build(b.component, b.name, build_root=root, progress=False)
    assert again == plain                              # the untraced key is unchanged
    # An untraced run reports no waveform and writes none.
    r = run_unit("engine", seed=SEED, stall=0.0, build_dir=str(root), progress=False)
    assert r["passed"] and r["waves"] is None and r["build"] == str(plain)


def test_fst_or_one_sentence_and_a_vcd(tmp_path, capsys):
    path = tmp_path / "engine.fst"
    assert main(["sim", "engine", "--waves", str(path), "--seed", str(SEED), "--quiet"]) == 0
    cap = capsys.readouterr()
    if fst_available():
        assert path.read_bytes()[:1] == b"\x00"          # an FST header block (type 0)
        assert "waves: " in cap.out and "(FST" in cap.out
    else:
        lines = [l for l in cap.err.splitlines() if l.strip()]
        assert len(lines) == 1 and "liblz4-dev" in lines[0] and lines[0].endswith("instead.")
        vcd = path.with_suffix(".vcd")
        assert vcd.read_text()[:200].lstrip().startswith("$") and not path.exists()
        assert f"waves: {vcd} (VCD" in cap.out


def _ternac(*args):
    return subprocess.run([sys.executable, "-m", "ternac.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("args,says", [
    (["nosuch"], "unknown unit 'nosuch'; choose one of streamer, engine"),
    (["engine", "--stall", "1"], "--stall must be a probability"),
    (["engine", "--stall", "-0.1"], "--stall must be a probability"),
    (["engine", "--stall", "often"], "--stall must be a probability from 0 up to (not "
                                     "including) 1, not 'often'"),
    (["engine", "--stall", "nan"], "--stall must be a probability from 0 up to (not "
                                   "including) 1, not 'nan'"),
    *[(["engine", "--seed", v], f"--seed must be a whole number from 0 to 4294967295 (a "
                                f"negative seed would give the inputs and stalls of its "
                                f"absolute value), not '{v}'")
      for v in ("x", "-1", "4294967296", "1.5")],
    (["engine", "--waves", "/proc/ternac/no/such.vcd"], "cannot create the folder"),
    (["engine", "--waves", "waves.ghw"], "must end in .vcd or .fst"),
    (["top", "--stall", "0.2"], "the top's host port has no valid/ready"),
])
def test_bad_input_is_one_sentence_exit_2(args, says, tmp_path):
    r = _ternac("sim", *args)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("ternac: error: "), r.stderr
    assert says in lines[0]
    assert r.stdout == ""


def test_a_waveform_path_over_a_file_is_refused(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("")
    r = _ternac("sim", "engine", "--waves", str(f / "w.vcd"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "a_file" in r.stderr


def test_every_unit_has_a_bench():
    """Each unit's bench is made (inputs and golden outputs) without building anything; the
    stream units run with the stall asked for and a contract monitor."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # components made, not built
        for unit in UNITS:
            b = make_bench(unit, SEED, 0.0 if unit == "top" else 0.25)
            assert b.unit == unit and b.golden and callable(b.check)
            if unit != "top":
                assert b.inputs["stall"] == 0.25 and b.inputs["monitor"]
                assert b.inputs["seed"] == SEED and all(s["n_out"] for s in b.inputs["segments"])
        del b
        gc.collect()
