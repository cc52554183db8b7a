"""The catalogue of bad input (issue 12 item 6): every user mistake we could think of, tried
as a new user would, in one table.

Each row is a command line, the exit code it must give (2: bad input), a fragment of the one
sentence it must print (``ternac: error: ...``, one line on stderr, no traceback), and what
must not be created. Every row also checks that nothing was lost: an existing file and an
existing folder named in the command are unchanged, and the committed checkpoints are
unchanged. Nothing here starts Yosys, nextpnr or Verilator: every build or simulation
mistake is refused before a tool starts, and programming rows are dry runs.

The rows run in-process (``ternac.cli.main``: what the console script calls), so torch and
Amaranth are imported once; ``test_console_script_says_one_line`` runs two through a real
subprocess. Placeholders in a command line: ``{tmp}`` a fresh empty folder, ``{file}`` an
existing file (content ``keep``), ``{dir}`` an existing folder holding ``old.txt``,
``{changed}`` the Shakespeare corpus with one letter replaced, ``{digits_attn}``,
``{digits_nontern}``, ``{digits_10in}`` digits checkpoints with an attention tensor, a
non-ternary trit and 10 inputs, ``{image_cut}`` / ``{image_crc}`` the digits weight image
cut in half / with one bit flipped, ``{image_l16}`` the digits image packed for 16 lanes,
``{ckpt_cut}`` the digits checkpoint cut to a third, ``{ckpt_link}`` a symbolic link to
checkpoints/, ``{fifo}`` a named pipe, ``{empty}`` an empty file, ``{ice40_bin}`` /
``{ecp5_bit}`` files that start like an iCE40 / ECP5 bitstream.
"""
from __future__ import annotations

import hashlib
import pathlib
import os
import subprocess
import sys

import pytest

from ternac.cliargs import usable_cpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(os.path.dirname(REPO), "shared", "data", "tinyshakespeare.txt")
LONG_PROMPT = "a" * 10_001
TWO64, TWO32 = 1 << 64, 1 << 32
#: The message of a training seed outside 0 .. 2^32 - 1 (or not a number).
TRAIN_SEED = "--seed must be a whole number from 0 to 4294967295 (2^32 - 1: torch's CPU generator"
#: The first bytes of the project's own bitstreams (build/icebreaker-L8/top.bin from
#: icepack, build/ulx3s-shakespeare/top.bit from ecppack).
ICE40_HEAD = bytes.fromhex("ff0000ff7eaa997e")
ECP5_HEAD = b"\xff\x00Part: LFE5U-85F-6CABGA381\x00\xff\xff\xff\xbd\xb3"

