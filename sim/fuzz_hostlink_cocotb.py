"""cocotb bench of the host link's frame parser (hw/hostlink.py ``Hostlink``) for fuzzing:
its byte streams driven directly (no UART bit timing), many examples in one simulation
(tests/test_fuzz_rtl.py generates them and compares the output with its Python model).

Inputs (TERNAC_BENCH_IN): ``examples``, a list of ``{"ops": [...], "idle": p, "bp": p}``;
an op is ``"hex bytes"`` (sent in order, one transfer a byte) or ``null`` (a gap: ``rx.valid``
low for ``gap_cycles``, longer than the inter-byte timeout); before each byte the source
pauses (valid low) for 1 to 3 cycles with probability ``idle``, and the sink drops
``tx.ready`` with probability ``bp`` in each cycle; ``seed`` seeds those choices. No reset
between examples: the parser must come back to idle by itself.

Output (TERNAC_BENCH_OUT): ``tx``, every byte the link sent, in hex; ``cycles``; the
stream-contract violations on ``tx`` (valid dropped or payload changed while stalled).
"""
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from streams import bench_inputs, bench_output, start_clock


@cocotb.test()
async def fuzz_stream(dut):
    p = bench_inputs()
    start_clock(dut)
    clk = dut.clk
    rng = random.Random(int(p["seed"]))
    gap_cycles = int(p["gap_cycles"])
    rx_valid, rx_payload, rx_ready = dut.rx__valid, dut.rx__payload, dut.rx__ready
    tx_valid, tx_payload, tx_ready = dut.tx__valid, dut.tx__payload, dut.tx__ready
    rx_valid.value = 0
    tx_ready.value = 0
    dut.rst.value = 1
    await ClockCycles(clk, 3)
    dut.rst.value = 0
    await ClockCycles(clk, 2)

    tx = bytearray()
    violations = []
    cycles = 0
    held = None             # (payload) of a tx beat offered and not taken
    for ex in p["examples"]:
        idle_p, bp_p = float(ex["idle"]), float(ex["bp"])
        for op in ex["ops"]:
            if op is None:      # a gap: no byte offered for gap_cycles
                rx_valid.value = 0
                todo = [None] * gap_cycles
            else:
                todo = list(bytes.fromhex(op))
            for item in todo:
                pause = rng.randint(1, 3) if (item is not None and rng.random() < idle_p) else 0
                offered = False
                while True:
                    if item is None or pause:
                        rx_valid.value = 0
                    elif not offered:
                        rx_valid.value = 1
                        rx_payload.value = item
                        offered = True
                    r = 0 if rng.random() < bp_p else 1
                    tx_ready.value = r
                    await RisingEdge(clk)
                    cycles += 1
                    if int(tx_valid.value):
                        b = int(tx_payload.value)
                        if held is not None and held != b:
                            violations.append(f"cycle {cycles}: tx payload changed while stalled")
                        if r:
                            tx.append(b)
                            held = None
                        else:
                            held = b
                    elif held is not None:
                        violations.append(f"cycle {cycles}: tx valid dropped while stalled")
                        held = None
                    if item is None or pause:
                        if pause:
                            pause -= 1
                            continue
                        break
                    if offered and int(rx_ready.value):
                        rx_valid.value = 0
                        break
    # drain: run until the link has been silent for a while
    rx_valid.value = 0
    quiet = 0
    while quiet < 4 * gap_cycles:
        tx_ready.value = 1
        await RisingEdge(clk)
        cycles += 1
        if int(tx_valid.value):
            tx.append(int(tx_payload.value))
            quiet = 0
        else:
            quiet += 1
    bench_output({"tx": tx.hex(), "cycles": cycles, "violations": violations[:10]})
