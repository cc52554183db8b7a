"""The ternac CLI: reports of ``ternac run``, and every bad input is one sentence and exit 2.

A few tests run the real command in a subprocess (entry point, no traceback, exit code);
the rest call :func:`ternac.cli.main` in process, which is what the console script calls.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest
import torch

from ternac.golden.image import CRC_BYTES, HEADER_BYTES, TENSOR_BYTES, read_image
from ternac.golden.mlp import DEFAULT_CHECKPOINT, load_checkpoint
from ternac.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"accuracy", "mismatches", "samples", "cycles_per_inference", "lanes",
        "mac_utilization", "backend", "float_accuracy", "kinds"}
SENTINEL = b"do not overwrite me\n"


def _ternac(*args):
    """Run ``python -m ternac.cli`` (the console script's code) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "ternac.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ternac: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def compiled8(tmp_path_factory):
    out = tmp_path_factory.mktemp("c8")
    assert main(["compile", "digits", "--lanes", "8", "--out", str(out)]) == 0
    return out


def _tampered(src, dst, pos, value, fix_crc):
    b = bytearray(src.read_bytes())
    b[pos] = value(b[pos])
    if fix_crc:
        b[-CRC_BYTES:] = struct.pack("<I", zlib.crc32(bytes(b[:-CRC_BYTES])))
    dst.write_bytes(bytes(b))
    return dst


# ----------------------------------------------------------------------------- run reports

@pytest.mark.parametrize("backend", ["golden", "interp"])
def test_run_digits_subprocess_json(tmp_path, backend):
    js = tmp_path / "sub" / "r.json"  # the folder is created
    r = _ternac("run", "digits", "--backend", backend, "--json", str(js), "--quiet")
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert KEYS <= rep.keys()
    assert rep["backend"] == backend and rep["samples"] == 360 and rep["lanes"] == 8
    assert rep["mismatches"] == 0 and rep["argmax_mismatches"] == 0
    assert rep["accuracy"] == rep["golden_accuracy"] >= 0.90
    assert 0.90 <= rep["float_accuracy"] <= 1
    assert rep["cycles_per_inference"] is None and rep["mac_utilization"] is None
    assert rep["useful_macs_per_inference"] == 64 * 128 + 128 * 64 + 64 * 10
    assert rep["kinds"]["accuracy"] == "measured" and "mac_utilization" not in rep["kinds"]
    assert set(rep["kinds"]) <= {k for k, v in rep.items() if v is not None}
    assert f"accuracy              {rep['accuracy']:.4f}" in r.stdout
    assert "logit mismatches      0 of 360" in r.stdout


def test_run_interp_lanes_and_limit(tmp_path):
    js = tmp_path / "r.json"
    assert main(["run", "digits", "--backend", "interp", "--lanes", "32", "--limit", "50",
                 "--json", str(js), "--quiet"]) == 0
    rep = json.loads(js.read_text())
    assert (rep["lanes"], rep["samples"], rep["mismatches"]) == (32, 50, 0)
    # L = 4 needs 4288 weight words: fits once the memory is deep enough
    assert main(["run", "digits", "--backend", "interp", "--lanes", "4", "--weight-depth",
                 "8192", "--json", str(js), "--quiet"]) == 0
    assert json.loads(js.read_text())["lanes"] == 4


def test_run_verilator_report_math(tmp_path, monkeypatch):
    """The verilator report's cycle and utilization figures, with run_batch stubbed by the
    interpreter (the real RTL runs in tests/test_top_rtl.py and the slow test below)."""
    import ternac.sim.accel as sim_accel
    from ternac.golden.interpreter import run_program
    calls = {}

    def fake_run_batch(cfg, weight_words, program_words, inputs, input_addr, logits_addr,
                       n_logits, *, build_dir=None, progress=True, **kw):
        calls.update(cfg=cfg, input_addr=input_addr, n=len(inputs))
        s = run_program(program_words, weight_words, lanes=cfg.lanes,
                        scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                        scratch_init={input_addr: torch.tensor(inputs)})
        return {"logits": s.out[:, logits_addr:logits_addr + n_logits].tolist(),
                "results": s.result.tolist(), "cycles": [2000, 2000, 2240]}

    monkeypatch.setattr(sim_accel, "run_batch", fake_run_batch)
    js = tmp_path / "v.json"
    assert main(["run", "digits", "--backend", "verilator", "--limit", "3", "--json", str(js),
                 "--quiet"]) == 0
    rep = json.loads(js.read_text())
    assert calls["n"] == 3 and calls["cfg"].lanes == 8
    assert rep["cycles_per_inference"] == 2080 and (rep["cycles_min"], rep["cycles_max"]) == (2000, 2240)
    assert rep["mac_utilization"] == pytest.approx(17024 / (8 * 2080))
    assert rep["kinds"]["cycles_per_inference"] == "measured"
    assert rep["kinds"]["mac_utilization"] == "derived"


def test_run_reports_disagreement(tmp_path, compiled8, monkeypatch):
    """A valid image whose trits differ from the checkpoint: mismatches counted, exit 1."""
    img = tmp_path / "w.tnac"
    # layer 0, word 28 (pixel 28, the middle of the image, rows 0..7): all trits +1
    pos = HEADER_BYTES + 3 * TENSOR_BYTES + 28 * 2
    _tampered(compiled8 / "weights.tnac", img, pos, lambda v: 0x55, fix_crc=True)
    _tampered(img, img, pos + 1, lambda v: 0x55, fix_crc=True)
    read_image(img)  # still a valid image
    js = tmp_path / "r.json"
    assert main(["run", "digits", "--backend", "interp", "--image", str(img), "--json",
                 str(js), "--quiet"]) == 1
    rep = json.loads(js.read_text())
    assert rep["mismatches"] > 0 and rep["image"] == str(img)
    assert main(["run", "digits", "--backend", "interp", "--image",
                 str(compiled8 / "weights.tnac"), "--quiet"]) == 0


def test_disagreement_names_the_two_models(tmp_path, compiled8, capsys):
    """The exit-1 sentence says which two models differ: with --image on the golden backend,
    the image's integer golden model against the checkpoint's (it said 'golden disagrees
    with the integer golden model'); on another backend, that backend running the image."""
    img = tmp_path / "w.tnac"
    pos = HEADER_BYTES + 3 * TENSOR_BYTES + 28 * 2
    _tampered(compiled8 / "weights.tnac", img, pos, lambda v: 0x55, fix_crc=True)
    _tampered(img, img, pos + 1, lambda v: 0x55, fix_crc=True)
    ref = "the integer golden model of the checkpoint checkpoints/digits.safetensors"
    for backend, who in (("golden", f"the integer golden model of the weight image {img}"),
                         ("interp", f"the interp backend running the weight image {img}")):
        assert main(["run", "digits", "--backend", backend, "--image", str(img), "--limit",
                     "40", "--quiet"]) == 1
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ternac: {who} disagrees with {ref} on ")
        assert lines[0].split(" on ")[-1].endswith("of 40 samples" if backend == "interp" else
                                                   "(the image holds other trits or scales "
                                                   "than the checkpoint)")
        assert "golden disagrees" not in err
        assert (backend == "golden") == ("every logit of the weight image's integer golden "
                                         "model compared with the checkpoint's" in out)


@pytest.mark.slow
def test_run_verilator_real(tmp_path):
    js = tmp_path / "v.json"
    r = _ternac("run", "digits", "--backend", "verilator", "--limit", "2", "--json", str(js),
                "--quiet")
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert rep["mismatches"] == 0 and rep["samples"] == 2
    assert rep["cycles_per_inference"] > 0
    assert 0 < rep["mac_utilization"] <= 1


# ----------------------------------------------------------------------------- compile, image

def test_compile_and_image_info(compiled8, capsys):
    assert sorted(os.listdir(compiled8)) == ["program.hex", "program.txt", "weights.tnac"]
    assert main(["image", "info", str(compiled8 / "weights.tnac")]) == 0
    out = capsys.readouterr().out
    assert "format 0 (I2_TILED), 8 lanes, 16-bit words, 2176 words, 3 tensors" in out
    assert "layers.0" in out and "RELU" in out and "RAW" in out


# ----------------------------------------------------------------------------- bad input

def _bad_images(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "truncated.tnac").write_bytes(data[:HEADER_BYTES + 10])
    (tmp_path / "header.tnac").write_bytes(data[:7])
    (tmp_path / "empty.tnac").write_bytes(b"")
    _tampered(good, tmp_path / "crc.tnac", len(data) - 50, lambda v: v ^ 0x40, fix_crc=False)
    _tampered(good, tmp_path / "magic.tnac", 0, lambda v: ord("X"), fix_crc=True)
    _tampered(good, tmp_path / "code10.tnac", HEADER_BYTES + 3 * TENSOR_BYTES,
              lambda v: (v & ~0b11) | 0b10, fix_crc=True)


IMAGE_CASES = {
    "missing.tnac": "does not exist",
    "truncated.tnac": "truncated: 30 bytes, but the header describes 4568",
    "header.tnac": "truncated: 7 bytes, shorter than the 20-byte header",
    "empty.tnac": "truncated: 0 bytes",
    "crc.tnac": "CRC mismatch: the file says 0x",
    "magic.tnac": "bad magic",
    "code10.tnac": "invalid I2 code 0b10 in weight word 0, lane 0",
}


@pytest.mark.parametrize("name", sorted(IMAGE_CASES))
def test_bad_image(tmp_path, compiled8, capsys, name):
    _bad_images(tmp_path, compiled8 / "weights.tnac")
    js = tmp_path / "r.json"
    js.write_bytes(SENTINEL)
    for argv in (["run", "digits", "--backend", "interp", "--image", str(tmp_path / name),
                  "--json", str(js), "--quiet"],
                 ["image", "info", str(tmp_path / name)]):
        assert main(argv) == 2
        cap = capsys.readouterr()
        line = _one_error_line(cap.err)
        assert IMAGE_CASES[name] in line and name in line
    assert js.read_bytes() == SENTINEL


def _checkpoint_cases(tmp_path):
    from safetensors.torch import save_file
    ck = load_checkpoint(DEFAULT_CHECKPOINT)
    cases = {}
    t = {}
    for i, l in enumerate(ck.layers):
        tr = l.trits.clone()
        if i == 1:
            tr[3, 5] = 2
        t[f"layers.{i}.trits"] = tr.contiguous()
        t[f"layers.{i}.gamma"] = torch.tensor(l.gamma)
        t[f"layers.{i}.act_scale"] = torch.tensor(l.act_scale)
    save_file(t, str(tmp_path / "nontern.safetensors"))
    cases["nontern.safetensors"] = "'layers.1.trits' in "
    data = DEFAULT_CHECKPOINT.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[:len(data) // 2])
    cases["trunc.safetensors"] = "is not a readable safetensors file"
    (tmp_path / "garbage.safetensors").write_bytes(b"\x07" * 100)
    cases["garbage.safetensors"] = "is not a readable safetensors file"
    cases["missing.safetensors"] = "does not exist"
    return cases


def test_bad_checkpoints(tmp_path, capsys):
    cases = _checkpoint_cases(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "weights.tnac").write_bytes(SENTINEL)
    js = tmp_path / "r.json"
    js.write_bytes(SENTINEL)
    for name, text in cases.items():
        ck = str(tmp_path / name)
        for argv in (["run", "digits", "--backend", "golden", "--checkpoint", ck, "--json",
                      str(js), "--quiet"],
                     ["compile", "digits", "--checkpoint", ck, "--out", str(out)]):
            assert main(argv) == 2, (name, argv)
            line = _one_error_line(capsys.readouterr().err)
            assert text in line and name in line, line
    assert js.read_bytes() == SENTINEL
    assert (out / "weights.tnac").read_bytes() == SENTINEL
    assert sorted(os.listdir(out)) == ["weights.tnac"]


@pytest.mark.parametrize("argv, text", [
    (["--scratch-depth", "100"], "the scratch map needs 256 words (64 of inputs, 0 of state, "
                                 "192 of work vectors), but the scratchpad holds 100 "
                                 "(scratch_depth)"),
    (["--lanes", "4"], "the weights need 4288 words of 8 bits at 4 lanes, but the weight "
                       "memory holds 4096 (weight_depth)"),
    (["--weight-depth", "2000"], "the weights need 2176 words of 16 bits at 8 lanes, but the "
                                 "weight memory holds 2000 (weight_depth)"),
    (["--lanes", "6"], "lanes must be a multiple of 4 from 4 to 128, not 6"),
])
def test_model_does_not_fit(tmp_path, capsys, argv, text):
    js = tmp_path / "r.json"
    js.write_bytes(SENTINEL)
    assert main(["run", "digits", "--backend", "interp", "--json", str(js), "--quiet", *argv]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"ternac: error: {text}"
    assert js.read_bytes() == SENTINEL


def test_image_lanes_differ(compiled8, capsys):
    assert main(["run", "digits", "--backend", "interp", "--image",
                 str(compiled8 / "weights.tnac"), "--lanes", "32", "--quiet"]) == 2
    assert "packed for 8 lanes, but the accelerator has 32" in _one_error_line(
        capsys.readouterr().err)


def test_compile_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_bytes(SENTINEL)
    assert main(["compile", "digits", "--out", str(f)]) == 2
    assert "exists and is not a folder" in _one_error_line(capsys.readouterr().err)
    assert f.read_bytes() == SENTINEL


def test_bad_input_subprocess(tmp_path, compiled8):
    """The real command: one line on stderr, exit code 2, no traceback, JSON untouched."""
    _bad_images(tmp_path, compiled8 / "weights.tnac")
    _checkpoint_cases(tmp_path)
    js = tmp_path / "r.json"
    js.write_bytes(SENTINEL)
    r = _ternac("run", "digits", "--backend", "interp", "--image", str(tmp_path / "crc.tnac"),
                "--json", str(js))
    assert r.returncode == 2 and r.stdout == ""
    assert "CRC mismatch" in _one_error_line(r.stderr)
    r = _ternac("run", "digits", "--backend", "golden", "--checkpoint",
                str(tmp_path / "nontern.safetensors"), "--json", str(js))
    assert r.returncode == 2
    assert _one_error_line(r.stderr).endswith("is not ternary: element (3, 5) is 2, but trits "
                                              "must be -1, 0 or +1")
    assert js.read_bytes() == SENTINEL


def test_closed_stdout_is_silent(compiled8):
    """A reader of stdout that went away (``ternac image info F | head``): exit 1 and no
    message, as other Unix tools, not "cannot use Broken pipe" with exit 2."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "ternac.cli", "image", "info",
                            str(compiled8 / "weights.tnac")], stdout=w,
                           stderr=subprocess.PIPE, text=True, cwd=REPO)
    finally:
        os.close(w)
    assert p.returncode == 1 and p.stderr == "", p.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_full_stdout_is_one_sentence(compiled8):
    """Standard output on a full disk: one sentence saying what failed, exit 2 (was
    "cannot use No space left on device")."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "ternac.cli", "image", "info",
                            str(compiled8 / "weights.tnac")], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert p.returncode == 2
    assert p.stderr == "ternac: error: reading or writing failed: no space left on device\n"


@pytest.mark.parametrize("lanes,fmt,chain", [(40, "t3", False), (128, "i2", True)])
def test_compile_lm_takes_the_board_configuration(tmp_path, lanes, fmt, chain):
    """``ternac compile shakespeare --lanes 40 / 128`` lowers for the configuration
    ``ternac build`` builds at those lanes (LM_T3_CONFIG, LM_ULX3S_CONFIG), and its cycle
    model is that configuration's (T3 streaming, mv_chain, norm_steps), as ``ternac bench
    lm``'s."""
    from ternac.config import LM_CONFIGS
    from ternac.golden.cycles import program_cycles
    from ternac.golden.isa import decode_program
    js = tmp_path / "c.json"
    assert main(["compile", "shakespeare", "--lanes", str(lanes), "--out",
                 str(tmp_path / "o"), "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    cfg = LM_CONFIGS[lanes]
    assert rep["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert rep["config"]["weight_format"] == fmt and rep["config"]["mv_chain"] is chain
    prog = decode_program([int(w, 16) for w in
                           (tmp_path / "o" / "program.hex").read_text().split()])
    want = program_cycles(prog, lanes, weight_format=fmt, mv_chain=chain,
                          norm_steps=cfg.norm_steps)
    assert rep["predicted_cycles"] == want["total"]
    assert want["total"] != program_cycles(prog, lanes)["total"]


def test_usage_errors_exit_2():
    assert _ternac("run", "digits").returncode == 2            # --backend missing
    assert _ternac("run", "cifar", "--backend", "golden").returncode == 2


# ----------------------------------------------------------------------------- other commands

def test_verilog(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["verilog", "--out", str(out), "--lanes", "8"]) == 0
    files = sorted(os.listdir(out))
    assert files and all(f.endswith(".v") for f in files)
    assert capsys.readouterr().out.count("wrote ") == len(files)


def test_bench_numerics_dispatch(monkeypatch, tmp_path):
    import types
    seen = []
    fake = types.ModuleType("ternac.bench_numerics")
    fake.main = lambda json_path=None: seen.append(json_path) or 3
    monkeypatch.setitem(sys.modules, "ternac.bench_numerics", fake)
    assert main(["bench", "numerics", "--json", str(tmp_path / "b.json")]) == 3
    assert seen == [str(tmp_path / "b.json")]


def test_train(tmp_path, capsys):
    out = tmp_path / "d.safetensors"
    assert main(["train", "digits", "--epochs", "2", "--seed", "1", "--out", str(out), "--quiet"]) == 0
    assert "float test accuracy" in capsys.readouterr().out
    assert load_checkpoint(out).dims == (64, 128, 64, 10)
    # the trained checkpoint runs through the whole flow
    assert main(["run", "digits", "--backend", "interp", "--checkpoint", str(out), "--quiet",
                 "--limit", "20"]) == 0
    assert main(["train", "digits", "--out", str(tmp_path), "--quiet"]) == 2
    assert "is a directory" in _one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- the board link

@pytest.mark.parametrize("argv, baud", [
    (["run", "digits", "--limit", "2"], 115200),
    (["run", "digits", "--limit", "2", "--baud", "9600"], 9600),
    (["run", "vit-digits", "--limit", "1", "--baud", "230400"], 230400),
    (["generate", "--tokens", "1", "--baud", "1000000"], 1000000),
])
def test_board_backend_takes_the_baud(argv, baud, monkeypatch, capsys):
    """`--backend board --baud B` opens the board's port at B (the rate its bitstream was
    built with, `ternac build --baud B`); without --baud at the build's default, 115200. The
    session is replaced by one that records its rate and reports no board."""
    import ternac.session as session
    from ternac.errors import BackendError
    seen = []

    def fake(*a, baud, **kw):
        seen.append(baud)
        raise BackendError("no board (test session)")
    monkeypatch.setattr(session, "run_digits_on_board", fake)
    monkeypatch.setattr(session, "run_lm_on_board", fake)
    assert main([*argv, "--backend", "board", "--port", "loop://", "--quiet"]) == 2
    assert seen == [baud]
    assert _one_error_line(capsys.readouterr().err) == "ternac: error: no board (test session)"


# ----------------------------------------------------------------------------- argument types

def test_argument_types_name_the_option_and_range():
    """ternac.cliargs: an integer or real option outside its range, or not a number, is one
    sentence naming the option and the range; the parser prints it without argparse's
    'argument --x:' and 'invalid int value'."""
    import argparse

    from ternac.cliargs import number, range_message, whole
    t = whole("--n", 1, 10)
    assert t("10") == 10 and t("1") == 1
    for bad in ("0", "11", "x", "1.5", "1e3", "0x5", ""):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            t(bad)
        assert str(e.value) == f"--n must be a whole number from 1 to 10, not {bad!r}"
    assert whole("--n", 1)("99999999999") == 99999999999
    f = number("--t", 0.5, 2, noun="a clock in MHz")
    assert f("2") == 2.0
    for bad in ("nan", "inf", "-inf", "0.49", "2.01", "fast"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"^--t must be a clock in MHz "
                                                             r"from 0\.5 to 2, not "):
            f(bad)
    assert range_message("--x", 7, 1, None, why="w") == "--x must be a whole number of at " \
                                                        "least 1 (w), not 7"
    r = _ternac("run", "digits", "--backend", "golden", "--lanes", "eight")
    line = _one_error_line(r.stderr)
    assert r.returncode == 2 and line.startswith("ternac: error: --lanes must be a whole") \
        and "invalid int value" not in line and "argument --lanes" not in line


def test_training_caps_name_the_recipes():
    """The --epochs/--steps messages quote the recipes' own lengths (golden's defaults)."""
    from ternac.cli import EPOCHS_MAX, STEPS_MAX, _epochs, _steps
    from ternac.golden import lm, mlp, vit
    import argparse
    with pytest.raises(argparse.ArgumentTypeError) as e:
        _epochs(str(EPOCHS_MAX + 1))
    assert f"{mlp.DEFAULT_EPOCHS} epochs for digits and {vit.DEFAULT_EPOCHS} for vit-digits" \
        in str(e.value) and EPOCHS_MAX >= 10 * vit.DEFAULT_EPOCHS
    with pytest.raises(argparse.ArgumentTypeError) as e:
        _steps(str(STEPS_MAX + 1))
    assert f"trains {lm.DEFAULT_STEPS} steps" in str(e.value) and STEPS_MAX >= 10 * lm.DEFAULT_STEPS
    assert _epochs(str(EPOCHS_MAX)) == EPOCHS_MAX and _steps("1") == 1


def test_generate_disagreement_names_the_backend(monkeypatch, capsys):
    """generate's exit-1 sentence names the backend and what differed (it said 'the backend
    disagrees with the integer golden model')."""
    import ternac.lm_cli as lm_cli
    rep = {"prompt": "A", "text": "bc", "golden_text": "bd", "backend": "interp",
           "sampler": "greedy", "seed": None, "temperature": None, "compared": True,
           "matches_golden": False, "tokens": 2, "steps": 2, "logit_mismatches": 1,
           "cycles_per_token": None}
    monkeypatch.setattr(lm_cli, "generate", lambda *a, **kw: dict(rep))
    assert main(["generate", "--backend", "interp", "--tokens", "2", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ternac: the interp backend running the lowered program disagrees with the "
                   "integer golden model of the checkpoint (1 of 2 steps with a logit "
                   "mismatch, another text)"]
