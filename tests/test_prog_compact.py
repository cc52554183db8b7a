"""A program memory that stores only the instruction bits its build can use
(AccelConfig.prog_compact, prog_stored, prog_refusal; hw/top.py): the LM's 112 of 128 bits
(at most 112) in 7 iCE40 blocks; one rule refuses, in one sentence, a program that sets a
bit the build drops, in the compiler (check_program), the host driver (load_program, before
anything is sent) and the RTL's constructor; the RTL (Amaranth's simulator) writes a program
through the host port's 32-bit slices, reads every slice back (the dropped bits as 0) and
runs it to the interpreter's results on every word."""
import dataclasses
import random

import pytest

from ternac.boards.resources import memories
from ternac.config import LM_CONFIG, LM_OPS, VIT_CONFIG, AccelConfig, HostSpace
from ternac.errors import CompileError, InputError
from ternac.golden.interpreter import run_program
from ternac.golden.isa import FIELDS, INSTR_BITS, Flag, Instr, Op, encode, encode_program
from ternac.golden.packing import tile_lanes
from ternac.lower import check_program

SEED = 20261205

SMALL = AccelConfig(lanes=4, weight_depth=64, scratch_depth=96, out_depth=8, out_bits=16,
                    prog_depth=16, max_fan_in=16, vector=("activation", "norm", "eltwise"),
                    max_vector=64, ops=LM_OPS, prog_compact=True)


def _lo(name):
    lo = 0
    for n, w in FIELDS:
        if n == name:
            return lo
        lo += w
    raise KeyError(name)


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.count(". ") == 0, msg


def test_lm_stores_112_bits_in_7_blocks():
    kept = {n: b for _, b, n in LM_CONFIG.prog_stored}
    want = {n: {"wbase": 16, "k": 9}.get(n, w) for n, w in FIELDS if n not in ("rsel", "chain")}
    assert kept == want
    assert LM_CONFIG.prog_word_bits == sum(want.values()) <= 112
    assert memories(LM_CONFIG, "icebreaker")["prog"]["EBR"] == 7
    # Without prog_compact (the ViT: REPEAT needs rsel) every bit is kept: 8 blocks.
    assert not VIT_CONFIG.prog_compact and VIT_CONFIG.prog_word_bits == INSTR_BITS
    assert memories(VIT_CONFIG, "icebreaker")["prog"]["EBR"] == 8
    assert AccelConfig().prog_stored_mask == (1 << INSTR_BITS) - 1
    with pytest.raises(ValueError, match="prog_compact must be True or False"):
        AccelConfig(prog_compact=1)


@pytest.mark.parametrize("field, bit", [("wbase", 16), ("wbase", 19), ("k", 9), ("k", 11),
                                        ("rsel", 0), ("rsel", 7), ("chain", 0)])
def test_a_dropped_bit_is_refused_everywhere(field, bit):
    word = encode(Instr(Op.HALT)) | (1 << (_lo(field) + bit))
    why = LM_CONFIG.prog_refusal([encode(Instr(Op.HALT)), word])
    assert why.startswith(f"instruction 1 sets bit {bit} of its {field} field"), why
    _one_sentence(why)
    # A stored bit is not refused: the field's top kept bit, and every bit of m.
    kept = {n: b for _, b, n in LM_CONFIG.prog_stored}
    ok = encode(Instr(Op.HALT)) | (((1 << 16) - 1) << _lo("m"))
    if field in kept:
        ok |= 1 << (_lo(field) + kept[field] - 1)
    assert LM_CONFIG.prog_refusal([ok]) is None
    # The host driver: before anything is sent.
    from ternac.hostdriver import HostDriver
    sent = []

    class Transport:
        is_async = False

        def write(self, data):
            sent.append(data)

        def read(self, n, long=False):
            raise AssertionError("nothing should be read")

        def drain(self):
            pass

    drv = HostDriver(Transport(), cfg=LM_CONFIG)
    with pytest.raises(InputError, match=f"sets bit {bit} of its {field} field") as e:
        drv.load_program([word])
    _one_sentence(str(e.value))
    assert not sent
    # The RTL's constructor.
    from ternac.hw.top import Accelerator
    with pytest.raises(ValueError, match=f"of its {field} field"):
        Accelerator(LM_CONFIG, program_words=[word])


def test_compiler_refuses_what_the_build_drops():
    prog = [Instr(Op.ADD, src=0, aux=8, dst=16, n=4, m=1, wbase=1), Instr(Op.HALT, k=128)]
    with pytest.raises(CompileError, match="instruction 1 sets bit 7 of its k field") as e:
        check_program(prog, SMALL)
    _one_sentence(str(e.value))
    check_program(prog, dataclasses.replace(SMALL, prog_compact=False))
    check_program(prog[:1] + [Instr(Op.HALT)], SMALL)