# (id, argv, exit code, fragment of the message, paths that must not exist afterwards)
# Grouped by the kind of mistake; the id names the case.
ROWS = [
    # --- a missing file -------------------------------------------------------------
    ("missing-checkpoint", "run digits --backend golden --quiet --checkpoint {tmp}/none.st", 2,
     "does not exist", []),
    ("missing-image", "run digits --backend golden --quiet --image {tmp}/none.tnac", 2,
     "does not exist", []),
    ("missing-image-info", "image info {tmp}/none.tnac", 2, "does not exist", []),
    ("missing-lm-checkpoint", "generate --tokens 2 --quiet --checkpoint {tmp}/none.st", 2,
     "does not exist", []),
    ("missing-corpus", "generate --tokens 2 --quiet --text {tmp}/none.txt", 2,
     "does not exist or is not a file; the LM is calibrated on it", []),
    ("missing-train-text", "train shakespeare --quiet --text {tmp}/none.txt --out {tmp}/s.st",
     2, "does not exist", ["{tmp}/s.st"]),
    ("missing-compile-checkpoint",
     "compile digits --checkpoint {tmp}/none.st --out {tmp}/o", 2, "does not exist",
     ["{tmp}/o"]),
    ("missing-bitstream-dry-run",
     "program --board icebreaker --bitstream {tmp}/none.bin --dry-run", 2,
     "no bitstream at", []),
    ("missing-default-bitstream-dry-run", "program --board ulx3s --lanes 124 --dry-run", 2,
     "run `ternac build --board ulx3s --lanes 124` first", []),
    # --- a damaged file ------------------------------------------------------------
    ("truncated-image", "run digits --backend golden --quiet --limit 2 --image {image_cut}", 2,
     "truncated", []),
    ("crc-image", "image info {image_crc}", 2, "CRC", []),
    ("crc-image-run", "run digits --backend golden --quiet --limit 2 --image {image_crc}", 2,
     "CRC", []),
    ("truncated-checkpoint", "run digits --backend golden --quiet --checkpoint {ckpt_cut}", 2,
     "checkpoint", []),
    # --- a folder where a file is expected (and a file where a folder is) -----------
    ("folder-checkpoint", "run digits --backend golden --quiet --checkpoint {dir}", 2,
     "is not a file", []),
    ("folder-image", "run digits --backend golden --quiet --image {dir}", 2,
     "is a directory", []),
    ("folder-image-info", "image info {dir}", 2, "is a directory", []),
    ("folder-lm-checkpoint", "generate --tokens 2 --quiet --checkpoint {dir}", 2,
     "is not a file", []),
    ("folder-corpus", "generate --tokens 2 --quiet --text {dir}", 2, "is not a file", []),
    ("folder-bitstream", "program --board icebreaker --bitstream {dir} --dry-run", 2,
     "is a folder", []),
    ("folder-json", "run digits --backend golden --quiet --limit 2 --json {dir}", 2,
     "is a directory", []),
    ("folder-train-out", "train digits --quiet --out {dir}", 2, "is a directory", []),
    ("file-compile-out", "compile digits --out {file}", 2, "exists and is not a folder", []),
    ("file-verilog-out", "verilog --out {file}", 2, "exists and is not a folder", []),
    ("file-build-dir", "build --board icebreaker --build-dir {file}", 2,
     "exists and is not a folder", []),
    ("file-unit-build-dir", "build unit engine --build-dir {file}", 2,
     "exists and is not a folder", []),
    ("file-in-build-dir-path", "build unit engine --build-dir {file}/sub", 2,
     "is not a folder", []),
    ("file-verilator-build-dir",
     "run digits --backend verilator --quiet --limit 1 --build-dir {file}", 2,
     "the build folder", []),
    ("file-lm-build-dir", "generate --backend verilator --quiet --tokens 1 --build-dir {file}",
     2, "the build folder", []),
    ("file-sim-build-dir", "sim engine --quiet --build-dir {file}", 2, "the build folder", []),
    ("folder-waves", "sim engine --quiet --waves {dir}", 2, "is a directory", []),
    ("unwritable-waves", "sim engine --quiet --waves /sys/w.vcd", 2, "not writable", []),
    # --- an empty path (would otherwise mean the default) ---------------------------
    # Each says what leaving the option out does (its default, or that nothing is written),
    # or that the command needs it.
    ("empty-checkpoint", ["run", "digits", "--backend", "golden", "--checkpoint", ""], 2,
     "the --checkpoint path is empty; give a path or leave the option out for the committed "
     "checkpoint checkpoints/digits.safetensors", []),
    ("empty-vit-checkpoint", ["run", "vit-digits", "--backend", "golden", "--checkpoint", ""],
     2, "leave the option out for the committed checkpoint checkpoints/vit_digits.safetensors",
     []),
    ("empty-lm-checkpoint", ["generate", "--checkpoint", ""], 2,
     "leave the option out for the committed checkpoint checkpoints/shakespeare.safetensors",
     []),
    ("empty-image", ["run", "digits", "--backend", "golden", "--image", ""], 2,
     "the --image path is empty; give a path or leave the option out to run the checkpoint's "
     "own weights", []),
    ("empty-json", ["run", "digits", "--backend", "golden", "--json", ""], 2,
     "the --json path is empty; give a path or leave the option out to write no JSON report",
     []),
    ("empty-image-info", ["image", "info", ""], 2, "the path is empty", []),
    ("empty-compile-out", ["compile", "digits", "--out", ""], 2,
     "the --out path is empty; the command needs it: give the folder to write into", []),
    ("empty-verilog-out", ["verilog", "--out", ""], 2,
     "the --out path is empty; the command needs it", []),
    ("empty-train-out", ["train", "digits", "--out", ""], 2,
     "the --out path is empty; give a path or leave the option out for "
     "build/digits.safetensors", []),
    ("empty-bitstream", ["program", "--board", "icebreaker", "--bitstream", "", "--dry-run"],
     2, "the --bitstream path is empty; give a path or leave the option out for "
     "build/icebreaker-L8/top.bin", []),
    ("empty-bitstream-lanes", ["program", "--board", "ulx3s", "--lanes", "16", "--bitstream",
                               "", "--dry-run"], 2,
     "leave the option out for build/ulx3s-L16/top.bit", []),
    ("empty-build-dir", ["build", "unit", "engine", "--build-dir", ""], 2,
     "the --build-dir path is empty; give a path or leave the option out for "
     "build/units/engine-up5k-L8", []),
    ("empty-board-build-dir", ["build", "--board", "icebreaker", "--build-dir", ""], 2,
     "leave the option out for build/icebreaker-L8", []),
    ("empty-lm-board-build-dir", ["build", "--board", "ulx3s", "--model", "shakespeare",
                                  "--lanes", "32", "--build-dir", ""], 2,
     "leave the option out for build/ulx3s-shakespeare", []),
    ("empty-run-build-dir", ["run", "digits", "--backend", "verilator", "--build-dir", ""], 2,
     "leave the option out for the shared Verilator builds in build/sim", []),
    ("empty-build-checkpoint", ["build", "--board", "icebreaker", "--checkpoint", ""], 2,
     "leave the option out for the committed checkpoint checkpoints/digits.safetensors", []),
    ("empty-text", ["generate", "--text", ""], 2,
     "the --text path is empty; give a path or leave the option out for the corpus "
     "../shared/data/tinyshakespeare.txt", []),
    ("empty-waves", ["sim", "engine", "--waves", ""], 2,
     "leave the option out to record no waveform", []),
    ("empty-report-out", ["report", "--board", "icebreaker", "--model", "digits", "--out", ""],
     2, "the --out path is empty; the command needs it", []),
    # --- a wrong board, device, unit, target or backend ------------------------------
    ("wrong-board", "build --board nosuch", 2, "invalid choice: 'nosuch'", []),
    ("wrong-program-board", "program --board de10 --dry-run", 2, "invalid choice", []),
    ("wrong-run-board", "run digits --backend cosim --board nosuch", 2, "invalid choice", []),
    ("wrong-device", "build unit engine --device xc7", 2, "invalid choice", []),
    ("wrong-unit", "build unit nosuchunit", 2, "unknown unit 'nosuchunit'", []),
    ("wrong-build-target", "build engine", 2, "is not a build target", []),
    ("no-board-given", "build", 2, "say which board to build for", []),
    ("wrong-backend", "run digits --backend fpga", 2, "invalid choice", []),
    ("wrong-model", "compile mnist --out {tmp}/o", 2, "invalid choice", ["{tmp}/o"]),
    ("wrong-sim-unit", "sim nosuchunit --quiet", 2, "nosuchunit", []),
    # --- a model too big for the memories or the board -------------------------------
    ("too-big-weights", "run digits --backend golden --quiet --limit 2 --weight-depth 16", 2,
     "the weight memory holds 16", []),
    ("too-big-compile", "compile digits --weight-depth 100 --out {tmp}/o", 2,
     "the weight memory holds 100", ["{tmp}/o"]),
    ("too-big-scratch", "run digits --backend golden --quiet --limit 2 --scratch-depth 16", 2,
     "but the scratchpad holds 16", []),
    ("too-big-board", "build --board icebreaker --lanes 64", 2, "cannot fit", []),
    ("weight-depth-0", "run digits --backend golden --weight-depth 0", 2,
     "--weight-depth must be a whole number from 1 to 1048576, not '0'", []),
    ("weight-depth-2^20+1", "compile digits --weight-depth 1048577 --out {tmp}/o", 2,
     "--weight-depth must be a whole number from 1 to 1048576, not '1048577'", ["{tmp}/o"]),
    ("scratch-depth-negative", "compile digits --scratch-depth -1 --out {tmp}/o", 2,
     "--scratch-depth must be a whole number from 1 to 1048576, not '-1'", ["{tmp}/o"]),
    ("too-wide-spram", "build --board icebreaker --lanes 64 --no-fit-check --build-dir {tmp}/b",
     2, "use at most 32 lanes on the iCEBreaker", ["{tmp}/b"]),
    # --- lanes that do not divide a width, or no lanes -------------------------------
    ("lanes-7", "run digits --backend golden --quiet --limit 2 --lanes 7", 2,
     "multiple of 4", []),
    ("lanes-0", "run digits --backend golden --quiet --limit 2 --lanes 0", 2,
     "multiple of 4", []),
    ("lanes-negative-compile", "compile digits --lanes -4 --out {tmp}/o", 2, "multiple of 4",
     ["{tmp}/o"]),
    ("lanes-verilog", "verilog --lanes 6 --out {tmp}/v", 2, "multiple of 4", ["{tmp}/v"]),
    ("lanes-unit", "build unit engine --lanes 0", 2, "multiple of 4", []),
    ("lanes-lm-board", "build --board ulx3s --model shakespeare --lanes 8", 2,
     "the shakespeare model is compiled for", []),
    ("lanes-program", "program --board icebreaker --lanes 0 --dry-run", 2,
     "positive lane count", []),
    # --- no board on the port --------------------------------------------------------
    ("no-port", "run digits --backend board --quiet --limit 2", 2, "needs --port", []),
    ("port-absent", "run digits --backend board --quiet --limit 2 --port {tmp}/ttyUSB9", 2,
     "no board on the port", []),
    ("lm-no-port", "generate --backend board --tokens 2 --quiet", 2, "needs --port", []),
    ("lm-port-absent", "generate --backend board --tokens 2 --quiet --port {tmp}/ttyACM0", 2,
     "no board on the port", []),
    # --- an unsupported layer or a checkpoint of another model ----------------------
    ("attention-layer", "run digits --backend golden --quiet --checkpoint {digits_attn}", 2,
     "unexpected tensor 'layers.1.attn.q_proj.weight'", []),
    ("non-ternary-trit", "run digits --backend golden --quiet --checkpoint {digits_nontern}",
     2, "is not ternary: element (0, 0) is 2", []),
    ("wrong-input-width", "run digits --backend golden --quiet --checkpoint {digits_10in}",
     2, "takes 10 inputs", []),
    ("lm-checkpoint-as-digits", "run digits --backend golden --quiet --checkpoint "
     "checkpoints/shakespeare.safetensors", 2, "is a MatMulFreeLM checkpoint, not one of the "
     "digits MLP", []),
    ("vit-checkpoint-as-digits", "run digits --backend golden --quiet --checkpoint "
     "checkpoints/vit_digits.safetensors", 2, "is a ternac-vit-digits checkpoint", []),
    ("digits-checkpoint-as-lm", "generate --tokens 2 --quiet --checkpoint "
     "checkpoints/digits.safetensors", 2, "format", []),
    ("not-an-image", "image info checkpoints/digits.safetensors", 2,
     "not a ternac weight image", []),
    ("text-as-checkpoint", "run digits --backend golden --quiet --checkpoint {file}", 2,
     "not a readable safetensors file", []),
    ("text-as-lm-checkpoint", "generate --tokens 2 --quiet --checkpoint {file}", 2,
     "not a readable safetensors file", []),
    ("text-as-image", "image info {file}", 2, "truncated", []),
    ("image-of-other-lanes",
     "run digits --backend golden --quiet --limit 2 --image {image_l16} --lanes 8", 2,
     "packed for 16 lanes, but the accelerator has 8", []),
    # --- an existing output that must survive ----------------------------------------
    ("committed-checkpoint", "train digits --quiet --epochs 1 --out "
     "checkpoints/digits.safetensors", 2, "is a committed checkpoint; pass --force", []),
    ("committed-lm-checkpoint", "train shakespeare --quiet --steps 1 --out "
     "checkpoints/shakespeare.safetensors", 2, "is a committed checkpoint", []),
    # These two fail at an argument check, before any output is touched; a failure after
    # staging: test_unit_build_failing_after_staging_keeps_the_previous_build.
    ("existing-out-kept-on-failure", "compile digits --weight-depth 16 --out {dir}", 2,
     "weight memory", []),
    ("existing-build-kept-on-failure", "build unit engine --freq 0 --build-dir {dir}", 2,
     "--freq", []),
    ("json-over-default-checkpoint", "run digits --backend golden --quiet --limit 2 --json "
     "checkpoints/digits.safetensors", 2, "is the same file as the checkpoint", []),
    ("json-over-given-checkpoint",
     "run digits --backend golden --quiet --limit 2 --checkpoint {file} --json {file}", 2,
     "is the same file as the checkpoint", []),
    ("json-over-vit-checkpoint", "run vit-digits --backend golden --quiet --limit 2 --json "
     "checkpoints/vit_digits.safetensors", 2, "is the same file as the checkpoint", []),
    ("json-over-image", "run digits --backend golden --quiet --image {file} --json {file}", 2,
     "is the same file as the weight image", []),
    ("json-over-corpus", "generate --tokens 2 --quiet --text {file} --json {file}", 2,
     "is the same file as the corpus", []),
    ("json-over-lm-checkpoint", "generate --tokens 2 --quiet --json "
     "checkpoints/shakespeare.safetensors", 2, "is the same file as the checkpoint", []),
    ("compile-json-in-out", "compile digits --out {dir} --json {dir}/weights.tnac", 2,
     "is the same file as the output file", ["{dir}/weights.tnac"]),
    ("compile-json-over-checkpoint", "compile digits --out {tmp}/o --checkpoint {file} "
     "--json {file}", 2, "is the same file as the checkpoint", ["{tmp}/o"]),
    ("build-json-over-checkpoint", "build --board icebreaker --checkpoint {file} --json {file}",
     2, "is the same file as the checkpoint", []),
    ("train-out-over-text", "train shakespeare --quiet --steps 1 --text {file} --out {file}",
     2, "is the same file as the training text", []),
    ("train-out-through-link", "train digits --quiet --epochs 1 --out "
     "{ckpt_link}/digits.safetensors", 2, "is a committed checkpoint; pass --force", []),
    ("device-image-info", "image info /dev/zero", 2, "is not a file", []),
    ("device-image", "run digits --backend golden --quiet --limit 2 --image /dev/zero", 2,
     "is not a file", []),
    ("fifo-image-info", "image info {fifo}", 2, "is not a file", []),
    ("fifo-image", "run digits --backend golden --quiet --limit 2 --image {fifo}", 2,
     "is not a file", []),
    ("lanes-7-vit-compile", "compile vit-digits --lanes 7 --out {tmp}/o", 2, "multiple of 4",
     ["{tmp}/o"]),
    ("lanes-7-lm-compile", "compile shakespeare --lanes 7 --out {tmp}/o", 2, "multiple of 4",
     ["{tmp}/o"]),
    ("lanes-7-vit-run", "run vit-digits --backend golden --quiet --lanes 7", 2,
     "multiple of 4", []),
    ("too-big-vit-weights", "run vit-digits --backend golden --quiet --limit 2 "
     "--weight-depth 16", 2, "but the weight memory holds 16", []),
    ("too-big-vit-scratch", "run vit-digits --backend golden --quiet --limit 2 "
     "--scratch-depth 16", 2, "but the scratchpad holds 16", []),
    ("too-big-vit-compile", "compile vit-digits --weight-depth 16 --out {tmp}/o", 2,
     "but the weight memory holds 16", ["{tmp}/o"]),
    ("bench-lm-missing-text", "bench lm --no-build --text {tmp}/none.txt --out {tmp}/b", 2,
     "does not exist or is not a file; the LM is calibrated on it: pass --text PATH",
     ["{tmp}/b"]),
    ("bench-lm-other-text", "bench lm --no-build --text {file} --out {tmp}/b", 2,
     "is not the one", ["{tmp}/b"]),
    ("train-digits-lm-options", "train digits --quiet --device meta --text {file} --steps 5 "
     "--out {tmp}/d.st", 2, "applies to training the shakespeare model only",
     ["{tmp}/d.st"]),
    ("train-vit-device", "train vit-digits --quiet --device nosuch --out {tmp}/v.st", 2,
     "--device applies to training the shakespeare model only", ["{tmp}/v.st"]),
    ("train-vit-steps", "train vit-digits --quiet --steps 3 --out {tmp}/v.st", 2,
     "--steps applies to training the shakespeare model only", ["{tmp}/v.st"]),
    ("train-lm-epochs", "train shakespeare --quiet --epochs 3 --out {tmp}/s.st", 2,
     "--epochs does not apply to training the shakespeare model", ["{tmp}/s.st"]),
    ("text-as-bitstream", "program --board icebreaker --bitstream {file} --dry-run", 2,
     "is not one for the iCE40 UP5K: its first 4 bytes lack the iCE40 sync word", []),
    ("checkpoint-as-bitstream", "program --board icebreaker --bitstream "
     "checkpoints/digits.safetensors --dry-run", 2, "lack the iCE40 sync word 7EAA997E", []),
    ("empty-bitstream-file", "program --board icebreaker --bitstream {empty} --dry-run", 2,
     "is empty", []),
    ("ice40-bitstream-for-ulx3s", "program --board ulx3s --bitstream {ice40_bin} --dry-run",
     2, "is not one for the ECP5-85F: its first 152 bytes lack the ECP5 preamble", []),
    ("ecp5-bitstream-for-icebreaker",
     "program --board icebreaker --bitstream {ecp5_bit} --dry-run", 2,
     "lack the iCE40 sync word", []),
    ("user-folder-as-build-dir", "build unit engine --build-dir {dir}", 2,
     "holds files that are not a ternac build", []),
    ("user-folder-as-board-build-dir", "build --board icebreaker --build-dir {dir}", 2,
     "holds files that are not a ternac build", []),
    ("current-folder-as-build-dir", "build unit engine --build-dir .", 2,
     "is the current folder, one above it or the repository", []),
    ("parent-folder-as-build-dir", "build unit engine --build-dir ..", 2,
     "is the current folder, one above it or the repository", []),
    *[(f"sweep-freq-{v}", f"sweep --board icebreaker --lanes 8 --freq {v} --no-build --out "
       f"{{tmp}}/s --cache {{tmp}}/c", 2, f"--freq must be comma-separated clocks in MHz from "
       f"1 to 1000, not '{v}'", ["{tmp}/s", "{tmp}/c"]) for v in ("1e9", "12,fast")],
    ("sweep-lanes-text", "sweep --board icebreaker --lanes 8,eight --no-build --out {tmp}/s "
     "--cache {tmp}/c", 2, "--lanes must be comma-separated whole numbers (a multiple of 4 "
     "from 4 to 128; T3 weights: of 5 from 5 to 80), not '8,eight'", ["{tmp}/s", "{tmp}/c"]),
    *[(f"sweep-seed-{name}", f"sweep --board ulx3s --model shakespeare --lanes 32 --seed {v} "
       f"--no-build --out {{tmp}}/s --cache {{tmp}}/c", 2, f"--seed must be comma-separated "
       f"whole numbers from 1 to 4294967295 (the sampler's 32-bit LFSR state; a zero state "
       f"never changes), not '{v}'", ["{tmp}/s", "{tmp}/c"])
      for name, v in (("0", "0"), ("2^32", f"1,{TWO32}"), ("text", "x"))],
    # --- an unwritable output ---------------------------------------------------------
    ("unwritable-compile-out", "compile digits --out /sys/ternac-out", 2, "not writable", []),
    ("unwritable-verilog-out", "verilog --out /sys/ternac-out", 2, "not writable", []),
    ("uncreatable-out", "compile digits --out /proc/ternac-out", 2, "not writable", []),
    ("unwritable-run-json", "run digits --backend golden --quiet --limit 2 --json /sys/r.json",
     2, "/sys of the JSON output /sys/r.json is not writable", []),
    ("unwritable-lm-json", "generate --tokens 2 --quiet --json /sys/g.json", 2,
     "not writable", []),
    ("unwritable-build-json", "build unit engine --json /sys/b.json", 2, "not writable", []),
    ("unwritable-bench-json", "bench numerics --json /sys/n.json", 2, "not writable", []),
    ("unwritable-train-out", "train digits --quiet --epochs 1 --out /sys/d.st", 2,
     "not writable", []),
    ("unwritable-build-dir", "build unit engine --build-dir /sys/ternac-b", 2,
     "not writable", []),
    # --- a clock that is not a clock ---------------------------------------------------
    *[(f"unit-freq-{f}", f"build unit engine --freq {f}", 2,
       "--freq must be a clock in MHz from 1 to 1000", [])
      for f in ("inf", "nan", "0", "-12", "1e9", "1e-300")],
    *[(f"board-freq-{f}", f"build --board icebreaker --freq {f} --build-dir {{tmp}}/b", 2,
       "--freq must be a clock in MHz from 1 to 1000", ["{tmp}/b"])
      for f in ("inf", "nan", "0", "-12", "1e9")],
    ("freq-not-a-number", "build unit engine --freq fast", 2,
     "--freq must be a clock in MHz from 1 to 1000, not 'fast'", []),
    *[(f"baud-{b}", f"build --board icebreaker --baud {b} --build-dir {{tmp}}/b", 2,
       f"--baud must be a whole number from 300 to 12000000 (bit/s; the boards' USB UARTs run "
       f"up to 12 Mbaud), not '{b}'", ["{tmp}/b"]) for b in ("0", "-1", "99999999", "fast")],
    ("pnr-seed-text", "build unit engine --pnr-seed x --build-dir {tmp}/b", 2,
     "--pnr-seed must be a whole number from 1 to 2147483647, not 'x'", ["{tmp}/b"]),
    # --- --baud: the board backend's host-link rate (a build's too), nowhere else -----
    ("unit-baud", "build unit engine --baud 9600 --build-dir {tmp}/b", 2,
     "--baud applies to a board build (--board B)", ["{tmp}/b"]),
    ("run-baud-cosim", "run digits --backend cosim --quiet --baud 9600 --build-dir {tmp}/b", 2,
     "--baud applies to the board backend only; the cosim backend would ignore it (its "
     "simulated UART runs at a fixed clock / 4)", ["{tmp}/b"]),
    ("run-baud-golden", "run vit-digits --backend golden --quiet --baud 9600", 2,
     "--baud applies to the board backend only; the golden backend would ignore it", []),
    ("lm-baud-cosim", "generate --backend cosim --quiet --tokens 2 --baud 9600", 2,
     "--baud applies to the board backend only; the cosim backend", []),
    ("lm-baud-interp", "generate --backend interp --quiet --tokens 2 --baud 9600", 2,
     "the interp backend would ignore it (it has no host link)", []),
    ("run-baud-0", "run digits --backend board --quiet --baud 0 --port {tmp}/ttyUSB9", 2,
     "--baud must be a whole number from 300 to 12000000", []),
    ("lm-baud-huge", "generate --backend board --quiet --baud 20000000 --port {tmp}/ttyUSB9",
     2, "--baud must be a whole number from 300 to 12000000", []),
    ("run-baud-port-absent", "run digits --backend board --quiet --limit 2 --baud 9600 "
     "--port {tmp}/ttyUSB9", 2, "no board on the port", []),
    *[(f"pnr-seed-{v}", f"build unit engine --pnr-seed {v} --build-dir {{tmp}}/b", 2,
       "--pnr-seed must be a whole number from 1 to 2147483647", ["{tmp}/b"])
      for v in ("0", "-1", "2147483648")],
    # --- seeds that would wrap onto another seed ------------------------------------
    ("train-seed-2^32", f"train digits --quiet --seed {TWO32} --out {{tmp}}/d.st", 2,
     TRAIN_SEED, ["{tmp}/d.st"]),
    ("train-seed-2^64", f"train digits --quiet --seed {TWO64} --out {{tmp}}/d.st", 2,
     TRAIN_SEED, ["{tmp}/d.st"]),
    ("train-seed-negative", "train digits --quiet --seed -1 --out {tmp}/d.st", 2,
     TRAIN_SEED, ["{tmp}/d.st"]),
    ("train-lm-seed-2^32+1", f"train shakespeare --quiet --seed {TWO32 + 1} --out {{tmp}}/s.st", 2,
     TRAIN_SEED, ["{tmp}/s.st"]),
    ("train-vit-seed-negative", "train vit-digits --quiet --seed -5 --out {tmp}/v.st", 2,
     TRAIN_SEED, ["{tmp}/v.st"]),
    ("train-seed-text", "train digits --seed one", 2, TRAIN_SEED, []),
    *[(f"sample-seed-{name}", f"generate --tokens 2 --quiet --seed {v}", 2,
       f"--seed must be a whole number from 1 to 4294967295 (the sampler's 32-bit LFSR state; "
       f"a zero state never changes), not '{v}'", [])
      for name, v in (("0", 0), ("2^32", TWO32), ("2^32+1", TWO32 + 1), ("-1", -1),
                      ("text", "x"), ("float", "1.5"))],
    *[(f"sim-seed-{name}", f"sim engine --quiet --seed {v}", 2,
       f"--seed must be a whole number from 0 to 4294967295 (a negative seed would give the "
       f"inputs and stalls of its absolute value), not '{v}'", [])
      for name, v in (("negative", -1), ("2^32", TWO32), ("text", "x"))],
    # --- a device that cannot train -------------------------------------------------
    *[(f"device-{d}", f"train shakespeare --quiet --steps 1 --device {d} --out {{tmp}}/s.st",
       2, say, ["{tmp}/s.st"])
      for d, say in (("meta", "cannot train the model"), ("mps", "no usable MPS"),
                     ("nosuch", "unknown torch device"), ("cuda:7", "CUDA device"),
                     ("xla", "cannot train the model"))],
    # --- the LM's corpus, prompt and sampling ----------------------------------------
    ("changed-corpus", "generate --tokens 2 --quiet --text {changed}", 2,
     "is not the one", []),
    ("changed-corpus-compile", "compile shakespeare --text {changed} --out {tmp}/o", 2,
     "is not the one", ["{tmp}/o"]),
    ("text-for-digits", "compile digits --text {file} --out {tmp}/o", 2,
     "--text applies to the shakespeare model only", ["{tmp}/o"]),
    ("empty-prompt", ["generate", "--prompt", "", "--quiet"], 2, "the prompt is empty", []),
    ("prompt-outside-vocabulary", ["generate", "--prompt", "h\u00e9llo \u20ac", "--quiet"], 2,
     "2 character(s) the model has no token for", []),
    ("long-prompt", ["generate", "--prompt", LONG_PROMPT, "--quiet"], 2,
     "at most 10000 are accepted", []),
    *[(f"tokens-{name}", f"generate --tokens {v} --quiet", 2,
       f"--tokens must be a whole number from 1 to 10000, not '{v}'", [])
      for name, v in (("0", "0"), ("huge", "100000000"), ("text", "many"))],
    ("temperature-without-seed", "generate --temperature 0.5 --quiet", 2, "give --seed too",
     []),
    *[(f"temperature-{t}", f"generate --seed 3 --temperature {t} --quiet", 2,
       f"--temperature must be a number from 0.001 to 1000 (p ~ exp(logit / T); for greedy "
       f"decoding leave out --seed), not '{t}'", [])
      for t in ("0", "-1", "nan", "inf", "1e300", "1e-300", "1001", "warm")],
    # argparse takes "-inf" after a space for an option, so it is given with "=".
    ("temperature=-inf", ["generate", "--seed", "3", "--temperature=-inf", "--quiet"], 2,
     "--temperature must be a number from 0.001 to 1000", []),
    # --- other arguments ------------------------------------------------------------
    ("limit-0", "run digits --backend golden --limit 0", 2,
     "--limit must be a whole number of at least 1, not '0'", []),
    ("limit-text", "run digits --backend golden --limit all", 2,
     "--limit must be a whole number of at least 1, not 'all'", []),
    ("image-for-vit", "run vit-digits --backend golden --image {file}", 2,
     "--image applies to the digits MLP only", []),
    *[(f"epochs-{name}-{m}", f"train {m} --quiet --epochs {v} --out {{tmp}}/d.st", 2,
       f"--epochs must be a whole number from 1 to 10000 (the recipes train 60 epochs for "
       f"digits and 400 for vit-digits), not '{v}'", ["{tmp}/d.st"])
      for m in ("digits", "vit-digits") for name, v in (("0", "0"), ("huge", "10000000"))],
    ("epochs-text", "train digits --quiet --epochs ten --out {tmp}/d.st", 2,
     "--epochs must be a whole number from 1 to 10000", ["{tmp}/d.st"]),
    *[(f"steps-{name}", f"train shakespeare --quiet --steps {v} --out {{tmp}}/s.st", 2,
       f"--steps must be a whole number from 1 to 1000000 (the shakespeare recipe trains 9444 "
       f"steps), not '{v}'", ["{tmp}/s.st"])
      for name, v in (("0", "0"), ("huge", "10000000"), ("float", "1e6"))],
    *[(f"sim-stall-{v}", f"sim engine --stall {v} --quiet", 2,
       f"--stall must be a probability from 0 up to (not including) 1, not '{v}'", [])
      for v in ("1", "often", "nan", "inf")],
    ("no-command", "", 2, "required: COMMAND", []),
    ("no-backend", "run digits", 2, "the following arguments are required: --backend", []),
    ("no-out", "compile digits", 2, "the following arguments are required: --out", []),
    *[(f"lanes-not-a-number-{cmd.split()[0]}", f"{cmd} --lanes eight", 2,
       "--lanes must be a whole number (a multiple of 4 from 4 to 128; T3 weights: of 5 from 5 "
       "to 80), not 'eight'", [])
      for cmd in ("run digits --backend golden", "compile digits --out {tmp}/o",
                  "verilog --out {tmp}/v", "build unit engine", "program --board icebreaker "
                  "--dry-run")],
    ("lm-unit-lanes", "build unit engine --model shakespeare --lanes 8", 2,
     "the shakespeare model is compiled for", []),
    ("folder-bench-json", "bench numerics --json {dir}", 2, "is a directory", []),
    # --- report's whole-number and list options (ternac.cliargs types): refused before
    # the output folder is made
    *[(f"report-cpu-batches-{name}", ["report", "--board", "icebreaker", "--model", "digits",
                                      "--out", "{tmp}/r", "--cpu-batches", v], 2,
       f"--cpu-batches must be comma-separated whole numbers from 1 to 65536 (batch sizes of "
       f"the CPU baseline), not '{v}'", ["{tmp}/r"])
      for name, v in (("text", "1,x"), ("0", "0"), ("empty", ""), ("huge", "1,1000000"))],
    *[(f"report-{opt}-{v}", f"report --board icebreaker --model digits --out {{tmp}}/r "
       f"--{opt} {v}", 2, f"--{opt} must be a whole number from 1 to 64 (Verilator runs, each "
       f"compared with golden), not '{v}'", ["{tmp}/r"])
      for opt in ("tokens", "inferences") for v in ("x", "0", "65")],
    ("report-lanes-text", "report --board icebreaker --model digits --out {tmp}/r --lanes x",
     2, "--lanes must be a whole number (a multiple of 4 from 4 to 128", ["{tmp}/r"]),
    # A lane count the model is not built with is that, not a model that does not fit.
    ("report-lanes-0", "report --board icebreaker --model digits --out {tmp}/r --lanes 0", 2,
     "error: lanes must be a multiple of 4 from 4 to 128, not 0", ["{tmp}/r"]),
    *[(f"bench-lm-tokens-{v}", f"bench lm --no-build --tokens {v} --out {{tmp}}/b", 2,
       f"--tokens must be a whole number from 1 to 64 (tokens generated on the RTL in "
       f"Verilator, every logit compared with golden), not '{v}'", ["{tmp}/b"])
      for v in ("0", "65", "two")],
    *[(f"sweep-num-cpus-{name}", f"sweep --board icebreaker --no-build --num-cpus {v} "
       f"--out {{tmp}}/s --cache {{tmp}}/c", 2, f"--num-cpus must be a whole number from 1 to "
       f"{usable_cpus()} (CPUs of the local Ray instance, a point running on each; this "
       f"machine has {usable_cpus()}), not '{v}'", ["{tmp}/s", "{tmp}/c"])
      for name, v in (("0", "0"), ("text", "two"), ("above-the-machine", usable_cpus() + 1))],
    ("report-lm-lanes-8", "report --board ulx3s --model shakespeare --out {tmp}/r --lanes 8",
     2, "error: the shakespeare model is compiled for 32, 40, 128 lanes, not 8", ["{tmp}/r"]),
]

