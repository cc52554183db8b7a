"""Checkpoint import: MatMul-free LM (HGRN-Bit) and BitNet b1.58 in the Hugging Face layout.

Every checkpoint here is generated in a tmp folder in exactly the reference layout
(config.json + model.safetensors, the reference's tensor names and config keys), one for
each layout the importer must tell apart: HGRN-Bit (float), HGRN-Bit with ``hidden_act``
gelu, BitNet autobitlinear packed, bitlinear packed, unpacked trits + weight_scale,
autobitlinear online, and the refused ones (attention, unknown quantization_mode, ...).
Random tensors come from fixed seeds (printed where a test draws them).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ternac.golden import numerics
from ternac.golden.lm import (CONVENTIONS, REFERENCE_CONVENTIONS, TERNAC_CONVENTIONS, LMConfig,
                              MatMulFreeLM, calibrate, count_ternary_weights,
                              fake_quant_per_token_reference, round_half_away, ternary_layers)
from ternac.golden.lm_import import (BOARD_CAPACITY_TRITS, CheckpointImportError, check_fits,
                                     inspect_checkpoint, load_bitnet_trits, load_hf_checkpoint,
                                     unpack_hf_bitnet)

# Names a reference HGRNBitForCausalLM checkpoint does not have (ternac's static scales).
TERNAC_ONLY = ("act_scale", "in_absmax", "out_absmax", "h_scale", "residual_scale", "embeddings.scale")


def hf_config(**kw) -> dict:
    """A config.json as the reference HGRNBitConfig writes it (its defaults, sizes from kw)."""
    cfg = {"model_type": "hgrn_bit", "architectures": ["HGRNBitForCausalLM"], "vocab_size": 32,
           "hidden_size": 16, "num_hidden_layers": 2, "attn_mode": "fused_recurrent",
           "num_heads": 1, "expand_ratio": 1, "use_short_conv": False, "conv_size": 4,
           "share_conv_kernel": True, "use_lower_bound": True, "hidden_ratio": 4,
           "intermediate_size": None, "hidden_act": "swish", "max_position_embeddings": 2048,
           "rms_norm_eps": 1e-6, "use_cache": True, "pad_token_id": None, "bos_token_id": 1,
           "eos_token_id": 2, "tie_word_embeddings": False, "initializer_range": 0.02,
           "fuse_cross_entropy": True, "torch_dtype": "bfloat16"}
    cfg.update(kw)
    return cfg


def write_hgrn(folder, cfg: dict, seed=0, dtype=torch.bfloat16, drop=(), extra=None):
    """Write a reference-layout MatMul-free checkpoint; returns the tensors written.

    Weights as the reference's _init_weights (normal(0, 0.02), o_proj/down_proj / sqrt(2L)),
    norm weights 1 + 0.1 N(0, 1) and lower_bounds N(0, 1) so that both matter.
    """
    torch.manual_seed(seed)
    model = MatMulFreeLM(LMConfig.from_hf(cfg, default_conventions=REFERENCE_CONVENTIONS))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif n == "model.lower_bounds":
                p.copy_(torch.randn_like(p))
    tensors = {k: v.to(dtype).contiguous() for k, v in model.state_dict().items()
               if not k.endswith(TERNAC_ONLY) and k not in drop}
    tensors.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return tensors


def refused(fn, *args, match=None, **kw) -> str:
    """Call fn, expect a one-sentence CheckpointImportError (a ValueError), return its text."""
    with pytest.raises(CheckpointImportError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 400, msg
    if match is not None:
        assert match in msg, msg
    return msg


def test_reference_names_are_the_models_names():
    names = set(MatMulFreeLM(LMConfig.from_hf(hf_config(), default_conventions=REFERENCE_CONVENTIONS)).state_dict())
    for n in ("model.embeddings.weight", "model.layers.0.attn_norm.weight",
              "model.layers.0.attn.i_proj.weight", "model.layers.0.attn.f_proj.weight",
              "model.layers.0.attn.g_proj.weight", "model.layers.0.attn.g_norm.weight",
              "model.layers.0.attn.o_proj.weight", "model.layers.0.attn.i_proj.norm.weight",
              "model.layers.1.mlp_norm.weight", "model.layers.1.mlp.gate_proj.weight",
              "model.layers.1.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.norm.weight",
              "model.norm.weight", "model.lower_bounds", "lm_head.weight", "lm_head.norm.weight"):
        assert n in names


def test_load_hgrn_checkpoint(tmp_path):
    cfg = hf_config()
    tensors = write_hgrn(tmp_path, cfg)
    model = load_hf_checkpoint(tmp_path)
    c = model.config
    # intermediate_size null -> the reference's rule: int(16 * 4 * 2/3) = 42 -> 256
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size) == (16, 2, 256, 32)
    assert c.use_lower_bound and model.quant == "per_token" and not model.calibrated
    # a reference checkpoint gets the reference's conventions
    assert c.conventions == REFERENCE_CONVENTIONS
    assert model.lm_head.norm.eps == 1e-6 and model.model.layers[0].attn.i_proj.norm.eps == 1e-6
    assert model.model.layers[0].attn.g_norm.eps == 1e-6 == model.model.norm.eps
    sd = model.state_dict()
    for k, v in tensors.items():
        assert torch.equal(sd[k], v.to(torch.float32)), k
    assert model.n_ternary == count_ternary_weights(c) == 2 * (4 * 16 * 16 + 3 * 16 * 256) + 32 * 16
    logits, state = model(torch.randint(0, 32, (2, 9)))
    assert logits.shape == (2, 9, 32) and len(state) == 2 and torch.isfinite(logits).all()
    # the lower bound is used from layer 1 on
    lb = model.model.lower_bound_values()
    assert lb[0] is None and lb[1].shape == (16,) and bool((lb[1] > 0).all())
    # an imported model calibrates and then runs in static mode
    calibrate(model, torch.randint(0, 32, (4000,)), n_batches=2, batch_size=2, seq_len=32)
    assert model.calibrated
    assert torch.isfinite(model(torch.randint(0, 32, (1, 5)))[0]).all()


def test_hgrn_trits_follow_the_reference_rule(tmp_path):
    write_hgrn(tmp_path, hf_config(use_lower_bound=False, intermediate_size=24), dtype=torch.float32)
    imp = inspect_checkpoint(tmp_path)
    model = load_hf_checkpoint(tmp_path)
    assert imp.kind == "hgrn_bit" and imp.n_trits == model.n_ternary and imp.runnable
    assert imp.math["conventions"] == REFERENCE_CONVENTIONS
    assert set(imp.layers) == set(ternary_layers(model))
    w = model.model.layers[1].attn.o_proj.weight.detach()
    t, gamma = imp.layers["model.layers.1.attn.o_proj"]
    # the reference's weight_quant (fusedbitnet.py:43-46 at 9e6fd30): k = 1 / max(mean|W|, 1e-5)
    k = 1.0 / w.abs().mean().clamp(min=1e-5)
    assert torch.equal(t, torch.clamp(torch.round(w * k), -1, 1).to(torch.int8)) and t.dtype == torch.int8
    assert gamma == pytest.approx(float(w.abs().mean()), rel=1e-6)
    # not ternac's mean + 1e-5
    assert gamma != pytest.approx(numerics.absmean_ternarize(w)[1], rel=1e-5)


# --- the reference's forward, re-stated from its source lines -------------------------------
#
# The reference (github ridgerchu/matmulfreellm, master since 9e6fd30; the forward files are
# unchanged from 9e6fd30 to a016f72) cannot be imported here: it needs triton and CUDA. These
# functions re-state, in plain torch and in the model's dtype, the equations its forward
# computes, each with the file:line@9e6fd30 it comes from. They are written from those lines,
# not copied, and share nothing with golden/lm.py.

def ref_round(v):
    # tl.math.round (fusedbitnet.py:127) is libdevice __nv_roundf: halfway cases away from zero
    r = torch.trunc(v)
    return torch.where((v - r).abs() >= 0.5, r + torch.sign(v), r)


def ref_fused_bitlinear(x, w, norm_w):
    """FusedBitLinear.forward (mmfreelm/ops/fusedbitnet.py:602-610) calls
    layer_norm_linear_quant_fn without eps, so eps = 1e-6 (its default, :520)."""
    eps = 1e-6
    # _layer_norm_fwd_quant_kernel, RMS branch (:107-120): var = sum(x^2)/N, rstd = 1/sqrt(var + eps)
    var = (x * x).sum(-1, keepdim=True) / x.shape[-1]
    y = x * (1 / torch.sqrt(var + eps)) * norm_w
    # its 8-bit quantization (:125-128): k = 127 / max(max|y|, 1e-5); clamp(round(y k), -128, 127) / k
    k = 127.0 / torch.clamp(y.abs().amax(-1, keepdim=True), min=1e-5)
    y = torch.clamp(ref_round(y * k), -128, 127) / k
    # weight_quant (:43-46), applied at :456: s = 1 / max(mean|W|, 1e-5); u = clamp(round(W s), -1, 1) / s
    s = 1.0 / torch.clamp(w.abs().mean(), min=1e-5)
    u = torch.clamp(torch.round(w * s), -1, 1) / s
    return y @ u.T                                                   # F.linear, :458


def ref_rmsnorm(x, w, eps):
    """mmfreelm/modules/layernorm.py RMSNorm (rms_norm_ref :83-84; kernel :148-161)."""
    return x * (1 / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)) * w


def ref_forward(T, cfg, ids):
    """HGRNBitForCausalLM.forward for hidden_act swish/gelu, fused_recurrent, no short conv."""
    L, eps = cfg["num_hidden_layers"], cfg["rms_norm_eps"]
    h = T["model.embeddings.weight"][ids]                           # modeling_hgrn_bit.py:215
    if cfg["use_lower_bound"]:
        lbs = T["model.lower_bounds"].softmax(0)                     # :235
        lbs = lbs.cumsum(0) - lbs[0]                                 # :236
    for li in range(L):
        p = f"model.layers.{li}."
        bl = lambda n, x: ref_fused_bitlinear(x, T[p + n + ".weight"], T[p + n + ".norm.weight"])  # noqa: E731
        residual = h                                                 # HGRNBitBlock.forward :100
        x = ref_rmsnorm(h, T[p + "attn_norm.weight"], eps)           # :101
        # HGRNBitAttention.forward (mmfreelm/layers/hgrn_bit.py)
        i, f = bl("attn.i_proj", x), bl("attn.f_proj", x)            # :110-111
        f = torch.sigmoid(f)                                         # :113
        if cfg["use_lower_bound"] and li > 0:                        # :115-116 (layer_idx > 0)
            f = lbs[li] + (1 - lbs[li]) * f
        i = i * (1 - f) / (1 + torch.exp(-i))                        # swiglu(i, 1 - f), :117; activations.py:117
        hs, state = [], torch.zeros_like(i[:, 0])
        for t in range(i.shape[1]):                                  # fused_recurrent_hgrn, :125
            state = f[:, t] * state + i[:, t]                        # recurrent_fuse.py:59
            hs.append(state)
        o = torch.stack(hs, 1)
        g = bl("attn.g_proj", x)
        # g_norm = FusedRMSNormSwishGate(eps = rms_norm_eps, modeling :79): (fused_norm_gate.py:114-128)
        o = ref_rmsnorm(g, T[p + "attn.g_norm.weight"], eps) * o * torch.sigmoid(o)   # hgrn_bit.py:139
        o = bl("attn.o_proj", o)                                     # :140
        h = o + residual                                             # mlp_norm(h, residual, True), :110
        x = ref_rmsnorm(h, T[p + "mlp_norm.weight"], eps)
        gate, y = bl("mlp.gate_proj", x).chunk(2, -1)                # HGRNBitMLP.forward :59-60
        z = gate * y / (1 + torch.exp(-gate))                        # swiglu(gate, y), :61 (hidden_act unused)
        h = h + bl("mlp.down_proj", z)                               # :61, :112
    h = ref_rmsnorm(h, T["model.norm.weight"], eps)                  # :265
    return ref_fused_bitlinear(h, T["lm_head.weight"], T["lm_head.norm.weight"])  # :389


REF_SEED = 1234


@pytest.mark.parametrize("act", ["swish", "gelu"])
def test_reference_forward_equals_float_model(tmp_path, act):
    """A random-init reference-architecture model of hidden 64 (2 layers, lower bound on,
    reference init): ternac's float model (per-token mode, reference conventions) gives the
    logits of the re-stated reference equations above to float rounding. Compared in
    float64, where no int8 or trit rounding can flip between the two (a flip would move a
    logit by ~1e-3); float32 is checked more loosely. ``hidden_act: gelu`` gives the same
    logits (the reference's forward never calls act_fn)."""
    print(f"seed {REF_SEED}")
    cfg = hf_config(hidden_size=64, vocab_size=48, num_hidden_layers=2, hidden_act=act)
    write_hgrn(tmp_path, cfg, seed=REF_SEED, dtype=torch.float32)
    model = load_hf_checkpoint(tmp_path).double()
    assert model.config.conventions == REFERENCE_CONVENTIONS and model.config.intermediate_size == 256
    T = {k: v.double() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 48, (2, 24), generator=torch.Generator().manual_seed(REF_SEED))
    with torch.no_grad():
        ours = model(ids)[0]
        ref = ref_forward(T, cfg, ids)
    err = float((ours - ref).abs().max() / ref.abs().max())
    print(f"hidden 64, float64: max |ternac - reference| / max|logit| = {err:.3g}")
    assert err < 1e-12
    # the test can fail: the same weights under ternac's conventions (mean|W| + 1e-5, BitLinear
    # eps 1e-8) differ from the reference far beyond float rounding
    sd = model.state_dict()
    other = MatMulFreeLM(LMConfig(**{**model.config.__dict__, "conventions": TERNAC_CONVENTIONS})).double()
    other.load_state_dict(sd)
    with torch.no_grad():
        err_t = float((other.eval()(ids)[0] - ref).abs().max() / ref.abs().max())
    print(f"same weights, ternac conventions: {err_t:.3g}")
    assert err_t > 1e-5
    # float32: equal but for float rounding and the rare int8 flip it can cause
    m32 = load_hf_checkpoint(tmp_path)
    T32 = {k: v for k, v in m32.state_dict().items()}
    with torch.no_grad():
        d32 = (m32(ids)[0].double() - ref_forward(T32, cfg, ids).double()).abs()
    print(f"float32: max rel {float(d32.max() / ref.abs().max()):.3g}, mean rel "
          f"{float(d32.mean() / ref.abs().max()):.3g}")
    assert float(d32.mean() / ref.abs().max()) < 1e-4


def test_gelu_is_accepted_and_changes_nothing(tmp_path):
    write_hgrn(tmp_path / "swish", hf_config(hidden_act="swish"), seed=3)
    write_hgrn(tmp_path / "gelu", hf_config(hidden_act="gelu"), seed=3)
    ids = torch.randint(0, 32, (1, 11), generator=torch.Generator().manual_seed(3))
    a = load_hf_checkpoint(tmp_path / "swish")(ids)[0]
    b = load_hf_checkpoint(tmp_path / "gelu")(ids)[0]
    assert torch.equal(a, b)
    bad = tmp_path / "bad"
    write_hgrn(bad, hf_config(), seed=3)
    (bad / "config.json").write_text(json.dumps(hf_config(hidden_act="gleu")))
    refused(load_hf_checkpoint, bad, match="hidden_act 'gleu'")


def test_reference_rounding_rules():
    # ties away from zero (libdevice __nv_roundf), exact near 0.5
    v = torch.tensor([0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 2.4999998])
    assert round_half_away(v).tolist() == [1.0, -1.0, 2.0, -3.0, 0.0, -0.0, 2.0]
    x = torch.tensor([[127.0, 63.5, -63.5, 0.25]])
    assert fake_quant_per_token_reference(x).tolist() == [[127.0, 64.0, -64.0, 0.0]]
    assert CONVENTIONS[REFERENCE_CONVENTIONS].bitlinear_norm_eps == 1e-6
    assert CONVENTIONS[TERNAC_CONVENTIONS].bitlinear_norm_eps == 1e-8
    # the weight-scale rules differ exactly where mean|W| is near eps
    w = torch.full((4, 4), 2e-6)
    assert CONVENTIONS[REFERENCE_CONVENTIONS].ternarize(w)[1] == pytest.approx(1e-5)
    assert CONVENTIONS[TERNAC_CONVENTIONS].ternarize(w)[1] == pytest.approx(1.2e-5)


def test_ternac_conventions_round_trip_through_hf_layout(tmp_path):
    """A folder ternac writes in the HF layout (to_hf config + its scales) keeps its conventions."""
    torch.manual_seed(2)
    cfg = LMConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, intermediate_size=24)
    model = MatMulFreeLM(cfg)
    calibrate(model, torch.randint(0, 20, (600,)), n_batches=1, batch_size=2, seq_len=16)
    hf = cfg.to_hf()
    assert hf["ternac_conventions"] == TERNAC_CONVENTIONS
    (tmp_path / "config.json").write_text(json.dumps(hf))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    m2 = load_hf_checkpoint(tmp_path)
    assert m2.config == cfg and m2.calibrated
    ids = torch.randint(0, 20, (1, 9))
    assert torch.equal(model.eval().set_quant("static")(ids)[0], m2.set_quant("static")(ids)[0])
    # the same folder without the key: its scales say ternac wrote it, its conventions are unknown
    del hf["ternac_conventions"]
    (tmp_path / "config.json").write_text(json.dumps(hf))
    refused(load_hf_checkpoint, tmp_path, match="no ternac_conventions")
    hf["ternac_conventions"] = "mine"
    (tmp_path / "config.json").write_text(json.dumps(hf))
    refused(load_hf_checkpoint, tmp_path, match="conventions 'mine'")