def test_rtl_host_writes_slices_reads_back_and_runs():
    """A compact program memory (SMALL: 16 of wbase's bits, 7 of k's, no rsel or chain)
    loaded over the host port in 32-bit
    slices, in a random order, one word with dropped bits set as well (they read back as
    0); every slice read back; then the program runs to the interpreter's scratch, out and
    result words. Fails with a stored bit placed in the wrong slice or position."""
    from amaranth.sim import Simulator
    from ternac.hw.top import Accelerator
    rng = random.Random(SEED)
    print("seed", SEED)
    assert {n: b for _, b, n in SMALL.prog_stored}["k"] == 7
    n, k = 8, 8
    ts = [[[rng.choice((-1, 0, 1)) for _ in range(k)] for _ in range(n)] for _ in range(2)]
    import torch
    w1, w2 = (list(tile_lanes(torch.tensor(t), SMALL.lanes)) for t in ts)
    words = w1 + w2
    prog = [
        Instr(Op.MATVEC, src=0, dst=8, n=n, k=k, wbase=0, m=40000, s=16),
        Instr(Op.SILU, flags=int(Flag.OUT8), src=8, dst=16, n=n, m=30000, s=20,
              wbase=45000, k=13),
        Instr(Op.ADD, flags=int(Flag.OUT8), src=16, aux=0, dst=24, n=n, m=1, wbase=1),
        Instr(Op.MATVEC, flags=int(Flag.RAW), src=24, dst=0, n=n, k=k, wbase=len(w1)),
        Instr(Op.ARGMAX, src=0, n=n),
        Instr(Op.HALT),
    ]
    check_program(prog, SMALL)
    pw = encode_program(prog)
    dropped = ((1 << INSTR_BITS) - 1) & ~SMALL.prog_stored_mask
    sent = list(pw)
    sent[2] |= dropped                     # what the RTL must not keep
    x = [rng.randint(-127, 127) for _ in range(n)]
    st = run_program(prog, words, lanes=SMALL.lanes, scratch_depth=SMALL.scratch_depth,
                     out_depth=SMALL.out_depth, scratch_init={0: x})
    top = Accelerator(SMALL, weight_words=words)
    got = {}

    async def bench(ctx):
        ctx.set(top.host_space, HostSpace.PROG)
        order = [(i, s) for i in range(len(sent)) for s in range(4)]
        rng.shuffle(order)
        ctx.set(top.host_we, 1)
        for i, s in order:
            ctx.set(top.host_addr, 4 * i + s)
            ctx.set(top.host_wdata, (sent[i] >> (32 * s)) & 0xFFFFFFFF)
            await ctx.tick()
        ctx.set(top.host_we, 0)
        back = []
        for a in range(4 * len(sent)):
            ctx.set(top.host_addr, a)
            ctx.set(top.host_re, 1)
            await ctx.tick()
            ctx.set(top.host_re, 0)
            back.append(ctx.get(top.host_rdata) & 0xFFFFFFFF)
        got["prog"] = [sum(back[4 * i + s] << (32 * s) for s in range(4))
                       for i in range(len(sent))]
        ctx.set(top.host_space, HostSpace.SCRATCH)
        ctx.set(top.host_we, 1)
        for j, v in enumerate(x):
            ctx.set(top.host_addr, j)
            ctx.set(top.host_wdata, v & 0xFFFFFFFF)
            await ctx.tick()
        ctx.set(top.host_we, 0)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        for _ in range(5000):
            await ctx.tick()
            if ctx.get(top.done):
                break
        assert ctx.get(top.done) and not ctx.get(top.error)
        got["result"] = ctx.get(top.result)
        for space, depth, key in ((HostSpace.SCRATCH, 32, "scratch"),
                                  (HostSpace.OUT, n, "out")):
            ctx.set(top.host_space, space)
            vals = []
            for a in range(depth):
                ctx.set(top.host_addr, a)
                ctx.set(top.host_re, 1)
                await ctx.tick()
                ctx.set(top.host_re, 0)
                v = ctx.get(top.host_rdata) & 0xFFFFFFFF       # sign-extended to 32
                vals.append(v - (1 << 32) if v >> 31 else v)
            got[key] = vals

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got["prog"] == pw               # the dropped bits of word 2 read back as 0
    assert got["scratch"] == [int(v) for v in st.scratch.flatten()[:32]]
    assert got["out"] == [int(v) for v in st.out.flatten()[:n]]
    assert any(got["out"]) and any(got["scratch"][16:24])
    assert got["result"] == int(st.result.flatten()[0])