#: ``python -m ternac.baselines`` (its own parser, one line as the CLI's): the same shape of
#: row, run through ternac.baselines.main; none of them measures anything.
BASELINE_ROWS = [
    ("baselines-warmup-text", "cpu --warmup x --out {tmp}/b.json", 2,
     "--warmup must be a whole number from 0 to 1000 (untimed steps a point), not 'x'",
     ["{tmp}/b.json"]),
    ("baselines-repeats-0", "cpu --repeats 0 --out {tmp}/b.json", 2,
     "--repeats must be a whole number from 1 to 1000 (timed blocks a point), not '0'",
     ["{tmp}/b.json"]),
    ("baselines-block-s-negative", "cpu --block-s=-1 --out {tmp}/b.json", 2,
     "--block-s must be a time in seconds from 0 to 60", ["{tmp}/b.json"]),
    ("baselines-max-step-s-0", "gpu --max-step-s 0 --out {tmp}/b.json", 2,
     "--max-step-s must be a time in seconds above 0 and at most 3600", ["{tmp}/b.json"]),
    *[(f"baselines-batches-{name}", f"cpu --batches {v} --out {{tmp}}/b.json", 2,
       f"--batches must be comma-separated whole numbers from 1 to 1048576 (LM streams or "
       f"digits images a step), not '{v}'", ["{tmp}/b.json"])
      for name, v in (("text", "1,x"), ("0", "0"), ("huge", "1048577"))],
    *[(f"baselines-threads-{name}", f"cpu --threads {v} --out {{tmp}}/b.json", 2,
       f"--threads must be comma-separated whole numbers from 1 to {usable_cpus()} "
       f"(torch.set_num_threads values; this machine has {usable_cpus()} CPUs), not '{v}'",
       ["{tmp}/b.json"])
      for name, v in (("text", "one"), ("0", "0"), ("above-the-machine", usable_cpus() + 1))],
    ("baselines-calib-chars-0", "cpu --calib-chars 0 --out {tmp}/b.json", 2,
     "--calib-chars must be a whole number from 1 to 1000000", ["{tmp}/b.json"]),
    ("baselines-unknown-option", "cpu --bogus", 2, "unrecognized arguments: --bogus", []),
]


