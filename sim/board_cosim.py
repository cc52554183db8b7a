"""Co-simulation of a board: the board core (UART host link + Accelerator, with the board's
memory mapping) in Verilator, driven through its UART pins by the same host driver that
talks to a real board (``ternac.hostdriver.HostDriver`` over cocotbext-uart).

Both runs execute a session of :mod:`ternac.session`, the very code that ``--backend board``
runs over pyserial: :func:`run_digits_cosim` (``ternac run digits --backend cosim``) runs
:func:`ternac.session.digits_session` (identify, weights, program, then for every input:
write it, RUN, read the logits), :func:`run_lm_cosim` (``ternac generate --backend cosim``)
runs :func:`ternac.session.lm_session` (identify, weights, program, scratch constants, then
per token: the token id, RUN, the logits). So the cosim backends exercise the UART, the
frame parser, the host port and (iCEBreaker) the SPRAM weight memory, and must match golden.

This file is also the cocotb test module (``board_digits``, ``board_lm``, ``spram_banks``)
that runs inside the simulator.

The simulated clock is 100 MHz and the UART runs at clock / 4 (25 Mbaud, the smallest
divisor hw/uart.py takes) to keep the simulation short; the board builds use the same RTL
at 115200 baud. The simulation runs at roughly 75-100k cycles a second of wall time
(measured; cocotb's VPI access costs more than the design), so the line dominates: loading
the flagship LM's 14,768 weight words (236 kB on the wire) took 88-95 s at clock / 4 and
225 s at clock / 8 (2 shared cores, loaded), a token step (34k cycles, logits read back)
well under a second.
"""
from __future__ import annotations

import os
import pathlib
import sys
import threading
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from ternac.boards.facts import BOARDS

__all__ = ["COSIM_BOARDS", "COSIM_DIVISOR", "build_board_cosim", "run_digits_cosim",
           "run_lm_cosim"]

CLK_NS = 10
COSIM_DIVISOR = 4
#: The boards that co-simulate, and where each keeps its weights (boards.facts).
COSIM_BOARDS = {key: b.weights for key, b in BOARDS.items()}


def _core(cfg, program_words, weight_words, board):
    from ternac.boards.core import BoardCore
    from ternac.hw.spram import SPRAMWeightMemory
    from ternac.protocol import board_config_hash
    if board not in COSIM_BOARDS:
        raise ValueError(f"unknown board {board!r}; choose one of {', '.join(COSIM_BOARDS)}")
    spram = COSIM_BOARDS[board] == "spram"
    wmem = SPRAMWeightMemory(word_bits=cfg.word_bits, depth=cfg.weight_depth) if spram else None
    chash = board_config_hash(cfg, program_words, board)
    core = BoardCore(cfg, program_words, () if spram else weight_words,
                     divisor=COSIM_DIVISOR, timeout_cycles=64 * 10 * COSIM_DIVISOR,
                     config_hash=chash, weight_memory=wmem, blink_cycles=64)
    return core, spram, chash


def build_board_cosim(cfg, program_words, weight_words=(), *, board: str = "icebreaker",
                      build_dir=None, progress: bool = True):
    """Build the board core for ``board`` in Verilator (cached by its Verilog).

    Returns
    -------
    (runner, build_dir, toplevel, config_hash, weights_in_spram)

    Raises
    ------
    ValueError for an unknown board or a weight memory that does not fit the board.
    """
    from ternac.hw.spram import spram_sim_source
    from ternac.sim.runner import DEFAULT_BUILD, build
    core, spram, chash = _core(cfg, program_words, weight_words, board)
    root = pathlib.Path(build_dir) if build_dir else DEFAULT_BUILD
    extra = [spram_sim_source(root / "models")] if spram else []
    name = f"ternac_{board}_cosim_L{cfg.lanes}"
    runner, bdir = build(core, name, build_root=root, extra_sources=extra, progress=progress)
    return runner, bdir, name, chash, spram


def _echo_progress(path: pathlib.Path, stop: threading.Event, t0: float) -> None:
    """Print the lines the bench appends to ``path`` (prefixed with the wall time) until
    ``stop`` is set."""
    pos = 0

    def flush():
        nonlocal pos
        try:
            with open(path) as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        done, _, _ = chunk.rpartition("\n")
        if done:
            pos += len(done) + 1
            for line in done.splitlines():
                print(f"[cosim] {time.time() - t0:5.0f} s  {line}", file=sys.stderr, flush=True)

    while not stop.wait(0.5):
        flush()
    flush()


