"""WEIGHTS host writes go into the word slice by slice (hw/top.py, the weight memory's
per-slice ``wen``; hw/memory.py WeightMemory, hw/spram.py): no staging register. The
Accelerator (Amaranth's simulator) takes random 32-bit slice writes in a random order,
some words written in part and rewritten, and every slice read back over the host port
equals a model in which a slice write changes only its 32 bits; 16-, 48- (a column that
straddles two slices) and 64-bit words, and 64-bit words in 2-bit columns (the ULX3S's
shape)."""
import random

import pytest

from ternac.config import AccelConfig, HostSpace
from ternac.hw.memory import WeightMemory, write_slices

SEED = 20261206


@pytest.mark.parametrize("lanes, column_bits", [(8, None), (24, None), (32, None), (32, 2)])
def test_weight_slices_written_as_they_come(lanes, column_bits):
    from amaranth.sim import Simulator
    from ternac.hw.top import Accelerator
    cfg = AccelConfig(lanes=lanes, weight_depth=16, scratch_depth=16, out_depth=4,
                      prog_depth=4, max_fan_in=16)
    bits, slices = cfg.word_bits, write_slices(cfg.word_bits)
    assert slices == -(-bits // 32)
    seed = SEED + lanes + (column_bits or 0)
    rng = random.Random(seed)
    print("seed", seed)
    init = [rng.getrandbits(bits) for _ in range(cfg.weight_depth)]
    wmem = WeightMemory(word_bits=bits, depth=cfg.weight_depth, init=init,
                        column_bits=column_bits)
    top = Accelerator(cfg, weight_memory=wmem)
    model = list(init)
    writes = [(rng.randrange(cfg.weight_depth), rng.randrange(slices), rng.getrandbits(32))
              for _ in range(40)]
    got = []

    async def bench(ctx):
        ctx.set(top.host_space, HostSpace.WEIGHTS)
        for w, s, v in writes:
            ctx.set(top.host_addr, 4 * w + s)
            ctx.set(top.host_wdata, v)
            ctx.set(top.host_we, 1)
            await ctx.tick()
            mask = ((1 << 32) - 1) << (32 * s)
            model[w] = (model[w] & ~mask | (v << (32 * s)) & mask) & ((1 << bits) - 1)
        ctx.set(top.host_we, 0)
        for w in range(cfg.weight_depth):
            for s in range(slices):
                ctx.set(top.host_addr, 4 * w + s)
                ctx.set(top.host_re, 1)
                await ctx.tick()
                ctx.set(top.host_re, 0)
                got.append((w, s, ctx.get(top.host_rdata) & 0xFFFFFFFF))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = [(w, s, (model[w] >> (32 * s)) & 0xFFFFFFFF)
            for w in range(cfg.weight_depth) for s in range(slices)]
    bad = [(g, x) for g, x in zip(got, want) if g != x]
    assert len(got) == len(want) and not bad, f"{len(bad)} slices wrong, first {bad[:3]}"
    assert model != init
