"""The ternary ViT for the digits (golden/vit.py): the committed checkpoint's integer golden
model (its graph evaluated) equals the lowered program in the interpreter on every logit of
all 360 test digits and the Verilator RTL on a subset; accuracies; the CLI; bad input."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ternac.config import VIT_CONFIG
from ternac.golden.digits_data import load_split, quantize_pixels
from ternac.golden.isa import Op
from ternac.golden.vit import DEFAULT_CHECKPOINT, IntViT, ViTConfig, load_checkpoint, patches
from ternac.lower import lower


@pytest.fixture(scope="module")
def vit():
    model, recipe = load_checkpoint()
    return model, recipe, IntViT.from_model(model)


def test_patches_are_the_2x2_blocks():
    x = torch.arange(64).reshape(1, 64)
    p = patches(x)
    assert p.shape == (1, 16, 4)
    assert p[0, 0].tolist() == [0, 1, 8, 9] and p[0, 5].tolist() == [18, 19, 26, 27]


def test_committed_checkpoint_accuracy_and_interpreter_equal_golden(vit):
    """Every logit of the 360 test digits: lowered program in the interpreter == graph."""
    from ternac.runner import run_vit_digits
    model, recipe, im = vit
    r = run_vit_digits("interp", progress=False)
    assert r["samples"] == 360 and r["mismatches"] == 0 and r["argmax_mismatches"] == 0
    assert r["accuracy"] == r["golden_accuracy"] >= 0.95, r
    assert r["float_accuracy"] >= 0.95
    assert abs(r["golden_accuracy"] - recipe["int_accuracy"]) < 1e-9   # the recipe's figure
    assert 0 < r["attention_cycle_share"] < 1
    g = im.graph()
    ops = g.op_counts()
    assert ops["DOT"] == ops["DOTT"] == ops["SHIFTMAX"] > 0 and ops["LAYERNORM"] > 0
    assert ops["GELU"] > 0 and ops["EMBED"] == ViTConfig().tokens


def _exact_cycles(lw, feeds, image: int) -> int:
    """The cycle model with the data-dependent LayerNorm counts of one image (the program's
    unrolled stream stepped in the interpreter, golden.cycles.norm_data of each input)."""
    import dataclasses

    from ternac.golden import cycles as C
    from ternac.golden.interpreter import run_program
    from ternac.golden.isa import Instr
    cfg = lw.cfg
    scratch = torch.zeros(1, cfg.scratch_depth, dtype=torch.int64)
    for a, v in lw.scratch_constants.items():
        scratch[0, a:a + len(v)] = torch.tensor(v)
    for name, v in feeds.items():
        a, n = lw.inputs[name]
        scratch[0, a:a + n] = v[image]
    prog, data = lw.unrolled, {}
    for pc, ins in enumerate(prog):
        if ins.op == Op.HALT:
            break
        if pc and prog[pc - 1].op == Op.MATVEC and prog[pc - 1].epi:
            continue                     # an epilogue: ran with its MATVEC
        if ins.op == Op.LAYERNORM:
            data[pc] = C.norm_data(scratch[0, ins.src:ins.src + ins.n].tolist(), layernorm=True)
        pair = [ins, prog[pc + 1]] if ins.op == Op.MATVEC and ins.epi else [ins]
        scratch = run_program(pair + [Instr(Op.HALT)], lw.weight_words, lanes=cfg.lanes,
                              scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                              weight_depth=cfg.weight_depth, scratch_init=scratch).scratch
    return C.program_cycles(lw.program, cfg.lanes, data=data)["total"]


def test_rtl_equals_golden_on_a_subset(vit):
    """Every logit of 6 digits on the Verilator RTL; the cycle model's data-free bounds hold
    its counter, and with the LayerNorms' data (two digits) the model is exact."""
    from ternac.runner import run_vit_digits
    _, _, im = vit
    r = run_vit_digits("verilator", limit=6, progress=False)
    assert r["mismatches"] == 0 and r["argmax_mismatches"] == 0, r
    assert r["predicted_cycles_min"] <= r["cycles_min"] <= r["cycles_max"] <= r["predicted_cycles"]
    r2 = run_vit_digits("verilator", limit=2, progress=False)
    x = quantize_pixels(load_split()[2][:2])
    lw = lower(im.graph(), VIT_CONFIG)
    exact = sorted(_exact_cycles(lw, im.feeds(x), i) for i in range(2))
    print(f"ViT on the RTL: {r['cycles_per_inference']} cycles an image (data-free model "
          f"{r['predicted_cycles_min']}..{r['predicted_cycles']}), attention "
          f"{r['attention_cycle_share']:.2f} of them; two digits {r2['cycles_min']}, "
          f"{r2['cycles_max']} measured, {exact} modelled with their data")
    assert exact == [r2["cycles_min"], r2["cycles_max"]]


def test_program_fits_the_config(vit):
    _, _, im = vit
    lw = lower(im.graph(), VIT_CONFIG)
    assert len(lw.program) <= VIT_CONFIG.prog_depth
    assert lw.scratch_words <= VIT_CONFIG.scratch_depth


def test_schedules_compute_the_same_logits(vit):
    """The head-major schedule (lowmem, VIT_CONFIG's 2,304-word scratchpad) and the
    token-major one are the same integer model: every logit of the 360 test digits."""
    _, _, im = vit
    x = quantize_pixels(load_split()[2])
    fast = im.graph(lowmem=False).evaluate(im.feeds(x))["logits"]
    assert torch.equal(im.graph(lowmem=True).evaluate(im.feeds(x))["logits"], fast)
    assert lower(im.graph(lowmem=False), VIT_CONFIG.__class__(
        **{**VIT_CONFIG.to_dict(), "scratch_depth": 4096})).scratch_words > VIT_CONFIG.scratch_depth


def test_bad_checkpoint_is_one_sentence(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    for path, msg in ((tmp_path / "missing.safetensors", "does not exist"),
                      (bad, "not a readable safetensors"),
                      (DEFAULT_CHECKPOINT.parent / "digits.safetensors", "not a ternac ViT")):
        with pytest.raises(ValueError, match=msg):
            load_checkpoint(path)
        r = subprocess.run([sys.executable, "-m", "ternac.cli", "run", "vit-digits", "--backend",
                            "golden", "--checkpoint", str(path), "--limit", "2"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_training_is_seeded_and_writes_a_loadable_checkpoint(tmp_path):
    from ternac.golden.vit import train_vit_digits
    out = tmp_path / "v.safetensors"
    small = ViTConfig(d=8, heads=2, depth=1, mlp=8)
    a = train_vit_digits(seed=3, epochs=1, out=out, progress=False, cfg=small)
    b = train_vit_digits(seed=3, epochs=1, out=None, progress=False, cfg=small)
    assert a["float_accuracy"] == b["float_accuracy"] and a["int_accuracy"] == b["int_accuracy"]
    m, recipe = load_checkpoint(out)
    assert m.cfg == small and recipe["seed"] == 3
