"""Checkpoint import: MatMul-free LM (HGRN-Bit) and BitNet b1.58 in the Hugging Face layout.

Every checkpoint here is generated in a tmp folder in exactly the reference layout
(config.json + model.safetensors, the reference's tensor names and config keys).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ternac.golden import numerics
from ternac.golden.lm import LMConfig, MatMulFreeLM, calibrate, count_ternary_weights, ternary_layers
from ternac.golden.lm_import import (BOARD_CAPACITY_TRITS, check_fits, inspect_checkpoint,
                              load_bitnet_trits, load_hf_checkpoint, unpack_hf_bitnet)

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
    """Write a reference-layout MatMul-free checkpoint; returns the tensors written."""
    torch.manual_seed(seed)
    model = MatMulFreeLM(LMConfig.from_hf(cfg))
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


def test_reference_names_are_the_models_names():
    names = set(MatMulFreeLM(LMConfig.from_hf(hf_config())).state_dict())
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


def test_hgrn_trits_are_absmean(tmp_path):
    write_hgrn(tmp_path, hf_config(use_lower_bound=False, intermediate_size=24), dtype=torch.float32)
    imp = inspect_checkpoint(tmp_path)
    model = load_hf_checkpoint(tmp_path)
    assert imp.kind == "hgrn_bit" and imp.n_trits == model.n_ternary
    assert set(imp.layers) == set(ternary_layers(model))
    t, gamma = imp.layers["model.layers.1.attn.o_proj"]
    t2, g2 = numerics.absmean_ternarize(model.model.layers[1].attn.o_proj.weight)
    assert torch.equal(t, t2) and gamma == g2 and t.dtype == torch.int8


def test_hgrn_too_big_for_the_board(tmp_path):
    cfg = hf_config(hidden_size=192, num_hidden_layers=3, intermediate_size=384, vocab_size=65,
                    use_lower_bound=False)
    n = 3 * (4 * 192 * 192 + 3 * 192 * 384) + 65 * 192
    write_hgrn(tmp_path, cfg, dtype=torch.bfloat16)
    with pytest.raises(ValueError) as e:
        load_hf_checkpoint(tmp_path, board="up5k")
    msg = str(e.value)
    assert f"{n:,}" in msg and "524,288" in msg and "\n" not in msg
    # it fits the ECP5's EBR
    assert load_hf_checkpoint(tmp_path, board="ecp5-85f").n_ternary == n


def test_check_fits():
    check_fits(524_288, "up5k")
    with pytest.raises(ValueError, match=r"524,289 .*524,288"):
        check_fits(524_289, "up5k")
    with pytest.raises(ValueError, match="unknown board 'nope'"):
        check_fits(1, "nope")
    assert BOARD_CAPACITY_TRITS["up5k-t3"][0] == 655_360


def test_hgrn_errors(tmp_path):
    good = tmp_path / "good"
    write_hgrn(good, hf_config(use_lower_bound=False))
    # corrupt safetensors
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text((good / "config.json").read_text())
    data = (good / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_hf_checkpoint(bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_hf_checkpoint(bad)
    # missing pieces
    with pytest.raises(ValueError, match="no config.json"):
        load_hf_checkpoint(tmp_path / "nothing")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_hf_checkpoint(bad)
    miss = tmp_path / "missing"
    write_hgrn(miss, hf_config(use_lower_bound=False), drop=("model.layers.1.attn.g_norm.weight",))
    with pytest.raises(ValueError, match="missing tensor 'model.layers.1.attn.g_norm.weight'"):
        load_hf_checkpoint(miss)
    extra = tmp_path / "extra"
    write_hgrn(extra, hf_config(use_lower_bound=False), extra={"model.layers.0.attn.h_conv1d.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="unexpected tensor"):
        load_hf_checkpoint(extra)
    shape = tmp_path / "shape"
    write_hgrn(shape, hf_config(use_lower_bound=False))
    (shape / "config.json").write_text(json.dumps(hf_config(use_lower_bound=False, intermediate_size=24)))
    with pytest.raises(ValueError, match="has shape .* expected"):
        load_hf_checkpoint(shape)
    conv = tmp_path / "conv"
    write_hgrn(conv, hf_config(use_lower_bound=False))
    (conv / "config.json").write_text(json.dumps(hf_config(use_short_conv=True)))
    with pytest.raises(ValueError, match="use_short_conv"):
        load_hf_checkpoint(conv)
    nolm = tmp_path / "nolm"
    write_hgrn(nolm, hf_config(use_lower_bound=False), drop=("lm_head.weight",))
    with pytest.raises(ValueError, match="lm_head.weight"):
        load_hf_checkpoint(nolm)
    nan = tmp_path / "nan"
    w = torch.full((32, 16), float("nan"))
    write_hgrn(nan, hf_config(use_lower_bound=False), extra={"lm_head.weight": w})
    with pytest.raises(ValueError, match="NaN"):
        load_hf_checkpoint(nan)


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

def bitnet_config(**kw) -> dict:
    cfg = {"model_type": "bitnet", "architectures": ["BitNetForCausalLM"], "hidden_size": 32,
           "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 40, "hidden_act": "relu2",
           "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
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


def write_bitnet(folder, cfg, packed=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    tensors, trits = {}, {}
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
            if packed:
                t, gamma = numerics.absmean_ternarize(w)
                tensors[p + name + ".weight"] = pack_hf_bitnet(t)
                tensors[p + name + ".weight_scale"] = torch.tensor([1 / gamma], dtype=torch.bfloat16)
                trits[p + name + ".weight"] = (t, float(torch.tensor(1 / gamma, dtype=torch.bfloat16).double().reciprocal()))
            else:
                tensors[p + name + ".weight"] = w.to(torch.bfloat16)
                trits[p + name + ".weight"] = numerics.absmean_ternarize(w.to(torch.bfloat16))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "model.safetensors"))
    return trits


@pytest.mark.parametrize("packed", [False, True])
def test_load_bitnet(tmp_path, packed):
    cfg = bitnet_config()
    want = write_bitnet(tmp_path, cfg, packed=packed)
    imp = load_bitnet_trits(tmp_path)
    assert imp.kind == "bitnet" and set(imp.layers) == set(want)
    n = 2 * (32 * 32 * 2 + 16 * 32 * 2 + 3 * 32 * 48)
    assert imp.n_trits == n == sum(t.numel() for t, _ in imp.layers.values())
    assert imp.other_params == 40 * 32 + 32 + 2 * (3 * 32 + 48)
    for k, (t, gamma) in want.items():
        assert torch.equal(imp.layers[k][0], t), k
        assert imp.layers[k][0].dtype == torch.int8
        assert imp.layers[k][1] == pytest.approx(gamma, rel=1e-6)
    assert inspect_checkpoint(tmp_path).n_trits == n


def test_unpack_hf_bitnet_documented_example():
    # The example in transformers' unpack_weights docstring.
    packed = torch.tensor([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], dtype=torch.uint8)
    t = unpack_hf_bitnet(packed, 8)
    assert t.tolist() == [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]]
    with pytest.raises(ValueError, match="value 3"):
        unpack_hf_bitnet(torch.tensor([[3]], dtype=torch.uint8), 4)


def test_bitnet_too_big_and_errors(tmp_path):
    big = bitnet_config(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "config.json").write_text(json.dumps(big))
    n = 2 * (4 * 256 * 256 + 3 * 256 * 512)
    # fails from the config alone, before any weight is read (there is no weight file)
    with pytest.raises(ValueError) as e:
        load_bitnet_trits(tmp_path / "big", board="up5k")
    assert f"{n:,}" in str(e.value) and "524,288" in str(e.value)
    ok = tmp_path / "ok"
    write_bitnet(ok, bitnet_config())
    data = (ok / "model.safetensors").read_bytes()
    (ok / "model.safetensors").write_bytes(data[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_bitnet_trits(ok)
    nosize = tmp_path / "nosize"
    nosize.mkdir()
    (nosize / "config.json").write_text(json.dumps({"model_type": "bitnet", "hidden_size": 8}))
    with pytest.raises(ValueError, match="intermediate_size"):
        load_bitnet_trits(nosize)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="neither hgrn_bit"):
        inspect_checkpoint(other)
