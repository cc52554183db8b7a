"""Fuzzing the RTL host-link receiver (hw/hostlink.py ``Hostlink``) in co-simulation against
its Python model (tests/test_fuzz.py ``DeviceModel``: ternac.protocol's FrameReceiver and
check_request, and the bench accelerator's memories), byte for byte.

Hypothesis generates the examples (the ``streams`` strategy of tests/test_fuzz.py: good,
mutated and oversized frames, noise, stray sync bytes, timeouts), derandomized, so every run
feeds the same ones; one Verilator simulation then runs them all, back to back without a
reset (sim/fuzz_hostlink_cocotb.py), each followed by a gap and a STATUS request, so the
receiver must be back at idle after any byte sequence and its STATUS (runs, cycles, flags,
rejected-frame count) must agree with the model's. Every response byte the RTL sends is
compared with the model's, and at the end every memory word (READ_MEM of each space).
Between bytes the source pauses and the sink drops ready at random (seeded; the four
idle/backpressure modes rotate across examples), and the bench checks the tx stream's
contract.

Why not hypothesis inside cocotb: a simulator start costs about a second and a hypothesis
test wants to run (and shrink) one example at a time, in the pytest process; here
hypothesis only generates (a collecting ``@given`` with no assertion), and the simulator runs
thousands of examples a second. A failure names the first differing example (its index, its
bytes, the model's and the RTL's responses); that example is then added to
``REGRESSIONS``, which runs first in every run.
"""
from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from hypothesis import given, settings
from hypothesis import strategies as st

from test_fuzz import (CONFIG_HASH, COUNTS, FUZZ_MAX_WORDS, LIMITS, PROFILE, RUN_CYCLES, DeviceModel,
                       split_responses, streams)
from ternac.protocol import SYNC_REQUEST, Command, encode_frame

TIMEOUT_CYCLES = 24
GAP_CYCLES = TIMEOUT_CYCLES + 4
SEED = 12
MODES = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3), (0.3, 0.3)]   # (idle, backpressure)

#: Examples that found RTL or model bugs (each a list of ops: bytes or None for a gap).
REGRESSIONS: list[list] = [
    [bytes([SYNC_REQUEST])],
    [bytes([SYNC_REQUEST, Command.WRITE_MEM, 0xFF, 0xFF]), None],
]


def BenchAccelerator():
    """The accelerator's host port as the model sees it: the stub of sim/faults.py with
    four 32-bit memories of LIMITS words (SCRATCH read back as stored, not sign-extended)
    and a run of RUN_CYCLES cycles whose result counts the runs."""
    from ternac.sim.faults import StubAccelerator
    return StubAccelerator(limits=LIMITS, run_cycles=RUN_CYCLES, slow_run_cycles=RUN_CYCLES,
                           signed_scratch=False)


class HostlinkFuzzBench(wiring.Component):
    """Byte streams -> Hostlink -> BenchAccelerator (no UART)."""

    def __init__(self):
        from amaranth.lib import stream
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8))})

    def elaborate(self, platform):
        from ternac.hw.hostlink import Hostlink, connect_accelerator
        m = Module()
        m.submodules.link = link = Hostlink(limits=LIMITS, config_hash=CONFIG_HASH,
                                            timeout_cycles=TIMEOUT_CYCLES,
                                            max_words=FUZZ_MAX_WORDS)
        m.submodules.accel = accel = BenchAccelerator()
        connect_accelerator(m, link.host, accel)
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        m.d.comb += [link.rx_overrun.eq(0), link.rx_framing_error.eq(0)]
        return m


def collect_examples(n: int) -> list[list]:
    """``n`` byte streams from the hypothesis strategy, derandomized (the same every run)."""
    out = []

    @settings(settings.get_profile(PROFILE), max_examples=n)
    @given(ops=streams(max_ops=6))
    def collect(ops):
        out.append([op[1] if op[0] == "bytes" else None for op in ops])

    collect()
    return out[:n]


def _final_dump() -> list:
    """READ_MEM of every word of every space (at most FUZZ_MAX_WORDS a frame)."""
    ops = [None]
    for space, n in LIMITS.items():
        for a in range(0, n, FUZZ_MAX_WORDS):
            c = min(FUZZ_MAX_WORDS, n - a)
            ops.append(encode_frame(Command.READ_MEM, bytes([space]) + a.to_bytes(4, "little")
                                    + c.to_bytes(2, "little")))
    return ops


def run_rtl(examples: list[list], seed: int = SEED) -> dict:
    from ternac.sim.runner import build, run_bench
    runner, bdir = build(HostlinkFuzzBench(), "hostlink_fuzz")
    payload = []
    for i, ops in enumerate(examples):
        idle, bp = MODES[i % len(MODES)]
        payload.append({"ops": [None if op is None else op.hex() for op in ops],
                        "idle": idle, "bp": bp})
    return run_bench(runner, bdir, "hostlink_fuzz", "fuzz_hostlink_cocotb",
                     inputs={"examples": payload, "seed": seed, "gap_cycles": GAP_CYCLES})


def with_trailer(examples: list[list]) -> list[list]:
    """Each example, then a gap and a STATUS request (the receiver must be back at idle);
    at the end a READ_MEM of every memory word."""
    out = [list(ops) + [None, encode_frame(Command.STATUS)] for ops in examples]
    out.append(_final_dump())
    return out


def model_responses(examples: list[list]) -> list[bytes]:
    dev = DeviceModel()
    out = []
    for ops in examples:
        got = b""
        for op in ops:
            if op is None:
                dev.gap()
            else:
                got += dev.feed(op)
        out.append(got)
    return out


def compare(examples: list[list], expected: list[bytes], rtl: bytes) -> None:
    """Assert the RTL's response bytes equal the model's; name the first differing example."""
    pos = 0
    for i, (ops, want) in enumerate(zip(examples, expected)):
        got = rtl[pos:pos + len(want)]
        if got != want:
            sent = " | ".join("gap" if op is None else op.hex() for op in ops)
            raise AssertionError(
                f"example {i} of {len(examples)}: sent {sent}\n"
                f"model: {[(c, p.hex()) for c, p in split_responses(want)]}\n"
                f"RTL:   {rtl[pos:pos + len(want) + 16].hex()}")
        pos += len(want)
    assert pos == len(rtl), f"the RTL sent {len(rtl) - pos} bytes more: {rtl[pos:pos + 32].hex()}"


def test_model_of_the_trailer():
    """The trailer itself: a STATUS after a gap is acknowledged with 10 bytes."""
    examples = with_trailer([[bytes([SYNC_REQUEST, 1])]])
    resp = model_responses(examples)
    (code, payload), = split_responses(resp[0])
    assert code == 0 and payload[8] & 0x10      # the timeout of the partial frame is flagged


def test_hostlink_rtl_agrees_with_model():
    """REGRESSIONS, then the hypothesis examples, through one simulation of the RTL."""
    n = COUNTS["rtl"]
    examples = REGRESSIONS + collect_examples(n)
    full = with_trailer(examples)
    expected = model_responses(full)
    print(f"hostlink RTL fuzz: {len(examples)} examples (profile {PROFILE}, derandomized "
          f"hypothesis; stall seed {SEED})")
    out = run_rtl(full)
    assert not out["violations"], out["violations"]
    compare(full, expected, bytes.fromhex(out["tx"]))
    print(f"hostlink RTL fuzz: {len(examples)} examples, {out['cycles']} cycles, all equal")