def test_tied_word_embeddings(tmp_path):
    cfg = hf_config(use_lower_bound=False, tie_word_embeddings=True)
    t = write_hgrn(tmp_path / "tied", cfg, drop=("lm_head.weight",))
    m = load_hf_checkpoint(tmp_path / "tied")
    assert torch.equal(m.lm_head.weight, t["model.embeddings.weight"].float())
    # a tied checkpoint that also stores a different lm_head is ambiguous
    write_hgrn(tmp_path / "both", cfg)
    refused(load_hf_checkpoint, tmp_path / "both", match="differs from model.embeddings.weight")
    # not tied and no lm_head
    write_hgrn(tmp_path / "none", hf_config(use_lower_bound=False), drop=("lm_head.weight",))
    refused(load_hf_checkpoint, tmp_path / "none", match="no 'lm_head.weight'")


def test_hgrn_too_big_for_the_board(tmp_path):
    cfg = hf_config(hidden_size=192, num_hidden_layers=3, intermediate_size=384, vocab_size=65,
                    use_lower_bound=False)
    n = 3 * (4 * 192 * 192 + 3 * 192 * 384) + 65 * 192
    write_hgrn(tmp_path, cfg, dtype=torch.bfloat16)
    msg = refused(load_hf_checkpoint, tmp_path, board="up5k")
    assert f"{n:,}" in msg and "524,288" in msg
    # it fits the ECP5's EBR
    assert load_hf_checkpoint(tmp_path, board="ecp5-85f").n_ternary == n


