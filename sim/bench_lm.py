"""cocotb bench of the Accelerator running a language model token by token: write the
scratch constants once, then for each step write the token id, run the per-token program,
read the logits and the result (the next token: ARGMAX or SAMPLE). Prompt tokens are fed
as given; after the prompt each result is fed back, as a generating host would."""
import cocotb

from bench_top import OUT, SCRATCH, TopTB
from streams import bench_inputs, bench_output, bench_progress


@cocotb.test()
async def generate(dut):
    cfg = bench_inputs()
    tb = TopTB(dut, cfg.get("poll_cycles"), cfg.get("internal"))
    await tb.reset()
    for addr, values in cfg["constants"]:
        await tb.write(SCRATCH, addr, values)
    tokens = list(cfg["prompt"])
    logits, results, cycles = [], [], []
    steps = len(tokens) + cfg["n_new"] - 1
    for t in range(steps):
        await tb.write(SCRATCH, cfg["token_addr"], [tokens[t]])
        cyc, res, err = await tb.run(cfg.get("timeout_cycles", 5_000_000))
        assert not err, "the sequencer halted on an unknown opcode"
        if cfg.get("n_logits"):
            if cfg.get("logits_in_scratch"):
                logits.append(await tb.read(SCRATCH, cfg["logits_addr"], cfg["n_logits"]))
            else:
                logits.append(await tb.read(OUT, cfg["logits_addr"], cfg["n_logits"]))
        results.append(res)
        cycles.append(cyc)
        if t + 1 >= len(tokens):
            tokens.append(res)
        dut._log.info(f"step {t}: token {tokens[t]} -> {res} ({cyc} cycles)")
        bench_progress({"step": t, "token": tokens[t], "result": res, "cycles": cyc})
    bench_output({"tokens": tokens, "logits": logits, "results": results, "cycles": cycles,
                  **tb.speed(), **tb.streams()})
