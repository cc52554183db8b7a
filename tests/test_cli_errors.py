"""Bad input found by trying to break the CLI: each is one sentence on stderr, exit code 2,
no traceback, checked before any work, and nothing written."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ternac(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from ternac.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("args,says", [
    (["generate", "--tokens", "2", "--checkpoint", "checkpoints/digits.safetensors"],
     "format"),
    (["generate", "--tokens", "100000000"], "--tokens must be a whole number from 1 to 10000"),
    (["run", "digits", "--backend", "golden", "--limit", "2", "--json", "/proc/x/y.json"],
     "cannot create the folder"),
    (["run", "digits", "--backend", "golden", "--limit", "2", "--json", ""], "path is empty"),
    (["train", "shakespeare", "--device", "nosuch", "--steps", "1", "--out", "/tmp/never.st"],
     "unknown torch device"),
    (["program", "--board", "icebreaker", "--bitstream", REPO, "--dry-run"], "is a folder"),
])
def test_bad_input_is_one_sentence_exit_2(args, says, tmp_path):
    r = _ternac(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("ternac: error: "), r.stderr
    assert says in lines[0]
    assert not os.path.exists("/tmp/never.st")


def test_json_to_a_directory_is_refused_before_generating(tmp_path):
    r = _ternac("generate", "--tokens", "2", "--json", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
    assert r.stdout == ""          # nothing was generated


def test_stopped_board_top_gives_no_unused_elaboratable(tmp_path):
    """`build --board ulx3s --freq 999`: the board top is made, its PLL refused in the
    constructor, the build stops before elaboration. The one error sentence is the last
    line on stderr and Amaranth's UnusedElaboratable warnings for the top and its memories
    (printed after the error before) are not shown; nothing is built."""
    r = _ternac("build", "--board", "ulx3s", "--freq", "999", "--build-dir",
                str(tmp_path / "b"))
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines[-1] == "ternac: error: the ECP5 PLL cannot make 999 MHz from 25 MHz", r.stderr
    assert "UnusedElaboratable" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_unused_elaboratable_is_silenced_on_the_error_path_only():
    """forget_unused_design silences the components an error stopped, and only those: a
    component made and dropped afterwards (a real bug in a run that goes on) still warns."""
    import gc
    import warnings

    from amaranth.hdl import Fragment, UnusedElaboratable

    from ternac.hw.unused import forget_unused_design
    from ternac.hw.uart import UARTTx

    # Amaranth shows the warning only once something has been elaborated in the process.
    Fragment.get(UARTTx(divisor=4), None)

    def stopped():
        tx = UARTTx(divisor=4)  # noqa: F841 (held by this frame when the error passes)
        raise ValueError("stopped before elaboration")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            stopped()
        except ValueError as exc:
            forget_unused_design(exc)
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, UnusedElaboratable)], seen
    with pytest.warns(UnusedElaboratable, match="UARTTx"):
        UARTTx(divisor=4)
        gc.collect()