def test_check_fits():
    check_fits(524_288, "up5k")
    with pytest.raises(ValueError, match=r"524,289 .*524,288"):
        check_fits(524_289, "up5k")
    with pytest.raises(CheckpointImportError, match="unknown board 'nope'"):
        check_fits(1, "nope")
    assert BOARD_CAPACITY_TRITS["up5k-t3"][0] == 655_360


# Config changes that the reference cannot run or that ternac cannot honour: (kw, message part).
HGRN_REFUSED = [
    (dict(attn_mode="chunk"), "attn_mode 'chunk'"),
    (dict(use_short_conv=True), "use_short_conv"),
    (dict(use_short_conv="no"), "use_short_conv must be true or false"),
    (dict(use_lower_bound=True, expand_ratio=2), "use_lower_bound with expand_ratio 2"),
    (dict(num_heads=3), "num_heads 3"),
    (dict(model_type=None), "model_type None"),
    (dict(quantization_config={"quant_method": "bitnet"}), "quantization_config"),
    (dict(rope_theta=10000.0), "key 'rope_theta'"),
    (dict(rms_norm_eps=0), "rms_norm_eps"),
    (dict(pruned_heads={"0": [1]}), "pruned_heads"),
]


@pytest.mark.parametrize("kw,part", HGRN_REFUSED, ids=[p for _, p in HGRN_REFUSED])
def test_hgrn_config_refusals(tmp_path, kw, part):
    write_hgrn(tmp_path, hf_config(use_lower_bound=False))
    (tmp_path / "config.json").write_text(json.dumps(hf_config(**{"use_lower_bound": False, **kw})))
    refused(load_hf_checkpoint, tmp_path, match=part)