@pytest.mark.parametrize("row", BASELINE_ROWS, ids=[r[0] for r in BASELINE_ROWS])
def test_bad_baselines_input(row, tmp_path, capsys, monkeypatch):
    name, cmd, code, says, absent = row
    monkeypatch.chdir(REPO)
    subs = {"tmp": str(tmp_path)}
    from ternac.baselines import main
    try:
        rc = main(_argv(cmd, subs))
    except SystemExit as exc:           # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == code, f"{name}: exit {rc}\nstdout {out}\nstderr {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ternac: error: "), err
    assert says in lines[0] and lines[0].endswith("(see python -m ternac.baselines --help)")
    for p in absent:
        assert not os.path.exists(p.format(**subs)), f"{name} created {p.format(**subs)}"


def _ids():
    return [r[0] for r in ROWS]


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


COMMITTED = [os.path.join(REPO, "checkpoints", n) for n in sorted(
    os.listdir(os.path.join(REPO, "checkpoints"))) if n.endswith(".safetensors")]
COMMITTED_SHA = {p: _sha(p) for p in COMMITTED}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """The checkpoints and corpus some rows need, made once."""
    import torch
    from safetensors.torch import load_file, save_file
    base = tmp_path_factory.mktemp("bad-inputs")
    t = load_file(os.path.join(REPO, "checkpoints", "digits.safetensors"))
    attn = dict(t)
    attn["layers.1.attn.q_proj.weight"] = torch.zeros(64, 128)
    save_file(attn, str(base / "attn.safetensors"))
    # A trit checkpoint with one weight of 2.
    nontern = {}
    for i in range(3):
        w = t[f"layers.{i}.weight"]
        nontern[f"layers.{i}.trits"] = torch.sign(w).to(torch.int8)
        nontern[f"layers.{i}.gamma"] = torch.tensor(0.1)
        nontern[f"layers.{i}.act_scale"] = t[f"layers.{i}.act_scale"]
    nontern["layers.0.trits"][0, 0] = 2
    save_file(nontern, str(base / "nontern.safetensors"))
    narrow = dict(t)
    narrow["layers.0.weight"] = t["layers.0.weight"][:, :10].contiguous()
    save_file(narrow, str(base / "in10.safetensors"))
    from ternac.golden.image import encode_image
    from ternac.lower import compile_checkpoint
    from ternac.runner import accel_config
    img = encode_image(compile_checkpoint(os.path.join(REPO, "checkpoints",
                                                       "digits.safetensors"),
                                          accel_config(8)).image)
    (base / "cut.tnac").write_bytes(img[:len(img) // 2])
    (base / "l16.tnac").write_bytes(encode_image(compile_checkpoint(
        os.path.join(REPO, "checkpoints", "digits.safetensors"), accel_config(16)).image))
    flipped = bytearray(img)
    flipped[len(img) // 2] ^= 0x10
    (base / "crc.tnac").write_bytes(bytes(flipped))
    os.symlink(os.path.join(REPO, "checkpoints"), base / "ckpt-link")
    os.mkfifo(base / "fifo")
    (base / "empty.bin").write_bytes(b"")
    # The starts of real bitstreams (boards/ builds): icepack's and ecppack's.
    (base / "ice40.bin").write_bytes(ICE40_HEAD + bytes(144))
    (base / "ecp5.bit").write_bytes(ECP5_HEAD + bytes(144))
    raw = open(os.path.join(REPO, "checkpoints", "digits.safetensors"), "rb").read()
    (base / "cut.safetensors").write_bytes(raw[:len(raw) // 3])
    changed = base / "changed.txt"
    if os.path.isfile(CORPUS):
        text = open(CORPUS, encoding="utf-8").read()
        i = text.index("e", 1000)                  # one letter in the first 50,000
        changed.write_text(text[:i] + "a" + text[i + 1:], encoding="utf-8")
    return {"digits_attn": str(base / "attn.safetensors"),
            "digits_nontern": str(base / "nontern.safetensors"),
            "digits_10in": str(base / "in10.safetensors"), "changed": str(changed),
            "image_cut": str(base / "cut.tnac"), "image_crc": str(base / "crc.tnac"),
            "ckpt_cut": str(base / "cut.safetensors"), "image_l16": str(base / "l16.tnac"),
            "ckpt_link": str(base / "ckpt-link"), "fifo": str(base / "fifo"),
            "empty": str(base / "empty.bin"), "ice40_bin": str(base / "ice40.bin"),
            "ecp5_bit": str(base / "ecp5.bit")}


def _argv(cmd, subs) -> list[str]:
    if isinstance(cmd, list):
        return [a.format(**subs) if a else a for a in cmd]
    return [a.format(**subs) for a in cmd.split()]


@pytest.mark.parametrize("row", ROWS, ids=_ids())
def test_bad_input(row, tmp_path, fixtures, capsys, monkeypatch):
    name, cmd, code, says, absent = row
    if "{changed}" in str(cmd) and not os.path.isfile(CORPUS):
        pytest.skip(f"the corpus {CORPUS} is not on this machine")
    monkeypatch.chdir(REPO)
    work = tmp_path / "work"
    work.mkdir()
    existing = tmp_path / "existing.txt"
    existing.write_text("keep")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    subs = {"tmp": str(work), "file": str(existing), "dir": str(folder), **fixtures}
    from ternac.cli import main
    try:
        rc = main(_argv(cmd, subs))
    except SystemExit as exc:           # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == code, f"{name}: exit {rc}\nstdout {out}\nstderr {err}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ternac: error: "), err
    assert says in lines[0], lines[0]
    # Nothing lost, nothing made.
    assert existing.read_text() == "keep"
    assert sorted(os.listdir(folder)) == ["old.txt"] and (folder / "old.txt").read_text() == "old"
    for p in absent:
        assert not os.path.exists(p.format(**subs)), f"{name} created {p.format(**subs)}"
    assert not [p for p in os.listdir(work) if p.endswith((".partial", ".tmp"))]
    assert {p: _sha(p) for p in COMMITTED} == COMMITTED_SHA


def test_the_catalogue_is_large():
    """The table covers every kind of mistake issue 12 names (ids are unique)."""
    ids = _ids()
    assert len(ids) == len(set(ids)) and len(ids) >= 100


def test_console_script_says_one_line(tmp_path):
    """Through a real process: an argparse error and a CLI error are one line each."""
    for args, says in ((["train", "digits", "--seed", str(TWO64)], TRAIN_SEED),
                       (["build", "unit", "engine", "--freq", "nan"], "--freq must be")):
        r = subprocess.run([sys.executable, "-m", "ternac.cli", *args], capture_output=True,
                           text=True, cwd=REPO, timeout=300)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1 and says in lines[0], r.stderr


def test_train_digits_writes_build_not_the_committed_checkpoint(tmp_path, monkeypatch, capsys):
    """`ternac train digits` without --out writes build/digits.safetensors (relative to the
    working folder), reports the seed it used, and leaves checkpoints/ alone."""
    from ternac.cli import TRAIN_OUT, main
    monkeypatch.chdir(tmp_path)
    assert main(["train", "digits", "--epochs", "1", "--seed", "7", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert os.path.isfile(tmp_path / TRAIN_OUT["digits"]) and "seed 7," in out
    assert {p: _sha(p) for p in COMMITTED} == COMMITTED_SHA
    from safetensors import safe_open
    with safe_open(str(tmp_path / TRAIN_OUT["digits"]), "pt") as f:
        md = f.metadata()
    assert md["seed"] == "7" and md["torch"] and md["cpu_capability"] and md["threads"] == "1"


def test_training_seeds_are_distinct():
    """Why training seeds stop at 2^32 - 1: torch's CPU generator keeps 32 bits of a seed
    (0, 2^32 and 2^63 draw the same numbers), while 0, 1, 2^32 - 1 differ; the recipe refuses
    a larger seed rather than repeat another seed's model."""
    import torch

    from ternac.golden.mlp import SEED_MAX, train_digits

    def draws(seed):
        torch.manual_seed(seed)
        return tuple(torch.rand(4).tolist())
    assert SEED_MAX == TWO32 - 1
    assert draws(0) == draws(TWO32) == draws(1 << 63) and draws(1) == draws(TWO32 + 1)
    assert len({draws(0), draws(1), draws(SEED_MAX)}) == 3
    for bad in (TWO32, -1):
        with pytest.raises(ValueError, match="2\\^32 - 1"):
            train_digits(seed=bad, epochs=1, progress=False)


def test_sampling_seeds_in_range_are_distinct_states():
    """Every accepted LFSR seed is its own sampler state (the ones that wrapped are refused)."""
    from ternac.golden.sampler import seed_state
    from ternac.runner import SEED_MAX, SEED_MIN, check_lfsr_seed
    for s in (SEED_MIN, 2, 0xDEADBEEF, SEED_MAX):
        assert check_lfsr_seed(s) == s and seed_state(s) == s
    assert len({seed_state(s) for s in (0, 1, TWO32, TWO32 + 1)}) == 1   # why they are refused


def test_failed_json_write_names_the_users_path(tmp_path, monkeypatch):
    """A write that fails after the checks names the path the user gave, not the temporary
    file beside it."""
    import tempfile

    from ternac.errors import InputError, write_json
    from ternac.golden.fileio import atomic_write
    target = tmp_path / "r.json"

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".r.json.x.tmp"))
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as e:
        atomic_write(target, "{}")
    assert e.value.filename == str(target)
    # write_json's own check makes a probe file too: let the probe pass, fail the write.
    import ternac.errors as errors
    monkeypatch.setattr(errors, "_writable", lambda folder: True)
    with pytest.raises(InputError, match=f"cannot write the JSON output {target}: permission"):
        write_json(target, {})
    assert not target.exists()


def test_long_prompt_shows_progress(capsys):
    """A long prompt on the golden backend shows a bar of its steps on stderr (10,000
    characters take minutes): the bar that generate hands IntLM.generate as its logits
    list counts every appended step and closes at the prompt's end."""
    from ternac.runner import PROMPT_BAR_MIN, _PromptBar
    assert PROMPT_BAR_MIN <= 1000
    bar = _PromptBar(5, "[run] prompt")
    for k in range(7):
        bar.append([k])
    assert list(bar) == [[k] for k in range(7)] and bar.bar is None
    assert "[run] prompt" in capsys.readouterr().err


class _Silent:
    """A host-link transport that records what would be sent and never answers."""
    is_async = False

    def __init__(self):
        self.sent = []

    def write(self, data):
        self.sent.append(bytes(data))

    def read(self, n, long=False):
        from ternac.hostdriver import LinkTimeout
        raise LinkTimeout("no board (test transport)")

    def drain(self):
        pass


@pytest.mark.parametrize("call, says", [
    (lambda d: d.write_scratch(0, [70000]), "outside the -32768..32767"),
    (lambda d: d.write_mem(0, 0, [1 << 16]), "SCRATCH word 0 is 65536"),
    (lambda d: d.write_scratch(-1, [1]), "at address -1 do not fit"),
], ids=["scratch-value-70000", "17-bit-word-into-16-bit-memory", "address-minus-1"])
def test_host_driver_bad_arguments(call, says):
    """The host driver's rows (its checks are helper X's, ternac/hostdriver.py): refused in
    one sentence before any byte is sent (an address of -1 raised OverflowError before)."""
    from ternac.errors import InputError
    from ternac.hostdriver import HostDriver
    t = _Silent()
    with pytest.raises(InputError, match=says) as e:
        call(HostDriver(t, word_bits=16))
    assert t.sent == [] and "\n" not in str(e.value)


def test_compile_replaces_its_files_only_when_all_are_written(tmp_path, monkeypatch, capsys):
    """`ternac compile --out DIR` writes into a folder beside DIR and moves the complete set
    in: a write that fails half-way leaves DIR as it was (no staging folder left behind); a
    success replaces the compiler's files, removes a stale one of its own (memory.hex of
    another model) and keeps the user's."""
    import ternac.lower as lower
    from ternac.cli import main
    out = tmp_path / "out"
    out.mkdir()
    (out / "program.hex").write_text("old program\n")
    (out / "memory.hex").write_text("stale\n")
    (out / "notes.txt").write_text("mine\n")
    real = lower.write_compiled

    def half(c, d):
        (pathlib.Path(d) / "weights.tnac").write_bytes(b"half")
        raise OSError(28, "No space left on device", str(pathlib.Path(d) / "program.hex"))
    monkeypatch.setattr(lower, "write_compiled", half)
    assert main(["compile", "digits", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"ternac: error: cannot write the output "
                                               f"folder {out}: no space left on device; it "
                                               f"is as it was")
    assert sorted(p.name for p in out.iterdir()) == ["memory.hex", "notes.txt", "program.hex"]
    assert (out / "program.hex").read_text() == "old program\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.setattr(lower, "write_compiled", real)
    assert main(["compile", "digits", "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "program.hex", "program.txt",
                                                     "weights.tnac"]
    assert (out / "program.hex").read_text() != "old program\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_digits_recipe_reproduces_the_committed_checkpoint(tmp_path):
    """`ternac train digits` (seed 0, 60 epochs) gives every tensor of
    checkpoints/digits.safetensors bit for bit where torch and its CPU kernels are those
    the checkpoint was made with (golden.mlp.COMMITTED_RECIPE); elsewhere the dependency is
    recorded, not hidden (AVX2 kernels give 0.9667, measured)."""
    import torch
    from safetensors.torch import load_file

    from ternac.golden.mlp import COMMITTED_RECIPE, DEFAULT_CHECKPOINT, train_digits
    here = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    made = (COMMITTED_RECIPE["torch"], COMMITTED_RECIPE["cpu_capability"])
    if here != made:
        pytest.skip(f"torch {here[0]} with {here[1]} kernels; the checkpoint was made with "
                    f"torch {made[0]} and {made[1]} kernels")
    r = train_digits(seed=0, epochs=60, out=tmp_path / "d.safetensors", progress=False)
    got, want = load_file(str(tmp_path / "d.safetensors")), load_file(str(DEFAULT_CHECKPOINT))
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert f"{r['int_accuracy']:.4f}" == COMMITTED_RECIPE["int_accuracy"] == "0.9694"


def test_build_staging_keeps_the_old_folder(tmp_path):
    """A board or unit build replaces its folder whole only on success (boards/build.py
    _Staged): a failure after staging leaves the previous build as it was (its own files
    go to <folder>.failed); a finished build replaces a previous ternac build; a folder of
    the user's files, the current folder and the repository are refused before any work."""
    import json

    from ternac.boards.build import REPO as BREPO
    from ternac.boards.build import _Staged, check_build_dir, is_build_folder
    final = tmp_path / "b"
    final.mkdir()
    (final / "report.json").write_text(json.dumps({"fmax_MHz_achieved": 40.0}))
    (final / "top.bin").write_text("old")
    assert is_build_folder(final)
    check_build_dir(final)                          # a previous build may be replaced
    with pytest.raises(RuntimeError, match="injected"):
        with _Staged(final) as stage:
            (stage.dir / "top.bin").write_text("new")
            raise RuntimeError("injected after staging")
    assert (final / "top.bin").read_text() == "old"
    assert (tmp_path / "b.failed" / "top.bin").read_text() == "new"
    with _Staged(final) as stage:
        (stage.dir / "top.bin").write_text("new")
        stage.finish({"fmax_MHz_achieved": 41.0})
    assert (final / "top.bin").read_text() == "new" and not (tmp_path / "b.failed").exists()
    assert sorted(os.listdir(tmp_path)) == ["b"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    (user / "report.json").write_text("{\"mine\": 1}")      # not a build's report
    with pytest.raises(ValueError, match="not a ternac build"):
        check_build_dir(user)
    check_build_dir(tmp_path / "new")                # a new folder and an empty one are fine
    (tmp_path / "empty").mkdir()
    check_build_dir(tmp_path / "empty")
    for bad in (os.getcwd(), os.path.dirname(os.getcwd()), str(BREPO)):
        with pytest.raises(ValueError, match="current folder, one above it or the repository"):
            check_build_dir(bad)
    assert (user / "notes.txt").read_text() == "keep"


def test_checkpoint_without_corpus_hash_warns(tmp_path, capsys):
    """An LM checkpoint that records no corpus_sha256 (an imported one) cannot have its
    corpus checked: check_corpus says so in one warning line on stderr and goes on."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ternac.runner import check_corpus
    src = os.path.join(REPO, "checkpoints", "shakespeare.safetensors")
    with safe_open(src, "pt") as f:
        md = {k: v for k, v in (f.metadata() or {}).items() if k != "corpus_sha256"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    bare = tmp_path / "bare.safetensors"
    save_file(tensors, str(bare), metadata=md)
    text = tmp_path / "t.txt"
    text.write_text("any text")
    assert check_corpus(str(bare), str(text)) is None
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("ternac: warning: ") and \
        "could not be checked" in lines[0], lines
    assert check_corpus(src, CORPUS) if os.path.isfile(CORPUS) else True
    assert "warning" not in capsys.readouterr().err


def test_bench_lm_without_the_corpus(tmp_path, monkeypatch, capsys):
    """`ternac bench lm --no-build` where the default corpus is missing: one sentence naming
    --text (an option bench lm has), no traceback, no output folder."""
    import ternac.golden.shakespeare_data as sd
    from ternac.cli import main
    monkeypatch.setattr(sd, "DEFAULT_TEXT", tmp_path / "absent.txt")
    assert main(["bench", "lm", "--no-build", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "absent.txt does not exist" in lines[0] and \
        "pass --text PATH" in lines[0], err
    assert not (tmp_path / "b").exists()


def test_bitstream_signatures():
    """check_bitstream takes a file that starts like the family's bitstream (and a real
    build's, where one is under build/) and refuses the other family's."""
    from ternac.boards_cli import check_bitstream
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        ice, ecp = os.path.join(d, "a.bin"), os.path.join(d, "b.bit")
        open(ice, "wb").write(ICE40_HEAD + bytes(100))
        open(ecp, "wb").write(ECP5_HEAD + bytes(100))
        assert check_bitstream(ice, "icebreaker") is None
        assert check_bitstream(ecp, "ulx3s") is None
        assert "lack the ECP5 preamble" in check_bitstream(ice, "ulx3s")
        assert "lack the iCE40 sync word" in check_bitstream(ecp, "icebreaker")
    for board, rel in (("icebreaker", "build/icebreaker-L8/top.bin"),
                       ("ulx3s", "build/ulx3s-shakespeare/top.bit")):
        real = os.path.join(REPO, rel)
        if os.path.isfile(real):
            assert check_bitstream(real, board) is None, real


def test_unit_build_failing_after_staging_keeps_the_previous_build(tmp_path, monkeypatch,
                                                                    capsys):
    """`ternac build unit engine --build-dir D` past every argument check, failing in a tool
    (injected: the plan runner raises BuildError after the wrapper's cost is staged): D, a
    previous build, is as it was, the failed build's files are in D.failed, exit 1 (a tool
    failure, not bad input). The
    same command on a folder of the user's files is refused before any work."""
    import json

    import ternac.boards.build as build
    from ternac.cli import main
    prev = tmp_path / "D"
    prev.mkdir()
    (prev / "report.json").write_text(json.dumps({"fmax_MHz_achieved": 50.0}))
    (prev / "top.bin").write_text("old")

    def fail(plan, build_dir, name, progress, log_dir=None):
        raise build.BuildError(f"synthesis (yosys) failed (injected); see {log_dir}/yosys.log")
    monkeypatch.setattr(build, "_run_plan", fail)
    assert main(["build", "unit", "engine", "--build-dir", str(prev)]) == 1
    err = capsys.readouterr().err
    assert "injected" in err and "Traceback" not in err, err
    assert sorted(os.listdir(prev)) == ["report.json", "top.bin"]
    assert (prev / "top.bin").read_text() == "old"
    assert (tmp_path / "D.failed" / "wrapper.json").is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".partial", ".old"))]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["build", "unit", "engine", "--build-dir", str(mine)]) == 2
    assert "not a ternac build" in capsys.readouterr().err
    assert os.listdir(mine) == ["notes.txt"]


def test_read_image_refuses_a_device_and_a_fifo(tmp_path):
    """golden.image.read_image itself (not only the CLI) refuses a path that is not a regular
    file before opening it: /dev/zero read for ever, a FIFO blocked in open()."""
    from ternac.golden.errors import ImageError
    from ternac.golden.image import read_image
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    for p in ("/dev/zero", str(fifo)):
        with pytest.raises(ImageError, match="is not a file"):
            read_image(p)


def test_whole_list_type():
    """ternac.cliargs.whole_list: a comma-separated list of whole numbers in a range, in the
    order given, repeats dropped; anything else is whole()'s range sentence for the list."""
    import argparse

    from ternac.cliargs import whole_list
    t = whole_list("--b", 1, 100, why="w")
    assert t("64,1") == (64, 1) and t(" 1, 64 ,1") == (1, 64) and t("100") == (100,)
    for bad in ("", ",", "1,", "1,,2", "0", "101", "1,x", "1.5", "1e2", "-1"):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            t(bad)
        assert str(e.value) == f"--b must be comma-separated whole numbers from 1 to 100 (w), " \
                               f"not {bad!r}"


def test_number_below():
    """ternac.cliargs.number(below=True): the upper bound excluded, and said so."""
    import argparse

    from ternac.cliargs import number, range_message
    t = number("--p", 0, 1, noun="a probability", below=True)
    assert t("0") == 0.0 and t("0.999") == 0.999
    for bad in ("1", "1.5", "-0.1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            t(bad)
        assert str(e.value) == f"--p must be a probability from 0 up to (not including) 1, " \
                               f"not {bad!r}"
    assert range_message("--x", 3, None, 2, noun="a number", below=True) == \
        "--x must be a number below 2, not 3"
    assert range_message("--x", 3, 0, 2, noun="a number", above=True, below=True) == \
        "--x must be a number above 0 and below 2, not 3"
