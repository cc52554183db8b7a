"""ternac.baselines: the measured CPU/GPU baselines and the literature anchors.

Fast tests: a tiny CPU measurement (every figure positive, keyed with units and kinds), the
CUDA graph evaluator checked element for element against the golden models (run here on
the CPU, and shown to catch a changed weight), the committed GPU and CPU results, and the
sourced literature table.
"""
import dataclasses
import datetime
import json
import math

import pytest
import torch

from ternac import baselines as bl
from ternac.errors import InputError

WORKLOADS = list(bl.WORKLOADS)
RATE = {"token": "tokens_per_s", "inference": "inferences_per_s"}


@pytest.fixture(scope="module")
def tiny_cpu():
    return bl.measure_cpu(batches=(1, 3), repeats=2, block_s=0.0, warmup=1, max_steps=2,
                          threads=1, calib_chars=32, command="pytest tiny")


def test_measure_cpu_tiny_figures_and_kinds(tiny_cpu):
    r = tiny_cpu
    assert r["run"] == "cpu" and r["device"] and r["command"] == "pytest tiny"
    datetime.datetime.fromisoformat(r["date"])
    assert r["environment"]["torch"] == torch.__version__
    assert r["settings"]["threads"] == [1]
    assert set(r["workloads"]) == set(WORKLOADS)
    for name, w in r["workloads"].items():
        rk = RATE[w["unit"]]
        assert [p["batch"] for p in w["points"]] == [1, 3], name
        for p in w["points"]:
            assert p[rk] > 0 and p["ms_per_step"] > 0 and p["threads"] == 1
            assert len(p["block_ms"]) == 2 and p["steps_per_block"] >= 1
            # the rate is the batch over the median step time
            assert math.isclose(p[rk], p["batch"] / (p["ms_per_step"] * 1e-3), rel_tol=1e-3)
            assert "W" not in p            # no CPU power counter: no energy figure
        assert w["batch1"]["batch"] == 1
        assert w["best"][rk] == max(p[rk] for p in w["points"])
    for k in ("tokens_per_s", "inferences_per_s", "ms_per_step", "block_ms"):
        assert r["kinds"][k] == "measured"
    for k, v in r["summary"].items():
        if not k.endswith(("_batch", "_threads")):
            assert r["kinds"][k] in ("measured", "derived"), k
    assert r["summary"]["lm_int_batch1_tokens_per_s"] > 0
    assert r["models"]["lm"]["n_ternary"] == 426_112
    assert r["models"]["digits"]["n_ternary"] == 64 * 128 + 128 * 64 + 64 * 10


def test_measure_cpu_rejects_bad_input():
    with pytest.raises(InputError):
        bl.measure_cpu(workloads=("no_such_model",))
    with pytest.raises(InputError):
        bl.measure_cpu(workloads=("digits_int",), batches=(0,))
    with pytest.raises(InputError):
        bl.measure_cpu(workloads=("digits_int",), threads=0)


@pytest.fixture(scope="module")
def models():
    objs, _ = bl._load_models(WORKLOADS, calib_chars=32)
    return objs


def test_cuda_graph_evaluator_equals_golden(models):
    """The evaluator the GPU run uses (float32-GEMM MATVECs over the golden graphs), run
    here on the CPU: every logit and state element equals IntLM.step / mlp.int_forward."""
    dev = torch.device("cpu")
    gpu = bl._gpu_objects(WORKLOADS, models, dev)
    check = bl._gpu_check(models, gpu, dev)
    assert check["lm_int"]["equal"] and check["lm_int"]["elements_compared"] > 1000
    assert check["digits_int"]["equal"] and check["digits_int"]["elements_compared"] == 2560


def test_cuda_graph_check_catches_a_changed_trit(models):
    dev = torch.device("cpu")
    gpu = bl._gpu_objects(["lm_int"], models, dev)
    graph = gpu["lm_int_step"].graph
    name = next(iter(graph.w))
    graph.w[name][0, 0] = -graph.w[name][0, 0] if graph.w[name][0, 0] != 0 else 1.0
    with pytest.raises(RuntimeError, match="differs from IntLM.step"):
        bl._gpu_check(models, gpu, dev)


def test_cuda_graph_refuses_inexact_gemm(models):
    from ternac.golden.mlp import mlp_graph
    g = mlp_graph(models["digits_layers"])
    name = next(iter(g.weights))
    w = g.weights[name]
    import dataclasses
    g.weights[name] = dataclasses.replace(w, trits=torch.zeros(w.trits.shape[0], 1 << 18, dtype=torch.int8))
    with pytest.raises(ValueError, match="exact float32 GEMM"):
        bl._CudaGraph(g, "cpu")