def test_hgrn_errors(tmp_path):
    good = tmp_path / "good"
    write_hgrn(good, hf_config(use_lower_bound=False))
    # corrupt safetensors
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text((good / "config.json").read_text())
    data = (good / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:len(data) // 2])
    refused(load_hf_checkpoint, bad, match="not a readable safetensors file")
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    refused(load_hf_checkpoint, bad, match="not a readable safetensors file")
    # missing pieces
    refused(load_hf_checkpoint, tmp_path / "nothing", match="no config.json")
    (bad / "config.json").write_text("{not json")
    refused(load_hf_checkpoint, bad, match="not valid JSON")
    miss = tmp_path / "missing"
    write_hgrn(miss, hf_config(use_lower_bound=False), drop=("model.layers.1.attn.g_norm.weight",))
    refused(load_hf_checkpoint, miss, match="missing tensor 'model.layers.1.attn.g_norm.weight'")
    extra = tmp_path / "extra"
    write_hgrn(extra, hf_config(use_lower_bound=False), extra={"model.layers.0.attn.h_conv1d.weight": torch.zeros(3)})
    refused(load_hf_checkpoint, extra, match="unexpected tensor")
    shape = tmp_path / "shape"
    write_hgrn(shape, hf_config(use_lower_bound=False))
    (shape / "config.json").write_text(json.dumps(hf_config(use_lower_bound=False, intermediate_size=24)))
    refused(load_hf_checkpoint, shape, match="expected")
    nan = tmp_path / "nan"
    w = torch.full((32, 16), float("nan"))
    write_hgrn(nan, hf_config(use_lower_bound=False), extra={"lm_head.weight": w})
    refused(load_hf_checkpoint, nan, match="NaN")
    ints = tmp_path / "ints"
    write_hgrn(ints, hf_config(use_lower_bound=False), extra={"lm_head.weight": torch.zeros(32, 16, dtype=torch.int8)})
    refused(load_hf_checkpoint, ints, match="floating point")


def test_sharded_checkpoint(tmp_path):
    tensors = write_hgrn(tmp_path, hf_config(use_lower_bound=False), dtype=torch.float32)
    (tmp_path / "model.safetensors").unlink()
    names = sorted(tensors)
    half = len(names) // 2
    parts = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    wm = {}
    for f, ks in parts.items():
        save_file({k: tensors[k] for k in ks}, str(tmp_path / f))
        wm.update({k: f for k in ks})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    model = load_hf_checkpoint(tmp_path)
    assert torch.equal(model.state_dict()["lm_head.weight"], tensors["lm_head.weight"])


# --- BitNet b1.58 -------------------------------------------------------------------------

def bitnet_config(quant=None, **kw) -> dict:
    """config.json of transformers' BitNetConfig (small sizes) with a quantization_config;
    ``quant=False`` leaves it out."""
    cfg = {"model_type": "bitnet", "architectures": ["BitNetForCausalLM"], "hidden_size": 32,
           "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 40, "hidden_act": "relu2",
           "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    if quant is not False:
        cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                      "quantization_mode": "offline", **(quant or {})}
    cfg.update(kw)
    return cfg


def bitnet_shapes(cfg):
    d, inter, kvd = cfg["hidden_size"], cfg["intermediate_size"], \
        cfg["num_key_value_heads"] * cfg["hidden_size"] // cfg["num_attention_heads"]
    return {"self_attn.q_proj": (d, d), "self_attn.k_proj": (kvd, d), "self_attn.v_proj": (kvd, d),
            "self_attn.o_proj": (d, d), "mlp.gate_proj": (inter, d), "mlp.up_proj": (inter, d),
            "mlp.down_proj": (d, inter)}


def pack_hf_bitnet(t: torch.Tensor) -> torch.Tensor:
    """transformers.integrations.bitnet packing (written from its documented layout)."""
    n, k = t.shape
    rows = (n + 3) // 4
    u = torch.zeros(rows * 4, k, dtype=torch.uint8)
    u[:n] = (t + 1).to(torch.uint8)
    out = torch.zeros(rows, k, dtype=torch.uint8)
    for i in range(4):
        out |= u[i * rows:(i + 1) * rows] << (2 * i)
    return out


def write_bitnet(folder, cfg, layout, seed=0):
    """Write a BitNet checkpoint; returns {weight name: (trits, gamma the layout means)}.

    layout: "packed" (uint8 + weight_scale), "trits" (bf16 trits + weight_scale), "float"
    (bf16 latent weights, no weight_scale); the weight_scale holds gamma for autobitlinear
    and 1/gamma for bitlinear, as transformers' classes use it.
    """
    g = torch.Generator().manual_seed(seed)
    lc = cfg.get("quantization_config", {}).get("linear_class", "bitlinear")
    tensors, want = {}, {}
    d, v = cfg["hidden_size"], cfg["vocab_size"]
    tensors["model.embed_tokens.weight"] = torch.randn(v, d, generator=g).to(torch.bfloat16)
    tensors["model.norm.weight"] = torch.ones(d, dtype=torch.bfloat16)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        tensors[p + "post_attention_layernorm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        tensors[p + "self_attn.attn_sub_norm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        tensors[p + "mlp.ffn_sub_norm.weight"] = torch.ones(cfg["intermediate_size"], dtype=torch.bfloat16)
        for name, shape in bitnet_shapes(cfg).items():
            w = torch.randn(*shape, generator=g) * 0.02
            key = p + name + ".weight"
            if layout == "float":
                tensors[key] = w.to(torch.bfloat16)
                wf = tensors[key].float()
                k = 1.0 / wf.abs().mean().clamp(min=1e-5)
                want[key] = (torch.clamp(torch.round(wf * k), -1, 1).to(torch.int8), 1.0 / float(k))
                continue
            t, gamma = numerics.absmean_ternarize(w)
            ws = torch.tensor([gamma if lc == "autobitlinear" else 1 / gamma], dtype=torch.bfloat16)
            tensors[p + name + ".weight_scale"] = ws
            tensors[key] = pack_hf_bitnet(t) if layout == "packed" else t.to(torch.bfloat16)
            stored = float(ws.double())
            want[key] = (t, stored if lc == "autobitlinear" else 1.0 / stored)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "model.safetensors"))
    return want


