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
    (["generate", "--tokens", "100000000"], "--tokens must be from 1 to"),
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