def _run_session(testcase: str, p: dict, cfg, program_words, weight_words, *, board: str,
                 build_dir, progress: bool, what: str) -> dict:
    """Build the board core, run the cocotb ``testcase`` (a session over the UART) with
    the session inputs ``p``, echo its progress lines; returns the bench's output with
    ``wall_s`` (measured, the build included)."""
    from ternac.sim.runner import run_bench
    t0 = time.time()
    runner, bdir, name, chash, spram = build_board_cosim(
        cfg, program_words, weight_words, board=board, build_dir=build_dir, progress=progress)
    # The board facts the session was given are those the simulated core was built with.
    assert chash == p["config_hash"] and spram == p["load_weights"]
    stop, thread = threading.Event(), None
    if progress:
        loaded = f"{len(weight_words)} weight words, " if spram else ""
        print(f"[cosim] {board}: loading {loaded}{len(program_words)} instructions {what} over "
              f"the simulated UART (clock/{COSIM_DIVISOR}) ...", file=sys.stderr, flush=True)
        p = dict(p, progress_file=str(pathlib.Path(bdir) /
                                      f"progress-{os.getpid()}-{time.time_ns()}.txt"))
        thread = threading.Thread(target=_echo_progress,
                                  args=(pathlib.Path(p["progress_file"]), stop, t0), daemon=True)
        thread.start()
    try:
        out = run_bench(runner, bdir, name, "board_cosim", testcase=testcase, inputs=p)
    finally:
        if thread is not None:
            stop.set()
            thread.join()
            pathlib.Path(p["progress_file"]).unlink(missing_ok=True)
    out["wall_s"] = round(time.time() - t0, 1)
    if progress:
        print(f"[cosim] done in {out['wall_s']:.0f} s wall, "
              f"{out['link']['sim_seconds'] * 1e3:.1f} ms simulated", file=sys.stderr, flush=True)
    return out


def run_digits_cosim(compiled, inputs, *, board: str = "icebreaker", build_dir=None,
                     progress: bool = True):
    """``ternac run digits --backend cosim``: a :class:`ternac.lower.Compiled` model and
    its int8 input vectors through the co-simulated ``board`` over its UART
    (:func:`ternac.session.digits_session`).

    Weights go over the link when the board keeps them in SPRAM (always loaded, then the
    first words read back and compared); the program is loaded over the link too (it is
    also baked into the bitstream's EBR; loading it checks the PROG path).

    Returns
    -------
    (logits, results, cycles): lists per input (int32 logits, the ARGMAX result, RTL cycles
    start to done), as the verilator backend.

    Raises
    ------
    ValueError for an unknown board; sim.runner.BenchFailed if the bench fails (a link
    error, a weight read back wrong).
    """
    from ternac.session import digits_session_inputs
    p = digits_session_inputs(compiled, inputs, board)
    res = _run_session("board_digits", p, compiled.cfg, compiled.program_words,
                       compiled.weight_words, board=board, build_dir=build_dir,
                       progress=progress, what=f"then {len(p['inputs'])} inputs")
    return ([[int(v) for v in row] for row in res["logits"]], [int(r) for r in res["results"]],
            [int(c) for c in res["cycles"]])


def run_lm_cosim(cm, prompt_ids, n_new: int, *, board: str = "icebreaker", build_dir=None,
                 progress: bool = True) -> dict:
    """Generate with a compiled LM on the co-simulated ``board`` over its UART.

    The board core (UART host link + Accelerator; iCEBreaker: the weights in four
    SB_SPRAM256KA models) runs in Verilator; inside the cocotb bench the host driver
    (:class:`ternac.hostdriver.HostDriver` over cocotbext-uart) runs
    :func:`ternac.session.lm_session`: IDENTIFY (configuration hash), the weights
    (SPRAM boards), the program, the scratch constants, then for each of
    ``len(prompt_ids) + n_new - 1`` steps the token id, RUN, the logits from OUT; after
    the prompt each result is fed back.

    Parameters
    ----------
    cm : ternac.lower.CompiledLM
    prompt_ids : list of int
    n_new : int, tokens to generate (>= 1)
    board : "icebreaker" or "ulx3s"
    build_dir : root of the Verilator builds (default sim.runner's)
    progress : print the build, the weight loading and every token on stderr

    Returns
    -------
    dict with ``tokens`` (prompt + new ids), ``logits`` (a list of ints a step),
    ``results`` and ``cycles`` (a step each; cycles by the RTL's counter), ``link`` (bytes
    each way, simulated seconds), ``wall_s`` (measured, the build included).

    Raises
    ------
    ValueError for an unknown board, an empty prompt or n_new < 1;
    sim.runner.BenchFailed if the bench fails (a link error, a weight read back wrong).
    """
    from ternac.session import lm_session_inputs
    p = lm_session_inputs(cm, prompt_ids, n_new, board)
    steps = len(prompt_ids) + n_new - 1
    return _run_session("board_lm", p, cm.cfg, cm.program_words, cm.weight_words,
                        board=board, build_dir=build_dir, progress=progress,
                        what=f"and {sum(len(v) for v in cm.scratch_constants.values())} "
                             f"scratch words, then {steps} token steps")