BITNET_LAYOUTS = [
    ("autobitlinear", "offline", "packed"),   # microsoft/bitnet-b1.58-2B-4T's layout
    ("bitlinear", "offline", "packed"),
    ("autobitlinear", "offline", "trits"),    # unpacked trits + weight_scale
    ("autobitlinear", "online", "float"),
]


@pytest.mark.parametrize("lc,qm,layout", BITNET_LAYOUTS, ids=["-".join(x) for x in BITNET_LAYOUTS])
def test_load_bitnet_layouts(tmp_path, lc, qm, layout):
    cfg = bitnet_config({"linear_class": lc, "quantization_mode": qm})
    want = write_bitnet(tmp_path, cfg, layout)
    imp = load_bitnet_trits(tmp_path, allow_unsupported=True)
    assert imp.kind == "bitnet" and set(imp.layers) == set(want) and not imp.runnable
    assert imp.math["linear_class"] == lc and imp.math["quantization_mode"] == qm
    assert imp.math["hidden_act"] == "relu2" and imp.math["tie_word_embeddings"] is True
    assert "model.layers.1.self_attn.q_proj" in imp.unsupported and len(imp.unsupported) == 8
    n = 2 * (32 * 32 * 2 + 16 * 32 * 2 + 3 * 32 * 48)
    assert imp.n_trits == n == sum(t.numel() for t, _ in imp.layers.values())
    assert imp.other_params == 40 * 32 + 32 + 2 * (3 * 32 + 48)
    for k, (t, gamma) in want.items():
        assert torch.equal(imp.layers[k][0], t), k
        assert imp.layers[k][0].dtype == torch.int8
        assert imp.layers[k][1] == pytest.approx(gamma, rel=1e-6), k
        # the scale is a weight's, not its inverse: mean|W| of N(0, 0.02^2) is ~0.016
        assert 0.005 < imp.layers[k][1] < 0.05, (k, imp.layers[k][1])
    assert inspect_checkpoint(tmp_path, allow_unsupported=True).n_trits == n


