"""Co-simulation of a board: the board core (UART host link + Accelerator, with the board's
memory mapping) in Verilator, driven through its UART pins by the same host driver that
talks to a real board (``ternac.hostdriver.HostDriver`` over cocotbext-uart).

:func:`run_digits_cosim` loads the weights and the program over the link, then for every
input writes it, RUNs, and reads the logits back, exactly as ``--backend board`` does on a
real board; so ``ternac run digits --backend cosim`` exercises the UART, the frame parser,
the host port and (iCEBreaker) the SPRAM weight memory, and must match golden.

This file is also the cocotb test module (``board_digits``) that runs inside the simulator.
The simulated clock is 100 MHz and the UART runs at clock / 8 (12.5 Mbaud) to keep the
simulation short; the board builds use the same RTL at 115200 baud.
"""
from __future__ import annotations

import pathlib
import sys
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

__all__ = ["COSIM_BOARDS", "COSIM_DIVISOR", "build_board_cosim", "run_digits_cosim",
           "run_cosim"]

CLK_NS = 10
COSIM_DIVISOR = 8
#: How each board maps the weight memory (the rest is EBR on both).
COSIM_BOARDS = {"icebreaker": "spram", "ulx3s": "ebr"}


def _core(cfg, program_words, weight_words, board):
    from boards.core import BoardCore, board_config_hash
    from hw.spram import SPRAMWeightMemory
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
    from hw.spram import spram_sim_source
    from sim.runner import DEFAULT_BUILD, build
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
    from sim.runner import run_bench
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


@cocotb.test()
async def board_digits(dut):
    """Load weights and program over the UART, then run every input (see run_cosim)."""
    from cocotb.utils import get_sim_time

    from streams import bench_inputs, bench_output
    from ternac.hostdriver import CosimTransport, HostDriver, Space, WORD_STRIDE

    p = bench_inputs()
    Clock(dut.clk, CLK_NS, unit="ns").start()
    baud = round(1e9 / (CLK_NS * COSIM_DIVISOR))
    # The transport idles the RX line high before reset ends, like a real host's UART.
    link = _CountingTransport(CosimTransport(
        dut.uart_rx, dut.uart_tx, baud, byte_timeout_ns=200 * 10 * COSIM_DIVISOR * CLK_NS,
        run_timeout_ns=100_000_000, resync_ns=2 * 64 * 10 * COSIM_DIVISOR * CLK_NS))
    drv = HostDriver(link, word_bits=p["word_bits"])
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

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