# -- the cocotb side ---------------------------------------------------------------------

class _CountingTransport:
    """Wraps a transport and counts bytes each way."""

    def __init__(self, inner):
        self.inner, self.sent, self.received = inner, 0, 0
        self.is_async = inner.is_async

    async def write(self, data):
        self.sent += len(data)
        await self.inner.write(data)

    async def read(self, n, long=False):
        data = await self.inner.read(n, long)
        self.received += len(data)
        return data

    async def drain(self):
        await self.inner.drain()


async def _start(dut, word_bits: int, config: dict | None = None):
    """Clock, the host's UART on the pins, reset: returns (driver, counting transport).
    ``config``: the build's AccelConfig as a dict (the session inputs' "config"): the driver
    then checks programs and address limits against it, as on the board."""
    from ternac.config import AccelConfig
    from ternac.hostdriver import CosimTransport, HostDriver

    Clock(dut.clk, CLK_NS, unit="ns").start()
    baud = round(1e9 / (CLK_NS * COSIM_DIVISOR))
    # The transport idles the RX line high before reset ends, like a real host's UART.
    link = _CountingTransport(CosimTransport(
        dut.uart_rx, dut.uart_tx, baud, byte_timeout_ns=200 * 10 * COSIM_DIVISOR * CLK_NS,
        run_timeout_ns=100_000_000,
        # before a retry: the device's partial-frame timeout (64 byte times), the longest
        # response (262 bytes, whose lost start leaves the rest on the line) and an answer
        # to a false frame (6 bytes)
        resync_ns=(64 + 6 + 4 * 64 + 6) * 10 * COSIM_DIVISOR * CLK_NS))
    drv = HostDriver(link, word_bits=word_bits,
                     cfg=AccelConfig(**config) if config is not None else None)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    return drv, link


async def _session(dut, session):
    """Run a ternac.session generator function over the UART of the simulated board with
    the bench's inputs; hand back its result with the link's byte counts."""
    from cocotb.utils import get_sim_time

    from streams import bench_inputs, bench_output

    p = bench_inputs()
    drv, link = await _start(dut, p["word_bits"], p.get("config"))
    say = None
    if p.get("progress_file"):
        def say(msg):
            with open(p["progress_file"], "a") as f:
                f.write(f"{msg} ({get_sim_time('ns') * 1e-6:.1f} ms simulated)\n")
    out = await drv.run_session(session(p, say))
    out["link"] = {"bytes_to_device": link.sent, "bytes_from_device": link.received,
                   "sim_seconds": get_sim_time("ns") * 1e-9}
    bench_output(out)


@cocotb.test()
async def board_lm(dut):
    """The LM session (ternac.session.lm_session) over the UART: see run_lm_cosim."""
    from ternac.session import lm_session
    await _session(dut, lm_session)


@cocotb.test()
async def board_digits(dut):
    """The digits session (ternac.session.digits_session) over the UART: see
    run_digits_cosim."""
    from ternac.session import digits_session
    await _session(dut, digits_session)


@cocotb.test()
async def spram_banks(dut):
    """hw.spram.SPRAMWeightMemory on the SB_SPRAM256KA model: words written across every
    bank and column read back with one cycle of latency."""
    import random

    from cocotb.triggers import ReadOnly, RisingEdge, Timer

    from streams import bench_inputs, bench_output
    p = bench_inputs()
    Clock(dut.clk, CLK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.wen.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    rng = random.Random(p.get("seed", 1))
    depth, bits = p["depth"], p["word_bits"]
    addrs = rng.sample(range(depth), 64) + [0, depth - 1, 16383 % depth, 16384 % depth]
    words = {a: rng.getrandbits(bits) for a in addrs}
    for a, w in words.items():
        dut.waddr.value, dut.wdata.value, dut.wen.value = a, w, (1 << -(-bits // 32)) - 1
        await RisingEdge(dut.clk)
    slices = -(-bits // 32)
    if slices > 1:        # one 32-bit slice of a word at a time (wen bit s: bits 32s..32s+31)
        for a in rng.sample(addrs, 32):
            s, v = rng.randrange(slices), rng.getrandbits(bits)
            dut.waddr.value, dut.wdata.value, dut.wen.value = a, v, 1 << s
            await RisingEdge(dut.clk)
            mask = ((1 << 32) - 1) << (32 * s)
            words[a] = (words[a] & ~mask) | (v & mask)
    dut.wen.value = 0
    bad = 0
    for a, w in words.items():
        dut.raddr.value = a
        await RisingEdge(dut.clk)       # the address is taken here ...
        await ReadOnly()                # ... and its word is out right after
        bad += int(dut.rdata.value) != w
        await Timer(1, "ns")
    bench_output({"checked": len(words), "bad": bad})