def test_autobitlinear_is_not_scaled_as_bitlinear(tmp_path):
    """The same packed file read as autobitlinear and as bitlinear: gammas are ws and 1/ws."""
    cfg = bitnet_config({"linear_class": "autobitlinear"})
    write_bitnet(tmp_path, cfg, "packed")
    a = load_bitnet_trits(tmp_path, allow_unsupported=True)
    cfg["quantization_config"]["linear_class"] = "bitlinear"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    b = load_bitnet_trits(tmp_path, allow_unsupported=True)
    for k in a.layers:
        assert torch.equal(a.layers[k][0], b.layers[k][0])
        assert a.layers[k][1] * b.layers[k][1] == pytest.approx(1.0)


def test_bitnet_attention_is_refused(tmp_path):
    cfg = bitnet_config()
    write_bitnet(tmp_path, cfg, "packed")
    msg = refused(load_bitnet_trits, tmp_path)
    for part in ("attention", "q_proj", "k_proj", "v_proj", "o_proj", "2 layers", "6,144"):
        assert part in msg, (part, msg)
    refused(inspect_checkpoint, tmp_path, match="q_proj")


def test_unpack_hf_bitnet_documented_example():
    # The example in transformers' unpack_weights docstring.
    packed = torch.tensor([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], dtype=torch.uint8)
    t = unpack_hf_bitnet(packed, 8)
    assert t.tolist() == [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]]
    with pytest.raises(CheckpointImportError, match="value 3"):
        unpack_hf_bitnet(torch.tensor([[3]], dtype=torch.uint8), 4)
    with pytest.raises(CheckpointImportError, match="divisible by 4"):
        unpack_hf_bitnet(packed, 7)


