"""Co-simulation of a board: the board core (UART host link + Accelerator, with the board's
memory mapping) in Verilator, driven through its UART pins by the same host driver that
talks to a real board (``ternac.hostdriver.HostDriver`` over cocotbext-uart).

:func:`run_digits_cosim` loads the weights and the program over the link, then for every
input writes it, RUNs, and reads the logits back, exactly as ``--backend board`` does on a
real board; so ``ternac run digits --backend cosim`` exercises the UART, the frame parser,
the host port and (iCEBreaker) the SPRAM weight memory, and must match golden.

:func:`run_lm_cosim` does the same for the language model (``ternac generate --backend
cosim``): the session (identify, weights, program, scratch constants, then per token: the
token id, RUN, the logits) is :func:`ternac.boards_cli.lm_session`, the very code that
``--backend board`` runs over pyserial.

This file is also the cocotb test module (``board_digits``, ``board_lm``) that runs inside
the simulator.

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

__all__ = ["COSIM_BOARDS", "COSIM_DIVISOR", "build_board_cosim", "run_digits_cosim",
           "run_cosim", "run_lm_cosim"]

CLK_NS = 10
COSIM_DIVISOR = 4
#: How each board maps the weight memory (the rest is EBR on both).
COSIM_BOARDS = {"icebreaker": "spram", "ulx3s": "ebr"}


def _core(cfg, program_words, weight_words, board):
    from ternac.boards.core import BoardCore, board_config_hash
    from ternac.hw.spram import SPRAMWeightMemory
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


def run_cosim(cfg, program_words, weight_words, inputs, input_addr: int, logits_addr: int,
              n_logits: int, *, board: str = "icebreaker", build_dir=None,
              progress: bool = True) -> dict:
    """Run ``inputs`` through the co-simulated board over its UART.

    Weights go over the link when the board keeps them in SPRAM (always loaded, then the
    first words read back and compared); the program is loaded over the link too (it is
    also baked into the bitstream's EBR; loading it checks the PROG path).

    Returns
    -------
    dict with ``logits`` (list of lists of int), ``results`` (ARGMAX index per input),
    ``cycles`` (RTL cycles start to done per input), and ``link`` (bytes each way and
    simulated seconds, measured).

    Raises
    ------
    sim.runner.BenchFailed if the bench fails (a link error, a mismatch in the read-back).
    """
    from ternac.sim.runner import run_bench
    t0 = time.time()
    runner, bdir, name, chash, spram = build_board_cosim(
        cfg, program_words, weight_words, board=board, build_dir=build_dir, progress=progress)
    inputs = [list(map(int, x)) for x in inputs]
    if progress:
        what = f"{len(weight_words)} weight words + " if spram else ""
        print(f"[cosim] {board}: loading {what}{len(program_words)} instructions over the "
              f"simulated UART, then {len(inputs)} inputs ...", file=sys.stderr, flush=True)
    out = run_bench(runner, bdir, name, "board_cosim", testcase="board_digits", inputs={
        "config_hash": chash, "word_bits": cfg.word_bits, "load_weights": spram,
        "weights": [int(w) for w in weight_words], "program": [int(w) for w in program_words],
        "inputs": inputs, "input_addr": input_addr, "logits_addr": logits_addr,
        "n_logits": n_logits})
    if progress:
        print(f"[cosim] done in {time.time() - t0:.0f} s wall, "
              f"{out['link']['sim_seconds'] * 1e3:.1f} ms simulated", file=sys.stderr, flush=True)
    return out


def run_digits_cosim(compiled, inputs, *, board: str = "icebreaker", build_dir=None,
                     progress: bool = True):
    """``ternac run digits --backend cosim``: a :class:`ternac.compiler.Compiled` model and
    its int8 input vectors through the co-simulated ``board``.

    Returns
    -------
    (logits, results, cycles): lists per input, as ``ternac.cli._run_verilator``.

    Raises
    ------
    sim.runner.BenchFailed if the bench fails.
    """
    res = run_cosim(compiled.cfg, compiled.program_words, compiled.weight_words, inputs,
                    compiled.input_addr, compiled.logits_addr, compiled.n_logits, board=board,
                    build_dir=build_dir, progress=progress)
    return ([[int(v) for v in row] for row in res["logits"]], [int(r) for r in res["results"]],
            [int(c) for c in res["cycles"]])


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


def run_lm_cosim(cm, prompt_ids, n_new: int, *, board: str = "icebreaker", build_dir=None,
                 progress: bool = True) -> dict:
    """Generate with a compiled LM on the co-simulated ``board`` over its UART.

    The board core (UART host link + Accelerator; iCEBreaker: the weights in four
    SB_SPRAM256KA models) runs in Verilator; inside the cocotb bench the host driver
    (:class:`ternac.hostdriver.HostDriver` over cocotbext-uart) runs
    :func:`ternac.boards_cli.lm_session`: IDENTIFY (configuration hash), the weights
    (SPRAM boards), the program, the scratch constants, then for each of
    ``len(prompt_ids) + n_new - 1`` steps the token id, RUN, the logits from OUT; after
    the prompt each result is fed back.

    Parameters
    ----------
    cm : ternac.compile_lm.CompiledLM
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
    from ternac.sim.runner import run_bench
    from ternac.boards_cli import lm_session_inputs
    t0 = time.time()
    p = lm_session_inputs(cm, prompt_ids, n_new, board)
    runner, bdir, name, chash, spram = build_board_cosim(
        cm.cfg, cm.program_words, cm.weight_words, board=board, build_dir=build_dir,
        progress=progress)
    assert chash == p["config_hash"] and spram == p["load_weights"]
    steps = len(prompt_ids) + n_new - 1
    stop, thread = threading.Event(), None
    if progress:
        what = f"{len(cm.weight_words)} weight words, " if spram else ""
        print(f"[cosim] {board}: loading {what}{len(cm.program_words)} instructions and "
              f"{sum(len(v) for v in cm.scratch_constants.values())} scratch words over the "
              f"simulated UART (clock/{COSIM_DIVISOR}), then {steps} token steps ...",
              file=sys.stderr, flush=True)
        p["progress_file"] = str(pathlib.Path(bdir) / f"progress-{os.getpid()}-{time.time_ns()}.txt")
        thread = threading.Thread(target=_echo_progress,
                                  args=(pathlib.Path(p["progress_file"]), stop, t0), daemon=True)
        thread.start()
    try:
        out = run_bench(runner, bdir, name, "board_cosim", testcase="board_lm", inputs=p)
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


async def _start(dut, word_bits: int):
    """Clock, the host's UART on the pins, reset: returns (driver, counting transport)."""
    from ternac.hostdriver import CosimTransport, HostDriver

    Clock(dut.clk, CLK_NS, unit="ns").start()
    baud = round(1e9 / (CLK_NS * COSIM_DIVISOR))
    # The transport idles the RX line high before reset ends, like a real host's UART.
    link = _CountingTransport(CosimTransport(
        dut.uart_rx, dut.uart_tx, baud, byte_timeout_ns=200 * 10 * COSIM_DIVISOR * CLK_NS,
        run_timeout_ns=100_000_000, resync_ns=2 * 64 * 10 * COSIM_DIVISOR * CLK_NS))
    drv = HostDriver(link, word_bits=word_bits)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    return drv, link


@cocotb.test()
async def board_lm(dut):
    """The LM session (ternac.boards_cli.lm_session) over the UART: see run_lm_cosim."""
    from cocotb.utils import get_sim_time

    from streams import bench_inputs, bench_output
    from ternac.boards_cli import drive_async, lm_session

    p = bench_inputs()
    drv, link = await _start(dut, p["word_bits"])
    say = None
    if p.get("progress_file"):
        def say(msg):
            with open(p["progress_file"], "a") as f:
                f.write(f"{msg} ({get_sim_time('ns') * 1e-6:.1f} ms simulated)\n")
    out = await drive_async(drv, lm_session(p, say))
    out["link"] = {"bytes_to_device": link.sent, "bytes_from_device": link.received,
                   "sim_seconds": get_sim_time("ns") * 1e-9}
    bench_output(out)


@cocotb.test()
async def board_digits(dut):
    """Load weights and program over the UART, then run every input (see run_cosim)."""
    from cocotb.utils import get_sim_time

    from streams import bench_inputs, bench_output
    from ternac.hostdriver import Space, WORD_STRIDE

    p = bench_inputs()
    drv, link = await _start(dut, p["word_bits"])

    await drv.check_identity(p["config_hash"])
    if p["load_weights"]:
        await drv.load_weights(p["weights"])
        n = min(8, len(p["weights"]))
        per = -(-p["word_bits"] // 32)
        back = await drv.read_mem(Space.WEIGHTS, 0, WORD_STRIDE * n)
        for i in range(n):
            word = sum(back[WORD_STRIDE * i + s] << (32 * s) for s in range(per))
            assert word == p["weights"][i], f"weight word {i} read back {word:#x}"
    await drv.load_program(p["program"])

    logits, results, cycles = [], [], []
    for x in p["inputs"]:
        await drv.write_scratch(p["input_addr"], x)
        res, cyc = await drv.run()
        logits.append(await drv.read_out(p["logits_addr"], p["n_logits"]))
        results.append(res)
        cycles.append(cyc)
    st = await drv.status()
    assert st.rejected == 0 and not st.flags & 0x3C, f"link errors: {st}"
    bench_output({"logits": logits, "results": results, "cycles": cycles,
                  "link": {"bytes_to_device": link.sent, "bytes_from_device": link.received,
                           "sim_seconds": get_sim_time("ns") * 1e-9}})


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
        dut.waddr.value, dut.wdata.value, dut.wen.value = a, w, 1
        await RisingEdge(dut.clk)
    dut.wen.value = 0
    bad = 0
    for a, w in words.items():
        dut.raddr.value = a
        await RisingEdge(dut.clk)       # the address is taken here ...
        await ReadOnly()                # ... and its word is out right after
        bad += int(dut.rdata.value) != w
        await Timer(1, "ns")
    bench_output({"checked": len(words), "bad": bad})