def test_power_sampler_window():
    ps = bl.PowerSampler("0")
    ps.samples = [(0.5, 100.0, 10.0, 99.0), (1.5, 200.0, 50.0, 201.0), (2.5, 300.0, None, None)]
    w = ps.window(1.0, 3.0)
    assert w["W"] == 250.0 and w["power_samples"] == 2 and w["gpu_util_pct"] == 50.0
    assert w["W_instant"] == 201.0 and w["W_sd"] == 50.0
    assert ps.window(5.0, 6.0)["W"] is None


def test_committed_gpu_result():
    r = bl.load_result(bl.GPU_RESULT)
    assert r["run"] == "gpu" and "H200" in r["device"]
    assert r["command"].startswith("python -m ternac.baselines gpu")
    datetime.datetime.fromisoformat(r["date"])
    assert r["environment"]["torch"] and r["environment"]["driver"]
    assert r["idle_W"] > 0
    assert all(c["equal"] for c in r["gpu_check"].values())
    assert set(r["workloads"]) == set(WORKLOADS)
    for name, w in r["workloads"].items():
        rk = RATE[w["unit"]]
        e = "uJ_per_" + w["unit"]
        for which in ("batch1", "best"):
            p = w[which]
            assert p[rk] > 0 and p["W"] > 0 and p["power_samples"] >= 5, (name, which)
            # derived figures follow from the measured ones
            assert math.isclose(p[e], p["W"] / p[rk] * 1e6, rel_tol=1e-3)
            assert math.isclose(p["pJ_per_trit_mac"],
                                p["W"] / (p[rk] * w["trits_per_" + w["unit"]]) * 1e12, rel_tol=1e-3)
        assert w["batch1"]["batch"] == 1 and w["best"][rk] >= w["batch1"][rk]
    for k in ("W", "tokens_per_s", "idle_W"):
        assert r["kinds"][k] == "measured"
    for k in ("uJ_per_token", "mJ_per_token", "pJ_per_trit_mac", "W_above_idle"):
        assert r["kinds"][k] == "derived"


def test_committed_cpu_result():
    r = bl.load_result(bl.CPU_RESULT)
    assert r["run"] == "cpu" and r["command"].startswith("python -m ternac.baselines cpu")
    for w in r["workloads"].values():
        assert w["batch1"][RATE[w["unit"]]] > 0


def test_load_result_rejects_a_file_without_kinds(tmp_path):
    r = json.loads(bl.GPU_RESULT.read_text())
    r["kinds"].pop("W")
    p = tmp_path / "g.json"
    p.write_text(json.dumps(r))
    with pytest.raises(InputError, match="has no kind"):
        bl.load_result(p)


def test_literature_every_entry_sourced():
    entries = bl.load_literature()
    ids = {e["id"] for e in entries}
    for want in ("matmulfree-fpga-zhu2024", "tereffic-onchip", "tellme-v1", "trinity-artix7",
                 "marlann-up5k", "gap9-tinyllama-dequino2025", "esp32s3-llama2c-260k",
                 "rp2350-llama2c-260k"):
        assert want in ids
    for e in entries:
        assert e["kind"] == "literature"
        assert all(e["source"][k] for k in ("title", "venue", "year", "url")), e["id"]
        assert e["source"]["url"].startswith("https://")
        assert e["verified"], e["id"]
        if not e["comparable"]:
            assert e["comparable_reason"], e["id"]
        if e.get("tokens_per_s") and e.get("W") and e.get("uJ_per_token"):
            assert math.isclose(e["uJ_per_token"], e["W"] / e["tokens_per_s"] * 1e6, rel_tol=0.01)
    m = next(e for e in entries if e["id"] == "marlann-up5k")
    assert m["rail_mW"] == {"idle_configured": 3.53, "longrun_12MHz": 10.58, "longrun_20MHz": 16.99}
    assert math.isclose(m["pJ_per_weight_op"], 10.58e-3 / 154e6 * 1e12, rel_tol=0.01)
    g = next(e for e in entries if e["id"] == "gap9-tinyllama-dequino2025")
    assert "NOT VERIFIED" in g["verified"] and math.isclose(g["uJ_per_token"], 46.76, rel_tol=0.01)


def test_load_literature_rejects_an_unsourced_entry(tmp_path):
    data = json.loads(bl.LITERATURE.read_text())
    del data["entries"][0]["source"]["url"]
    p = tmp_path / "lit.json"
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match="needs a source"):
        bl.load_literature(p)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_main_gpu_without_cuda_is_one_sentence(capsys, tmp_path):
    assert bl.main(["gpu", "--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ternac: error: no CUDA device") and "\n" not in err
    assert not (tmp_path / "g.json").exists()