def _edit(folder, fn):
    cfg = json.loads((folder / "config.json").read_text())
    fn(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _qc(**kw):
    return lambda cfg: cfg["quantization_config"].update(kw)


# BitNet checkpoints that cannot be imported without guessing: (name, layout written,
# config edit, message part). All with allow_unsupported=True, so the refusal is the one named.
BITNET_REFUSED = [
    ("unknown quantization_mode", "packed", _qc(quantization_mode="dynamic"),
     "quantization_mode 'dynamic'"),
    ("unknown linear_class", "packed", _qc(linear_class="ternarylinear"), "linear_class 'ternarylinear'"),
    ("other quant_method", "packed", _qc(quant_method="gptq"), "quant_method 'gptq'"),
    ("no quantization_config", "trits", lambda c: c.pop("quantization_config"), "no quantization_config"),
    ("float weights, no quantization_config", "float", lambda c: c.pop("quantization_config"),
     "no quantization_config"),
    ("bitlinear with unpacked trits", "trits", _qc(linear_class="bitlinear"), "stores packed uint8"),
    ("offline with float latent weights", "float", _qc(), "not ternary"),
    ("online with packed weights", "packed", _qc(quantization_mode="online"), "no weight_scale"),
    ("online with trits + weight_scale", "trits", _qc(quantization_mode="online"), "exists"),
    ("mlp left unquantized", "packed", _qc(modules_to_not_convert=["lm_head", "mlp"]),
     "modules_to_not_convert entry 'mlp'"),
    ("regex skipping layer 1", "packed", _qc(modules_to_not_convert=["model.layers.1.*"]),
     "model.layers.1.self_attn.q_proj"),
    ("unknown hidden_act", "packed", lambda c: c.update(hidden_act="relu3"), "hidden_act 'relu3'"),
    ("use_rms_norm not a bool", "packed", _qc(use_rms_norm="yes"), "use_rms_norm"),
    ("intermediate not divisible by 4", "packed", lambda c: c.update(intermediate_size=50),
     "divisible by 4"),
    ("gpt2", "packed", lambda c: c.update(model_type="gpt2"), "model_type 'gpt2'"),
]


@pytest.mark.parametrize("name,layout,edit,part", BITNET_REFUSED, ids=[b[0] for b in BITNET_REFUSED])
def test_bitnet_refusals(tmp_path, name, layout, edit, part):
    write_bitnet(tmp_path, bitnet_config(), layout)
    _edit(tmp_path, edit)
    refused(load_bitnet_trits, tmp_path, match=part, allow_unsupported=True)


def test_bitnet_scale_and_value_errors(tmp_path):
    cfg = bitnet_config()
    write_bitnet(tmp_path, cfg, "packed")
    from safetensors.torch import load_file

    good = load_file(str(tmp_path / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight_scale"
    for bad, part in ((torch.tensor([0.0]), "one positive finite"), (torch.tensor([1.0, 2.0]), "one positive"),
                      (torch.tensor([float("nan")]), "one positive finite"),
                      (torch.tensor([3], dtype=torch.int32), "floating-point")):
        t = dict(good)
        t[name] = bad
        save_file(t, str(tmp_path / "model.safetensors"))
        refused(load_bitnet_trits, tmp_path, match=part, allow_unsupported=True)
    t = dict(good)
    del t[name]
    save_file(t, str(tmp_path / "model.safetensors"))
    refused(load_bitnet_trits, tmp_path, match=f"missing tensor {name!r}", allow_unsupported=True)
    t = dict(good)
    t["model.layers.0.mlp.up_proj.weight"] = torch.full_like(good["model.layers.0.mlp.up_proj.weight"], 255)
    save_file(t, str(tmp_path / "model.safetensors"))
    refused(load_bitnet_trits, tmp_path, match="value 3", allow_unsupported=True)


def test_bitnet_too_big_and_errors(tmp_path):
    big = bitnet_config(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "config.json").write_text(json.dumps(big))
    n = 2 * (4 * 256 * 256 + 3 * 256 * 512)
    # fails from the config alone, before any weight is read (there is no weight file)
    msg = refused(load_bitnet_trits, tmp_path / "big", board="up5k", allow_unsupported=True)
    assert f"{n:,}" in msg and "524,288" in msg
    ok = tmp_path / "ok"
    write_bitnet(ok, bitnet_config(), "packed")
    data = (ok / "model.safetensors").read_bytes()
    (ok / "model.safetensors").write_bytes(data[:100])
    refused(load_bitnet_trits, ok, match="not a readable safetensors file", allow_unsupported=True)
    nosize = tmp_path / "nosize"
    nosize.mkdir()
    (nosize / "config.json").write_text(json.dumps({"model_type": "bitnet", "hidden_size": 8}))
    refused(load_bitnet_trits, nosize, match="intermediate_size")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    refused(inspect_checkpoint, other, match="neither hgrn_bit")

