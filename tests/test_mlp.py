"""The digits ternary MLP: committed checkpoint, integer golden model, loader errors, training.

Deterministic: fixed seeds (printed), hypothesis derandomized.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from ternac.golden import numerics
from ternac.golden.digits_data import (INPUT_SCALE, N_TEST, N_TRAIN, dequantize_pixels, load_split,
                                quantize_pixels)
from ternac.golden.mlp import (DEFAULT_CHECKPOINT, DIGITS_DIMS, BitLinear, IntBitLinear, TernaryLayer,
                        evaluate, fake_quant_act, float_forward, int_forward,
                        int_layers_from_checkpoint, int_layers_from_trits, load_checkpoint,
                        load_float_model, predict, save_trit_checkpoint, ste_ternary,
                        train_digits)

PROPS = settings(derandomize=True, max_examples=60, deadline=None)


def read_tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def test_split():
    _, _, x, y = load_split()
    return quantize_pixels(x), y


# --- dataset contract -------------------------------------------------------------------

def test_split_sizes_and_input_quantization():
    x_tr, y_tr, x_te, y_te = load_split()
    assert x_tr.shape == (N_TRAIN, 64) and x_te.shape == (N_TEST, 64) == (360, 64)
    assert y_te.bincount().tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # stratified
    assert float(x_tr.min()) == 0 and float(x_tr.max()) == 16
    q = quantize_pixels(torch.arange(17.0))
    assert q.dtype == torch.int8 and q[0] == 0 and q[16] == 127
    assert q.tolist() == [round(p * 127 / 16) for p in range(17)]
    assert torch.equal(quantize_pixels(dequantize_pixels(q)), q)
    assert load_split()[0].data_ptr() != x_tr.data_ptr()  # fresh tensors


# --- the committed checkpoint ------------------------------------------------------------

def test_committed_checkpoint_loads(ckpt):
    assert ckpt.dims == DIGITS_DIMS == (64, 128, 64, 10)
    assert ckpt.latent is not None
    assert math.isclose(ckpt.layers[0].act_scale, INPUT_SCALE, rel_tol=1e-6)
    assert json.loads(ckpt.metadata["dims"]) == list(DIGITS_DIMS)
    assert "train_test_split" in ckpt.metadata["split"] and ckpt.metadata["seed"] == "0"
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    assert [l.trits.shape for l in layers] == [(128, 64), (64, 128), (10, 64)]
    assert [(l.relu, l.raw) for l in layers] == [(True, False), (True, False), (False, True)]
    for l in layers:
        assert l.trits.dtype == torch.int8 and set(l.trits.unique().tolist()) <= {-1, 0, 1}


def test_committed_checkpoint_accuracy():
    r = evaluate(DEFAULT_CHECKPOINT)
    print(f"float test accuracy {r['float_accuracy']:.4f}, integer test accuracy "
          f"{r['int_accuracy']:.4f}, agreement {r['float_int_agreement']:.4f}")
    assert r["n_test"] == 360
    assert r["int_accuracy"] >= 0.90
    assert r["float_accuracy"] >= 0.90
    assert r["float_int_agreement"] >= 0.98


def test_requant_parameters_follow_the_scales(ckpt):
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    for l in range(len(layers) - 1):
        want = ckpt.layers[l].gamma * ckpt.layers[l].act_scale / ckpt.layers[l + 1].act_scale
        assert (layers[l].m, layers[l].s) == numerics.dyadic(want)
        assert abs(layers[l].m / 2 ** layers[l].s - want) / want < 2 ** -15


def test_accumulators_fit_acc_width(test_split):
    x, _ = test_split
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    x = x.to(torch.int64)
    for layer in layers:
        acc = numerics.ternary_matvec(layer.trits, x)
        w = numerics.acc_width(layer.trits.shape[1])
        assert int(acc.max()) <= (1 << (w - 1)) - 1 and int(acc.min()) >= -(1 << (w - 1))
        if layer.raw:
            break
        x = numerics.relu(numerics.requantize(acc, layer.m, layer.s))
        assert int(x.min()) >= 0 and int(x.max()) <= 127


def test_int_forward_is_the_numerics_rules(ckpt, test_split):
    # Re-derive the logits with a plain Python loop over numerics' scalar rules.
    x, _ = test_split
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    got = int_forward(layers, x[:3])
    assert got.dtype == torch.int64 and got.shape == (3, 10)
    for b in range(3):
        v = x[b].tolist()
        for layer in layers:
            acc = [sum(t * xi for t, xi in zip(row, v)) for row in layer.trits.tolist()]
            if layer.raw:
                break
            v = [max(0, min(127, (a * layer.m + (1 << (layer.s - 1))) >> layer.s)) for a in acc]
        assert got[b].tolist() == acc


def test_float_forward_is_the_trained_model(ckpt, test_split):
    x, _ = test_split
    model = load_float_model(ckpt)
    with torch.no_grad():
        want = model(dequantize_pixels(x))
    assert torch.equal(float_forward(ckpt, x), want)


def test_float_logits_are_scaled_integer_logits(ckpt, test_split):
    # Real logits = a_L * gamma_L * acc_L up to float rounding, where the inputs agree.
    x, _ = test_split
    f = float_forward(ckpt, x)
    i = int_forward(int_layers_from_checkpoint(DEFAULT_CHECKPOINT), x)
    scale = ckpt.layers[-1].act_scale * ckpt.layers[-1].gamma
    close = ((f - i.to(torch.float32) * scale).abs() <= 1e-3 * f.abs().max()).all(dim=1)
    assert float(close.float().mean()) >= 0.95
    assert torch.equal(predict(f)[close], predict(i)[close])


# --- trit checkpoints ------------------------------------------------------------------

def test_trit_checkpoint_round_trip(ckpt, test_split, tmp_path):
    p = tmp_path / "trits.safetensors"
    save_trit_checkpoint(p, ckpt.layers, {"note": "exported"})
    back = load_checkpoint(p)
    assert back.latent is None and back.dims == ckpt.dims
    x, _ = test_split
    a = int_forward(int_layers_from_checkpoint(p), x)
    b = int_forward(int_layers_from_checkpoint(DEFAULT_CHECKPOINT), x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="holds trits, not the latent weights"):
        load_float_model(p)


def test_trit_checkpoint_not_ternary_rejected(ckpt, tmp_path):
    p = tmp_path / "bad.safetensors"
    save_trit_checkpoint(p, ckpt.layers)
    tensors, md = read_tensors(p)
    tensors["layers.1.trits"][3, 7] = 2
    save_file(tensors, str(p), metadata=md)
    with pytest.raises(ValueError, match=r"checkpoint tensor 'layers.1.trits' in .* is not ternary: "
                                         r"element \(3, 7\) is 2"):
        int_layers_from_checkpoint(p)


def test_int_layers_from_trits():
    t0 = torch.tensor([[1, -1], [0, 1], [1, 1]], dtype=torch.int8)
    t1 = torch.tensor([[1, 0, -1]], dtype=torch.int8)
    layers = int_layers_from_trits([t0, t1], [0.5, 0.25], [0.1, 0.2])
    assert (layers[0].m, layers[0].s) == numerics.dyadic(0.5 * 0.1 / 0.2)
    assert layers[0].relu and not layers[0].raw and layers[1].raw and not layers[1].relu
    x = torch.tensor([[100, -20], [-127, 127]])
    # layer 0: acc = [120, -20, 80], [-254, 127, 0]; * 0.25 -> [30, -5 -> 0, 20], [0, 32, 0]
    # layer 1: [30 - 20], [0 - 0]
    assert int_forward(layers, x).tolist() == [[10], [0]]
    with pytest.raises(ValueError, match="fan-in"):
        int_layers_from_trits([t0, t0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one gamma and one act_scale"):
        int_layers_from_trits([t0, t1], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="not ternary"):
        int_layers_from_trits([t0 * 2, t1], [1.0, 1.0], [1.0, 1.0])


def test_int_bitlinear_validates():
    with pytest.raises(ValueError, match="not ternary"):
        IntBitLinear(trits=torch.tensor([[0, 2]]), m=1, s=0, relu=False, raw=True)
    with pytest.raises(ValueError, match="does not fit 16"):
        IntBitLinear(trits=torch.zeros(1, 2), m=1 << 16, s=0, relu=False, raw=False)
    with pytest.raises(ValueError, match="shift"):
        IntBitLinear(trits=torch.zeros(1, 2), m=1, s=64, relu=False, raw=False)
    with pytest.raises(ValueError, match="2-D"):
        IntBitLinear(trits=torch.zeros(2), m=1, s=0, relu=False, raw=True)


def test_int_forward_rejects_bad_input():
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        int_forward(layers, torch.full((1, 64), -128))
    with pytest.raises(ValueError, match="integer"):
        int_forward(layers, torch.zeros(1, 64))
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        int_forward(layers, torch.zeros(1, 63, dtype=torch.int8))
    raw_first = [IntBitLinear(l.trits, l.m, l.s, l.relu, True) for l in layers]
    with pytest.raises(ValueError, match="raw but is not the last"):
        int_forward(raw_first, torch.zeros(1, 64, dtype=torch.int8))


# --- loader errors -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        int_layers_from_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 8, 100, 2000, -8])
def test_truncated_checkpoint(tmp_path, keep):
    data = DEFAULT_CHECKPOINT.read_bytes()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(ValueError, match="is not a readable safetensors file \\(corrupt or truncated\\)"):
        int_layers_from_checkpoint(p)


def test_garbage_checkpoint(tmp_path):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(p)
    with pytest.raises(ValueError, match="is not a file"):
        load_checkpoint(tmp_path)


def _rewrite(tmp_path, edit):
    tensors, md = read_tensors(DEFAULT_CHECKPOINT)
    edit(tensors, md)
    p = tmp_path / "edited.safetensors"
    save_file(tensors, str(p), metadata=md)
    return p


@pytest.mark.parametrize("edit, message", [
    (lambda t, m: t.pop("layers.1.weight"), "missing tensor 'layers.1.weight'"),
    (lambda t, m: t.pop("layers.2.act_scale"), "missing tensor 'layers.2.act_scale'"),
    (lambda t, m: t.update({"layers.1.weight": t["layers.1.weight"][:, :100].contiguous()}),
     "layer 1 has fan-in 100 but layer 0 has 128 outputs"),
    (lambda t, m: t.update({"layers.0.weight": t["layers.0.weight"].flatten()}), "must be 2-D"),
    (lambda t, m: t["layers.2.weight"].__setitem__((1, 1), float("nan")), "NaN or infinite"),
    (lambda t, m: t.update({"layers.1.act_scale": torch.tensor(float("nan"))}), "positive and finite"),
    (lambda t, m: t.update({"layers.1.act_scale": torch.tensor(-1.0)}), "positive and finite"),
    (lambda t, m: t.update({"layers.1.act_scale": torch.ones(3)}), "must be a scalar"),
    (lambda t, m: t.update({"layers.0.weight": t["layers.0.weight"].to(torch.int32)}), "floating point"),
    (lambda t, m: t.update({"extra": torch.zeros(1)}), "unexpected tensor 'extra'"),
    (lambda t, m: m.update({"dims": "[64, 32, 10]"}), "do not match the tensor shapes"),
    (lambda t, m: [t.pop(k) for k in list(t)] and t.update({"x.y": torch.zeros(1)}), "unexpected tensor"),
])
def test_bad_checkpoint_contents(tmp_path, edit, message):
    p = _rewrite(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as e:
        int_layers_from_checkpoint(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_wrong_model_for_digits(tmp_path, ckpt):
    p = tmp_path / "small.safetensors"
    save_trit_checkpoint(p, ckpt.layers[:2])  # 64 -> 128 -> 64: no 10 logits
    assert len(int_layers_from_checkpoint(p)) == 2
    with pytest.raises(ValueError, match="gives 10 logits"):
        evaluate(p)


# --- QAT pieces ----------------------------------------------------------------------------

@given(st.integers(0, 2 ** 31 - 1))
@PROPS
def test_ste_ternary_forward_and_gradient(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(7, 5, generator=g).requires_grad_()
    wq = ste_ternary(w)
    t, gamma = numerics.absmean_ternarize(w)
    assert torch.equal(wq.detach(), t.to(torch.float32) * gamma)
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_fake_quant_act_forward_and_gradient():
    x = torch.tensor([-300.0, -1.26, 0.3, 1.24, 12.6, 300.0], requires_grad=True)
    y = fake_quant_act(x, 0.1)
    assert torch.allclose(y.detach(), numerics.quantize_act(x.detach(), 0.1).float() * 0.1)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # clipped straight-through


def test_bitlinear_calibrates_then_freezes():
    torch.manual_seed(0)
    layer = BitLinear(4, 3)
    layer.train()
    layer(torch.full((2, 4), 12.7))
    assert math.isclose(float(layer.act_scale), 0.1, rel_tol=1e-5)  # first batch sets absmax/127
    layer(torch.full((2, 4), 25.4))
    assert math.isclose(float(layer.act_scale), 0.9 * 0.1 + 0.1 * 0.2, rel_tol=1e-5)  # EMA
    layer.freeze()
    before = float(layer.act_scale)
    layer(torch.full((2, 4), 1000.0))
    assert float(layer.act_scale) == before
    with pytest.raises(RuntimeError, match="not calibrated"):
        BitLinear(4, 3).eval()(torch.zeros(1, 4))


# --- training -------------------------------------------------------------------------------

def test_training_is_deterministic(tmp_path):
    seed = 7
    print(f"seed={seed}")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ra = train_digits(seed=seed, epochs=1, out=a, progress=False)
    rb = train_digits(seed=seed, epochs=1, out=b, progress=False)
    ta, ma = read_tensors(a)
    tb, mb = read_tensors(b)
    assert ta.keys() == tb.keys() == {f"layers.{i}.{n}" for i in range(3) for n in ("weight", "act_scale")}
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert ma == mb and ma["seed"] == "7" and ma["epochs"] == "1"
    assert ra["float_accuracy"] == rb["float_accuracy"] and ra["int_accuracy"] == rb["int_accuracy"]
    print(f"1 epoch: float {ra['float_accuracy']:.4f}, int {ra['int_accuracy']:.4f}")
    # a different seed gives different weights
    rc = train_digits(seed=seed + 1, epochs=1, out=tmp_path / "c.safetensors", progress=False)
    tc, _ = read_tensors(tmp_path / "c.safetensors")
    assert not torch.equal(ta["layers.0.weight"], tc["layers.0.weight"])
    assert evaluate(a) == {k: ra[k] for k in ("float_accuracy", "int_accuracy",
                                              "float_int_agreement", "n_test")}
    assert rc["out"] == str(tmp_path / "c.safetensors")


def test_train_rejects_zero_epochs():
    with pytest.raises(ValueError, match="epochs"):
        train_digits(epochs=0, progress=False)
