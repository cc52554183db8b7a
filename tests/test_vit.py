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


def test_rtl_equals_golden_on_a_subset():
    from ternac.runner import run_vit_digits
    r = run_vit_digits("verilator", limit=6, progress=False)
    assert r["mismatches"] == 0 and r["argmax_mismatches"] == 0, r
    # the cycle model's data-free bounds hold the RTL counter, within 2%
    assert r["predicted_cycles_min"] <= r["cycles_min"] <= r["cycles_max"] <= r["predicted_cycles"]
    assert r["predicted_cycles"] <= 1.02 * r["cycles_min"], r
    print(f"ViT on the RTL: {r['cycles_per_inference']} cycles an image, attention "
          f"{r['attention_cycle_share']:.2f} of them")


def test_program_fits_the_config(vit):
    _, _, im = vit
    lw = lower(im.graph(), VIT_CONFIG)
    assert len(lw.program) <= VIT_CONFIG.prog_depth
    assert lw.scratch_words <= VIT_CONFIG.scratch_depth


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
