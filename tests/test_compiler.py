"""ternac.lower: memory plan, program, and one-sentence errors with the numbers."""
from __future__ import annotations

import pytest
import torch

from ternac.golden.image import decode_image, encode_image, read_image
from ternac.golden.isa import Flag, Op, decode_program
from ternac.golden.mlp import IntBitLinear
from ternac.golden.packing import tile_lanes
from ternac.lower import (CompileError, compile_image, compile_mlp, layers_from_image,
                             useful_macs, write_compiled)
from ternac.config import AccelConfig


def _mlp(dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        t = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
        last = i == len(dims) - 2
        layers.append(IntBitLinear(trits=t, m=0 if last else 200 + i, s=0 if last else 13,
                                   relu=not last, raw=last))
    return layers


def test_layout_digits_shape():
    layers = _mlp([64, 128, 64, 10])
    c = compile_mlp(layers, AccelConfig(lanes=8), 64)
    assert (c.input_addr, c.input_len, c.logits_addr, c.n_logits) == (0, 64, 0, 10)
    p = c.program
    assert [i.op for i in p] == [Op.MATVEC, Op.MATVEC, Op.MATVEC, Op.ARGMAX, Op.HALT]
    # liveness allocation: the input stays at [0, 64); h0 = [64, 192); h1 is written while
    # h0 is read, so it takes [192, 256); the logits are RAW, in the output buffer
    assert (p[0].src, p[0].dst, p[0].n, p[0].k, p[0].wbase) == (0, 64, 128, 64, 0)
    assert (p[1].src, p[1].dst, p[1].n, p[1].k, p[1].wbase) == (64, 192, 64, 128, 16 * 64)
    assert (p[2].src, p[2].dst, p[2].n, p[2].k, p[2].wbase) == (192, 0, 10, 64, 16 * 64 + 8 * 128)
    assert p[0].flags == Flag.RELU and p[1].flags == Flag.RELU and p[2].flags == Flag.RAW
    assert (p[0].m, p[0].s, p[1].m, p[1].s) == (200, 13, 201, 13)
    assert (p[3].src, p[3].n) == (0, 10)
    assert c.scratch_words == 256
    assert decode_program(c.program_words) == p
    assert len(c.weight_words) == 16 * 64 + 8 * 128 + 2 * 64
    assert c.weight_words == sum((tile_lanes(l.trits, 8) for l in layers), [])
    assert useful_macs(c.shapes) == 64 * 128 + 128 * 64 + 64 * 10


def test_no_instruction_overwrites_its_input():
    c = compile_mlp(_mlp([5, 300, 7, 200, 9, 3]), AccelConfig(lanes=4), 5)
    for ins in c.program:
        if ins.op == Op.MATVEC and not ins.flags & Flag.RAW:
            assert ins.dst >= ins.src + ins.k or ins.src >= ins.dst + ins.n
    # input 5 (fixed) + h0 300 + h1 7; h2 (200) reuses h0's words, h3 (9) follows it
    assert c.scratch_words == 5 + 300 + 7
    assert c.scratch_map["work"] == (5, 307)


def test_single_layer():
    c = compile_mlp(_mlp([16, 4]), AccelConfig(lanes=4), 16)
    assert [i.op for i in c.program] == [Op.MATVEC, Op.ARGMAX, Op.HALT]


def test_weights_too_big():
    with pytest.raises(CompileError, match=r"the weights need 4288 words of 8 bits at 4 lanes, "
                                           r"but the weight memory holds 4096 \(weight_depth\)"):
        compile_mlp(_mlp([64, 128, 64, 10]), AccelConfig(lanes=4), 64)


def test_fan_in_too_big():
    with pytest.raises(CompileError, match=r"layer 1 has fan-in 40, more than the 32 .*max_fan_in"):
        compile_mlp(_mlp([8, 40, 4]), AccelConfig(lanes=4, max_fan_in=32), 8)


def test_scratch_too_small():
    with pytest.raises(CompileError, match=r"the scratch map needs 300 words \(100 of inputs, 0 of "
                                           r"state, 200 of work vectors\), but the scratchpad "
                                           r"holds 256 \(scratch_depth\)"):
        compile_mlp(_mlp([100, 200, 10]), AccelConfig(lanes=4, scratch_depth=256, weight_depth=8192),
                    100)


def test_logits_too_wide():
    with pytest.raises(CompileError, match=r"the last layer \(1\) is 20 outputs wide, more than "
                                           r"the 16-word output buffer"):
        compile_mlp(_mlp([8, 8, 20]), AccelConfig(lanes=4, out_depth=16), 8)


def test_program_too_long():
    with pytest.raises(CompileError, match=r"the program has 7 instructions, more than the 6 "
                                           r"the program memory holds \(prog_depth\)"):
        compile_mlp(_mlp([4, 4, 4, 4, 4, 4]), AccelConfig(lanes=4, prog_depth=6), 4)


def test_field_does_not_fit():
    # n = 4096 does not fit the 12-bit n field, though the memories are big enough
    cfg = AccelConfig(lanes=64, scratch_depth=1 << 14, weight_depth=1 << 14, max_fan_in=8192)
    with pytest.raises(CompileError, match=r"layer 0 \(4096x2\): ISA field n = 4096 does not "
                                           r"fit its 12 bits \(at most 4095\)"):
        compile_mlp(_mlp([2, 4096, 2]), cfg, 2)


def test_shape_errors():
    with pytest.raises(CompileError, match="the input vector has 10 elements but layer 0 has fan-in 8"):
        compile_mlp(_mlp([8, 4]), AccelConfig(lanes=4), 10)
    a, b = _mlp([8, 4, 2], 1)
    c, = _mlp([5, 2], 2)
    with pytest.raises(CompileError, match="layer 1 has fan-in 5 but layer 0 has 4 outputs"):
        compile_mlp([a, c], AccelConfig(lanes=4))
    with pytest.raises(CompileError, match="no layers"):
        compile_mlp([], AccelConfig(lanes=4))
    with pytest.raises(CompileError, match=r"the last layer \(1\) must output raw"):
        compile_mlp([a, IntBitLinear(b.trits, 1, 1, False, False)], AccelConfig(lanes=4))
    with pytest.raises(CompileError, match="layer 0 of 2 is raw"):
        compile_mlp([IntBitLinear(a.trits, 0, 0, False, True), b], AccelConfig(lanes=4))


def test_image_carries_the_program(tmp_path):
    layers = _mlp([64, 128, 64, 10])
    cfg = AccelConfig(lanes=8)
    c = compile_mlp(layers, cfg, 64)
    paths = write_compiled(c, tmp_path)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["program.hex", "program.txt",
                                                          "weights.tnac"]
    img = read_image(tmp_path / "weights.tnac")
    again = compile_image(img, cfg)
    assert again.program == c.program and again.weight_words == c.weight_words
    for a, b in zip(layers_from_image(img), layers):
        assert torch.equal(a.trits, b.trits) and (a.m, a.s, a.relu, a.raw) == (b.m, b.s, b.relu, b.raw)
    hexs = (tmp_path / "program.hex").read_text().split()
    assert [int(h, 16) for h in hexs] == c.program_words and all(len(h) == 32 for h in hexs)
    assert "MATVEC" in (tmp_path / "program.txt").read_text()
    with pytest.raises(CompileError, match="packed for 8 lanes, but the accelerator has 32"):
        compile_image(img, AccelConfig(lanes=32))
    assert decode_image(encode_image(img)) == img
