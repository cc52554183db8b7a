"""golden.interpreter: the compiled program, run in PyTorch, equals the integer golden model."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from ternac.golden.digits_data import load_split, quantize_pixels
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.mlp import DEFAULT_CHECKPOINT, IntBitLinear, int_forward, int_layers_from_checkpoint
from ternac.golden.numerics import ACT_MAX, ACT_MIN
from ternac.lower import compile_mlp
from ternac.config import AccelConfig


def _run(c, x):
    cfg = c.cfg
    return run_program(c.program_words, c.weight_words, lanes=cfg.lanes,
                       scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                       weight_depth=cfg.weight_depth, scratch_init={c.input_addr: x})


def _first_argmax(logits):
    return torch.tensor([max(range(len(r)), key=lambda j: (r[j], -j)) for r in logits.tolist()])


@pytest.fixture(scope="module")
def digits():
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    _, _, x_te, y_te = load_split()
    x = quantize_pixels(x_te)
    return layers, x, int_forward(layers, x)


@pytest.mark.parametrize("lanes", [4, 8, 32])
def test_digits_all_test_images_bit_exact(digits, lanes):
    layers, x, ref = digits
    assert x.shape == (360, 64)
    # L = 4 needs 4288 weight words; give it the memory (the default holds 4096).
    cfg = AccelConfig(lanes=lanes, weight_depth=8192)
    c = compile_mlp(layers, cfg, 64)
    s = _run(c, x)
    logits = s.out[:, c.logits_addr:c.logits_addr + c.n_logits]
    assert torch.equal(logits, ref)                     # every logit of every image
    assert torch.equal(s.result, _first_argmax(ref))
    assert s.executed == len(c.program)


def _random_mlp(data, max_width=24, max_layers=4):
    n_layers = data.draw(st.integers(1, max_layers), label="layers")
    dims = data.draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1,
                              max_size=n_layers + 1), label="dims")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        t = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
        last = i == n_layers - 1
        m = data.draw(st.integers(0, (1 << 16) - 1)) if not last else 0
        s = data.draw(st.integers(0, 63)) if not last else 0
        relu = data.draw(st.booleans()) if not last else False
        layers.append(IntBitLinear(trits=t, m=m, s=s, relu=relu, raw=last))
    b = data.draw(st.integers(1, 5), label="batch")
    x = torch.randint(ACT_MIN, ACT_MAX + 1, (b, dims[0]), generator=g)
    return layers, x


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), lanes=st.sampled_from([4, 8, 12, 32, 64]))
def test_random_mlps_bit_exact(data, lanes):
    layers, x = _random_mlp(data)
    c = compile_mlp(layers, AccelConfig(lanes=lanes), x.shape[1])
    s = _run(c, x)
    ref = int_forward(layers, x)
    assert torch.equal(s.out[:, :c.n_logits], ref)
    assert torch.equal(s.result, _first_argmax(ref))


@pytest.mark.parametrize("trit", [1, -1, 0])
@pytest.mark.parametrize("act", [ACT_MAX, ACT_MIN])
@pytest.mark.parametrize("lanes", [4, 32])
def test_extremes(trit, act, lanes):
    k = 1024  # the default max_fan_in
    hidden = torch.full((40, k), trit, dtype=torch.int8)
    last = torch.full((10, 40), trit, dtype=torch.int8)
    layers = [IntBitLinear(hidden, m=(1 << 16) - 1, s=20, relu=False, raw=False),
              IntBitLinear(last, m=0, s=0, relu=False, raw=True)]
    x = torch.full((2, k), act, dtype=torch.int64)
    c = compile_mlp(layers, AccelConfig(lanes=lanes, weight_depth=1 << 14, scratch_depth=2048), k)
    s = _run(c, x)
    ref = int_forward(layers, x)
    assert torch.equal(s.out[:, :10], ref)
    h = trit * act * k  # +-130048: the widest accumulator of the default config
    y = max(ACT_MIN, min(ACT_MAX, (h * 65535 + (1 << 19)) >> 20))
    assert torch.equal(s.scratch[:, c.program[0].dst:c.program[0].dst + 40],
                       torch.full((2, 40), y))
    assert torch.equal(ref, torch.full((2, 10), trit * 40 * y))
    assert s.result.tolist() == [0, 0]  # all logits tie: the smallest index wins


def test_relu_and_ties():
    t = torch.tensor([[1, 0], [0, 1], [-1, 0], [1, 0]], dtype=torch.int8)
    prog = [Instr(Op.MATVEC, flags=int(Flag.RELU), src=0, dst=2, n=4, k=2, m=1, s=0),
            Instr(Op.MATVEC, flags=int(Flag.RAW), src=2, dst=3, n=4, k=4, wbase=2),
            Instr(Op.ARGMAX, src=3, n=4), Instr(Op.HALT)]
    from ternac.golden.packing import tile_lanes
    eye = torch.eye(4, dtype=torch.int8)
    w = tile_lanes(t, 4) + tile_lanes(eye, 4)
    s = run_program(prog, w, lanes=4, scratch_depth=8, out_depth=8,
                    scratch_init={0: torch.tensor([[5, 7], [-5, 7]])})
    assert s.scratch[:, 2:6].tolist() == [[5, 7, 0, 5], [0, 7, 5, 0]]
    assert s.out[:, 3:7].tolist() == [[5, 7, 0, 5], [0, 7, 5, 0]]
    assert s.result.tolist() == [1, 1]


def _one(prog, words=(0,), **kw):
    args = dict(lanes=4, scratch_depth=8, out_depth=4)
    args.update(kw)
    return run_program(prog, list(words), **args)


def test_errors():
    with pytest.raises(MachineError, match="without a HALT"):
        _one([Instr(Op.ARGMAX, n=1)])
    with pytest.raises(MachineError, match=r"reads out words 2\.\.5, past the end of a 4-word"):
        _one([Instr(Op.ARGMAX, src=2, n=4), Instr(Op.HALT)])
    with pytest.raises(MachineError, match="ARGMAX over 0 elements"):
        _one([Instr(Op.ARGMAX, n=0), Instr(Op.HALT)])
    with pytest.raises(MachineError, match=r"reads scratch words 6\.\.8, past the end of a 8-word"):
        _one([Instr(Op.MATVEC, src=6, dst=0, n=1, k=3, flags=int(Flag.RAW)), Instr(Op.HALT)],
             words=[0, 0, 0])
    with pytest.raises(MachineError, match=r"writes out words 3\.\.4"):
        _one([Instr(Op.MATVEC, dst=3, n=2, k=1, flags=int(Flag.RAW)), Instr(Op.HALT)])
    with pytest.raises(MachineError, match=r"reads weight words 0\.\.1, past the end of a 1-word"):
        _one([Instr(Op.MATVEC, n=5, k=1, flags=int(Flag.RAW)), Instr(Op.HALT)])
    with pytest.raises(MachineError, match="only 1 were loaded"):
        _one([Instr(Op.MATVEC, n=5, k=1, flags=int(Flag.RAW)), Instr(Op.HALT)], weight_depth=4)
    with pytest.raises(MachineError, match="over its own input"):
        _one([Instr(Op.MATVEC, src=0, dst=1, n=1, k=2), Instr(Op.HALT)], words=[0, 0])
    with pytest.raises(MachineError, match="both RAW and RELU"):
        _one([Instr(Op.MATVEC, n=1, k=1, flags=3), Instr(Op.HALT)])
    with pytest.raises(MachineError, match="undefined flag bits 0x4"):
        _one([Instr(Op.MATVEC, n=1, k=1, flags=4), Instr(Op.HALT)])
    with pytest.raises(MachineError, match="signed 16-bit range"):
        _one([Instr(Op.HALT)], scratch_init={0: [40000]})
    with pytest.raises(MachineError, match=r"writes words 7\.\.8, outside the 8-word"):
        _one([Instr(Op.HALT)], scratch_init={7: [1, 2]})
    with pytest.raises(ValueError, match="unknown opcode 31"):
        _one([31])
    with pytest.raises(ValueError, match="invalid I2 code 0b10 in weight word 0, lane 1"):
        _one([Instr(Op.MATVEC, flags=int(Flag.RAW), n=1, k=1), Instr(Op.HALT)], words=[0b1000])


def test_scratch_holds_int16_but_matvec_takes_int8():
    # int16 values stored by the host stay in the scratchpad (the residual stream and the
    # recurrent state are int16); a MATVEC input must be an int8 activation.
    t = torch.tensor([[1, -1]], dtype=torch.int8)
    from ternac.golden.packing import tile_lanes
    s = _one([Instr(Op.HALT)], words=tile_lanes(t, 4), scratch_init={0: [32767, -32768]})
    assert s.scratch[0, :2].tolist() == [32767, -32768]
    with pytest.raises(MachineError, match="int8 activation range"):
        _one([Instr(Op.MATVEC, flags=int(Flag.RAW), n=1, k=2), Instr(Op.HALT)],
             words=tile_lanes(t, 4), scratch_init={0: [32767, -32768]})
    s = _one([Instr(Op.MATVEC, flags=int(Flag.RAW), n=1, k=2), Instr(Op.HALT)],
             words=tile_lanes(t, 4), scratch_init={0: [127, -127]})
    assert s.out[0, 0].item() == 254


@pytest.mark.parametrize("field,value", [("n", -1), ("k", -4), ("aux", 1 << 12), ("m", 1 << 16)])
def test_fields_that_have_no_encoding_are_refused(field, value):
    """An Instr whose field does not fit the program word (a negative n, a 13-bit aux) is
    refused in one sentence naming the instruction and the field, not run (a negative n
    ran as an empty loop)."""
    import dataclasses

    from ternac.golden.interpreter import MachineError, run_program
    from ternac.golden.isa import Instr, Op
    ins = dataclasses.replace(Instr(Op.ADD, src=0, dst=4, aux=2, n=2, m=1), **{field: value})
    with pytest.raises(MachineError, match=f"instruction 0: instruction field {field}="):
        run_program([ins, Instr(Op.HALT)], [], lanes=8, scratch_depth=16, out_depth=8)
