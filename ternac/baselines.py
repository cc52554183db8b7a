"""Measured baselines: the flagship LM and the digits MLP in PyTorch, on a CPU or a CUDA GPU.

What the accelerator is compared with in the report (issue 10, item 3). Every figure is
timed here, on the machine that runs the call, and labelled by kind (``kinds`` map): the
times, token rates and power readings are ``measured``; energies (W / rate) are
``derived``. The literature anchors (item 4) are data, in ``results/literature.json``,
read and checked by :func:`load_literature`.

Workloads (the same four on every device)
-----------------------------------------
``lm_float``
    The float MatMul-free LM (:mod:`ternac.golden.lm`, ``checkpoints/shakespeare.safetensors``,
    426,112 trits) in its static-quantized evaluation mode (``set_quant("static")``,
    ``eval()``, the mode the integer model is built from), one token a step:
    ``logits, state = model(ids[:, None], state)``, the MLGRU state carried from step to
    step, as a user generating text runs it.
``lm_int``
    The integer golden model :meth:`ternac.golden.lm_int.IntLM.step`, what the accelerator
    computes, one token a step with the state carried. On a CPU it runs unchanged (an
    evaluation of ``IntLM.graph()``; each MATVEC an int64 ``torch.matmul``). It cannot run
    on CUDA as it is: CUDA has no int64 GEMM (``"addmm_cuda" not implemented for 'Long'``)
    and the graph evaluator creates its tensors on the CPU. On a GPU the same graph is
    evaluated node by node with the same golden op functions on CUDA tensors
    (:class:`_CudaGraph`), each MATVEC as a float32 GEMM of the int8 activations by the
    trits, exact because every partial sum is an integer of magnitude <= 127 K < 2^24
    (K <= 384; TF32 off); before timing, its logits and states are compared element for
    element with IntLM.step on the CPU (``gpu_check``) and the run stops at a difference.
``digits_float``
    The float digits MLP (:func:`ternac.golden.mlp.load_float_model`, 64-128-64-10, 17,024
    trits) in eval mode, one batch of images a step.
``digits_int``
    The integer digits model :func:`ternac.golden.mlp.int_forward` (on a GPU its graph
    ``mlp.mlp_graph`` through :class:`_CudaGraph`, checked against int_forward).

Token ids are fixed pseudo-random ids of the vocabulary (``torch.Generator`` seed 0; the
work of a step does not depend on them), images are fixed pseudo-random int8 pixels in
[0, 127]: no corpus or data set is needed for throughput. The integer LM's constants are
calibrated on the first 2,000 characters of the tinyshakespeare training split when the
corpus is readable (as everywhere in ternac); otherwise on 2,000 fixed pseudo-random ids,
which changes the constants but not the work (recorded in ``models.lm.int_calibration``).

Method
------
For each workload and batch B: ``warmup`` steps; one probe step sets ``steps_per_block =
ceil(block_s / t_probe)`` (at most ``max_steps``); ``repeats`` blocks of that many steps
are timed with ``time.perf_counter`` (a CUDA synchronize ends each block); the median
block gives ``ms_per_step`` and ``tokens_per_s = B * steps_per_block / median`` (digits:
``inferences_per_s``). Batch 1 is the user's case; the best batch is the largest rate of
the batches tried. A batch whose probe step takes longer than ``max_step_s`` is recorded
as skipped and no larger batch is tried. On a CPU every batch is measured at each thread
count of ``threads`` (default 1 and torch's default: on a shared machine one thread can be
many times faster than several); ``batch1`` and ``best`` take the fastest.

GPU power: a thread runs ``nvidia-smi --query-gpu=power.draw,utilization.gpu,
power.draw.instant --format=csv,noheader,nounits`` every ``power_interval_s`` (0.1 s) for
the whole run; the samples taken inside a point's timed blocks (after the first
``power_settle_s`` = 1 s, since the driver's ``power.draw`` is a 1-s average on recent
GPUs) give its mean board power ``W`` (and ``W_sd``, ``W_instant``, ``gpu_util_pct``);
``idle_W`` is the mean over 3 s with the CUDA context open and nothing running,
``idle_W_before_cuda`` the reading before the context exists. Energies:
``uJ_per_token = W / tokens_per_s * 1e6`` (whole board), ``uJ_per_token_above_idle`` from
``W - idle_W``, and ``pJ_per_trit_mac`` divides by the trits a token uses. The CPU has no
readable power counter here: CPU points carry no energy.

Run it: ``python -m ternac.baselines cpu --out results/cpu_host.json`` or
``python -m ternac.baselines gpu --out results/gpu_h200.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from ternac.errors import InputError, write_json

__all__ = ["WORKLOADS", "KINDS", "RESULTS_DIR", "GPU_RESULT", "CPU_RESULT", "LITERATURE",
           "measure_cpu", "measure_gpu", "load_result", "load_literature", "PowerSampler",
           "main"]

REPO = Path(__file__).resolve().parent.parent
#: Where measured and literature figures live (committed).
RESULTS_DIR = REPO / "results"
#: The committed GPU baseline (measured on an NVIDIA H200 with :func:`measure_gpu`).
GPU_RESULT = RESULTS_DIR / "gpu_h200.json"
#: The committed CPU reference run (the report re-measures the CPU in its own run).
CPU_RESULT = RESULTS_DIR / "cpu_host.json"
#: The sourced literature anchors.
LITERATURE = RESULTS_DIR / "literature.json"
SCHEMA = "ternac-baselines/1"

#: The workloads, in run order: name -> (model, unit of work, description).
WORKLOADS = {
    "lm_float": ("lm", "token", "float MatMul-free LM, static-quantized eval mode, one token a step, state carried"),
    "lm_int": ("lm", "token", "integer golden LM (IntLM.step, what the accelerator computes), one token a step, state carried"),
    "digits_float": ("digits", "inference", "float digits MLP (TernaryMLP eval), one batch of images a step"),
    "digits_int": ("digits", "inference", "integer digits model (mlp.int_forward)"),
}

#: Kind of every figure a result can hold (DESIGN.md: measured / derived / modelled /
#: literature). Summary keys ``<workload>_<batch1|best>_<key>`` take the kind of ``<key>``.
KINDS = {
    "tokens_per_s": "measured", "inferences_per_s": "measured", "ms_per_step": "measured",
    "median_block_ms": "measured", "block_ms": "measured", "W": "measured",
    "idle_W": "measured", "idle_W_before_cuda": "measured", "W_sd": "measured",
    "W_instant": "measured", "gpu_util_pct": "measured", "power_samples": "measured",
    "W_above_idle": "derived", "uJ_per_token": "derived", "mJ_per_token": "derived",
    "uJ_per_token_above_idle": "derived", "uJ_per_inference": "derived",
    "mJ_per_inference": "derived", "uJ_per_inference_above_idle": "derived",
    "pJ_per_trit_mac": "derived", "pJ_per_trit_mac_above_idle": "derived",
}

_DEFAULT_CPU_BATCHES = (1, 16, 128, 1024)
_DEFAULT_GPU_BATCHES = (1, 64, 1024, 8192, 65536, 262144, 1048576)
#: The largest batch ``python -m ternac.baselines --batches`` takes: the GPU default's.
BATCH_MAX = max(_DEFAULT_GPU_BATCHES)
#: Largest |int8 activation| times the largest fan-in must stay below 2^24 for a float32
#: GEMM to be exact.
_F32_EXACT = 1 << 24


# ---------------------------------------------------------------------------------------
# GPU power sampling
# ---------------------------------------------------------------------------------------

class PowerSampler:
    """Samples a GPU's board power with ``nvidia-smi`` in a background thread.

    Every ``interval_s`` seconds it runs ``nvidia-smi --query-gpu=power.draw,utilization.gpu
    --format=csv,noheader,nounits -i <gpu>`` and stores ``(t, W, util_pct)`` with ``t`` the
    ``time.perf_counter()`` midpoint of the call. Units: W (the driver's ``power.draw``,
    a 1-s average on Ampere and newer), percent.

    Raises
    ------
    RuntimeError on :meth:`start` if nvidia-smi is absent or cannot read the GPU.
    """

    def __init__(self, gpu: str = "0", interval_s: float = 0.1):
        self.gpu = str(gpu)
        self.interval_s = float(interval_s)
        self.samples: list[tuple[float, float, float | None, float | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fields = ["power.draw", "utilization.gpu", "power.draw.instant"]

    def _query(self) -> tuple[float, float | None, float | None]:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(self.fields)}",
                              "--format=csv,noheader,nounits", "-i", self.gpu],
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(f"nvidia-smi failed: {(out.stderr or out.stdout).strip()}")
        vals = [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]

        def num(i):
            try:
                return float(vals[i]) if i < len(vals) else None
            except ValueError:
                return None
        return float(vals[0]), num(1), num(2)

    def start(self) -> "PowerSampler":
        """Check that nvidia-smi reads the GPU (dropping ``power.draw.instant`` where the
        driver lacks it) and start sampling."""
        try:
            try:
                self._query()
            except RuntimeError:
                self.fields = self.fields[:2]
                self._query()
        except (OSError, ValueError, IndexError, RuntimeError, subprocess.SubprocessError) as e:
            raise RuntimeError(f"cannot read GPU power with nvidia-smi: {e}") from None
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                w, u, wi = self._query()
                self.samples.append(((t0 + time.perf_counter()) / 2, w, u, wi))
            except (OSError, ValueError, IndexError, RuntimeError, subprocess.SubprocessError):
                pass
            self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - t0)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def window(self, t0: float, t1: float, t0_instant: float | None = None) -> dict:
        """Mean power of the samples with ``t0 <= t <= t1``: ``W`` (power.draw) and its
        standard deviation ``W_sd``, ``W_instant`` (power.draw.instant, from
        ``t0_instant``, default ``t0``; None where the driver lacks it), ``gpu_util_pct``
        and ``power_samples`` (None and 0 when there is no sample)."""
        allx = list(self.samples)
        s = [x for x in allx if t0 <= x[0] <= t1]
        if not s:
            return {"W": None, "W_sd": None, "W_instant": None, "gpu_util_pct": None,
                    "power_samples": 0}
        ti = t0 if t0_instant is None else t0_instant
        utils = [x[2] for x in s if x[2] is not None]
        inst = [x[3] for x in allx if ti <= x[0] <= t1 and x[3] is not None]
        return {"W": round(statistics.fmean(x[1] for x in s), 2),
                "W_sd": round(statistics.pstdev([x[1] for x in s]), 2),
                "W_instant": round(statistics.fmean(inst), 2) if inst else None,
                "gpu_util_pct": round(statistics.fmean(utils), 1) if utils else None,
                "power_samples": len(s)}


# ---------------------------------------------------------------------------------------
# Exact integer models on CUDA (float32 GEMM for the ternary matvec)
# ---------------------------------------------------------------------------------------

class _CudaGraph:
    """A model graph (:class:`ternac.golden.graph.Graph`) with its tensors on a CUDA device,
    evaluated node by node as ``Graph.evaluate`` does, calling the same golden op functions
    (under ``torch.device(device)``, so the tensors they create land on the device), except
    that each MATVEC runs as a float32 GEMM: its input is an int8 vector (|x| <= 127,
    checked on construction) and its weights are trits, so every partial sum is an integer
    of magnitude <= 127 K < 2^24, exact in float32 (TF32 off). The requantization after it
    is ``numerics.matvec_op``'s. CUDA has no int64 GEMM, so the golden evaluation itself
    cannot run there.

    Raises
    ------
    ValueError on construction if a MATVEC's input is not int8 or its fan-in is too large
    for an exact float32 GEMM, or the graph holds an op this evaluator does not run
    (SAMPLE).
    """

    def __init__(self, graph, device):
        from ternac.golden.isa import Op
        from ternac.golden.numerics import ACT_MAX
        self.g = graph
        self.device = torch.device(device)
        for nd in graph.nodes:
            if nd.op == Op.SAMPLE:
                raise ValueError("the CUDA graph evaluator does not run SAMPLE")
            if nd.op == Op.MATVEC:
                if graph.vecs[nd.a].bits != 8:
                    raise ValueError(f"MATVEC {nd.out!r} reads {graph.vecs[nd.a].bits}-bit "
                                     f"{nd.a!r}, not int8: a float32 GEMM may not be exact")
                K = graph.weights[nd.weight].trits.shape[1]
                if ACT_MAX * K >= _F32_EXACT:
                    raise ValueError(f"MATVEC {nd.out!r}: fan-in {K} is too large for an "
                                     f"exact float32 GEMM")
        self.w = {n: w.trits.to(device=self.device, dtype=torch.float32).T.contiguous()
                  for n, w in graph.weights.items()}
        self.tables = {n: t.to(self.device) for n, t in graph.tables.items()}
        self.consts = {n: c.to(self.device) for n, c in graph.consts.items()}

    def _matvec(self, w, x, m, s, flags):
        from ternac.golden.isa import Flag
        from ternac.golden.numerics import ACT_MAX, relu, requantize
        from ternac.golden.widths import WIDE_MAX
        acc = torch.matmul(x.to(torch.float32), w).to(torch.int64)
        if flags & Flag.RAW:
            return acc
        hi = WIDE_MAX if flags & Flag.WIDE else ACT_MAX
        y = requantize(acc, m, s, -hi, hi)
        return relu(y) if flags & Flag.RELU else y

    def evaluate(self, feeds: dict, state: dict | None = None) -> dict:
        """As ``Graph.evaluate(feeds, state)``; tensors on the device, int64."""
        from ternac.golden.isa import Op
        from ternac.golden.ops import spec
        g = self.g
        with torch.device(self.device):
            env = {}
            lead = ()
            for v in g.kinds("input"):
                x = torch.as_tensor(feeds[v.name]).to(torch.int64)
                env[v.name] = x
                lead = x.shape[:-1]
            for v in g.kinds("state"):
                x = None if state is None else state.get(v.name)
                env[v.name] = (torch.zeros(*lead, v.n, dtype=torch.int64) if x is None
                               else torch.as_tensor(x).to(torch.int64).reshape(*lead, v.n))
            env.update(self.consts)
            for nd in g.nodes:
                a = env[nd.a] if nd.a is not None else None
                if nd.op == Op.MATVEC:
                    env[nd.out] = self._matvec(self.w[nd.weight], a, nd.m, nd.s, nd.flags)
                elif nd.op == Op.EMBED:
                    env[nd.out] = spec(nd.op).fn()(self.tables[nd.weight], a[..., 0])
                elif nd.op == Op.ARGMAX:
                    env["result"] = spec(nd.op).fn()(a)
                else:
                    b = env[nd.b] if nd.b is not None else a
                    env[nd.out] = spec(nd.op).fn()(a, b, nd.params)
        return env


def _lm_graph_step(cg: _CudaGraph, n_layers: int):
    """``IntLM.step`` on a :class:`_CudaGraph` of ``IntLM.graph()``: token (B,), state list
    -> (logits (B, V), new state list). The function's ``graph`` attribute is ``cg``."""
    names = [f"layers.{i}.H" for i in range(n_layers)]

    def step(tok, state):
        env = cg.evaluate({"token": tok.reshape(-1, 1)}, dict(zip(names, state)))
        return env["logits"], [env[n] for n in names]
    step.graph = cg
    return step


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _load_models(workloads, *, lm_checkpoint=None, digits_checkpoint=None, text_path=None,
                 calib_chars: int | None = None) -> tuple[dict, dict]:
    """Load what ``workloads`` need, on the CPU. Returns ``(objects, description)``."""
    from ternac.golden import lm as glm
    from ternac.golden import mlp as gmlp
    from ternac.golden.lm_int import DEFAULT_CALIB_CHARS, IntLM

    objs: dict = {}
    desc: dict = {}
    if any(WORKLOADS[w][0] == "lm" for w in workloads):
        path = Path(lm_checkpoint or glm.DEFAULT_CHECKPOINT)
        try:
            model, vocab, _ = glm.load_checkpoint(path)
        except ValueError as e:
            raise InputError(str(e)) from None
        if not model.calibrated:
            raise InputError(f"checkpoint {str(path)!r} has no calibrated static scales")
        model.set_quant("static").eval()
        objs["lm_model"], objs["vocab"], objs["lm_path"] = model, vocab, path
        desc["lm"] = {"checkpoint": _rel(path), "sha256": _sha256(path),
                      "n_ternary": int(model.n_ternary), "config": model.config.to_hf()}
        if "lm_int" in workloads:
            n = int(calib_chars or DEFAULT_CALIB_CHARS)
            try:
                im = IntLM.from_checkpoint(path, calib_chars=n, text_path=text_path)
                how = f"first {n} characters of the tinyshakespeare training split (as ternac's IntLM)"
            except ValueError as e:
                # corpus absent or unreadable: the work per token does not depend on the
                # constants, so calibrate on fixed pseudo-random ids and say so.
                g = torch.Generator().manual_seed(0)
                ids = torch.randint(0, model.config.vocab_size, (n,), generator=g)
                im = IntLM.from_model(model, ids, vocab)
                how = (f"{n} fixed pseudo-random token ids (seed 0): the corpus was not "
                       f"readable ({e}); the constants differ from ternac's IntLM, the work "
                       f"per token does not")
            objs["intlm"] = im
            desc["lm"]["int_calibration"] = how
    if any(WORKLOADS[w][0] == "digits" for w in workloads):
        path = Path(digits_checkpoint or gmlp.DEFAULT_CHECKPOINT)
        try:
            ck = gmlp.load_checkpoint(path)
            objs["digits_float"] = gmlp.load_float_model(ck)
            objs["digits_layers"] = gmlp.int_layers_from_checkpoint(path)
        except ValueError as e:
            raise InputError(str(e)) from None
        objs["digits_ck"] = ck
        desc["digits"] = {"checkpoint": _rel(path), "sha256": _sha256(path),
                          "dims": list(ck.dims),
                          "n_ternary": int(sum(l.trits.numel() for l in ck.layers))}
    return objs, desc


def _trits_per_unit(workload: str, desc: dict) -> int:
    return desc["lm" if WORKLOADS[workload][0] == "lm" else "digits"]["n_ternary"]


def _make_step(workload: str, objs: dict, batch: int, device: torch.device, gpu_objs: dict):
    """A closure running one step of ``workload`` at ``batch`` on ``device`` (state carried).

    On the CPU the golden code runs as it is (``model(...)``, ``IntLM.step``,
    ``mlp.int_forward``); on CUDA the float models are the same modules moved to the
    device and the integer ones are :class:`_CudaGraph` evaluations of their graphs."""
    g = torch.Generator().manual_seed(0)
    n_ids = 64
    k = [0]
    if workload in ("lm_float", "lm_int"):
        V = objs["lm_model"].config.vocab_size
        ids = torch.randint(0, V, (n_ids, batch), generator=g).to(device)
        if workload == "lm_float":
            model = gpu_objs.get("lm_model", objs["lm_model"])
            st = [None]

            def step():
                _, st[0] = model(ids[k[0] % n_ids][:, None], st[0])
                k[0] += 1
        else:
            im = objs["intlm"]
            run = gpu_objs["lm_int_step"] if device.type == "cuda" else im.step
            st = [[torch.zeros(batch, im.config.attn_size, dtype=torch.int64, device=device)
                   for _ in im.layers]]

            def step():
                _, st[0] = run(ids[k[0] % n_ids], st[0])
                k[0] += 1
        return step
    from ternac.golden.digits_data import INPUT_SCALE
    from ternac.golden.mlp import int_forward
    x8 = torch.randint(0, 128, (n_ids, batch, 64), generator=g, dtype=torch.int64).to(device)
    if workload == "digits_float":
        model = gpu_objs.get("digits_float", objs["digits_float"])
        xf = x8.to(torch.float32) * INPUT_SCALE

        def step():
            model(xf[k[0] % n_ids])
            k[0] += 1
    elif device.type == "cuda":
        cg = gpu_objs["digits_graph"]

        def step():
            cg.evaluate({"x": x8[k[0] % n_ids]})
            k[0] += 1
    else:
        layers = objs["digits_layers"]

        def step():
            int_forward(layers, x8[k[0] % n_ids])
            k[0] += 1
    return step


def _gpu_objects(workloads, objs: dict, device) -> dict:
    """The device copies the CUDA run needs: float modules moved to ``device``, the integer
    models as :class:`_CudaGraph` (built from the golden models' own graphs)."""
    from ternac.golden.lm import load_checkpoint
    from ternac.golden.mlp import mlp_graph
    out: dict = {}
    if "lm_float" in workloads:
        m, _, _ = load_checkpoint(objs["lm_path"], device=device)
        out["lm_model"] = m.set_quant("static").eval()
    if "lm_int" in workloads:
        im = objs["intlm"]
        out["lm_int_step"] = _lm_graph_step(_CudaGraph(im.graph(), device), len(im.layers))
    if "digits_float" in workloads:
        import copy
        out["digits_float"] = copy.deepcopy(objs["digits_float"]).to(device)
    if "digits_int" in workloads:
        out["digits_graph"] = _CudaGraph(mlp_graph(objs["digits_layers"]), device)
    return out


@torch.inference_mode()
def _gpu_check(objs: dict, gpu_objs: dict, device, *, tokens: int = 8, batch: int = 4) -> dict:
    """Run the CUDA integer models and the CPU golden models (``IntLM.step``,
    ``mlp.int_forward``) on the same fixed pseudo-random inputs (seed 1) and compare every
    element of the logits and of the carried state.

    Raises
    ------
    RuntimeError naming the model and the token at the first difference.
    """
    from ternac.golden.mlp import int_forward
    out = {}
    g = torch.Generator().manual_seed(1)
    if "lm_int_step" in gpu_objs:
        im, run = objs["intlm"], gpu_objs["lm_int_step"]
        ids = torch.randint(0, im.config.vocab_size, (tokens, batch), generator=g)
        sc = im.init_state(batch)
        sg = [s.to(device) for s in sc]
        n = 0
        for t in range(tokens):
            lc, sc = im.step(ids[t], sc)
            lg, sg = run(ids[t].to(device), sg)
            if not (torch.equal(lc, lg.cpu()) and all(torch.equal(a, b.cpu()) for a, b in zip(sc, sg))):
                raise RuntimeError(f"the CUDA evaluation of the integer LM differs from "
                                   f"IntLM.step at token {t}")
            n += lc.numel() + sum(a.numel() for a in sc)
        out["lm_int"] = {"against": "IntLM.step on the CPU", "tokens": tokens, "batch": batch,
                         "seed": 1, "elements_compared": n, "equal": True}
    if "digits_graph" in gpu_objs:
        x = torch.randint(0, 128, (256, 64), generator=g, dtype=torch.int64)
        lc = int_forward(objs["digits_layers"], x)
        cg = gpu_objs["digits_graph"]
        lg = cg.evaluate({"x": x.to(device)})[cg.g.outputs[0]].cpu()
        if not torch.equal(lc, lg):
            raise RuntimeError("the CUDA evaluation of the integer digits model differs from "
                               "mlp.int_forward")
        out["digits_int"] = {"against": "mlp.int_forward on the CPU", "batch": 256, "seed": 1,
                             "elements_compared": lc.numel(), "equal": True}
    return out


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------

def _time_point(step, batch: int, sync, *, warmup: int, repeats: int, block_s: float,
                max_steps: int, max_step_s: float | None, max_point_s: float | None = None) -> dict:
    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    step()
    sync()
    probe = time.perf_counter() - t
    if max_step_s is not None and probe > max_step_s:
        return {"batch": batch, "skipped": f"one step took {probe:.2f} s > max_step_s = {max_step_s} s"}
    n = max(1, min(int(max_steps), math.ceil(block_s / max(probe, 1e-9))))
    blocks = []
    t_start = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        blocks.append(time.perf_counter() - t)
        if max_point_s is not None and time.perf_counter() - t_start > max_point_s:
            break       # a machine slowed down by other work: keep the blocks timed so far
    t_end = time.perf_counter()
    med = statistics.median(blocks)
    extra = {} if len(blocks) == repeats else {"repeats_requested": repeats}
    return {"batch": batch, "steps_per_block": n, "repeats": len(blocks), **extra,
            "block_ms": [round(b * 1e3, 4) for b in blocks], "median_block_ms": round(med * 1e3, 4),
            "ms_per_step": round(med / n * 1e3, 6), "rate": batch * n / med,
            "_window": (t_start, t_end)}


def _finish_point(p: dict, unit: str, trits: int, power: PowerSampler | None, idle_W: float | None,
                  settle_s: float) -> dict:
    if "skipped" in p:
        return p
    rate = p.pop("rate")
    t0, t1 = p.pop("_window")
    rk = "tokens_per_s" if unit == "token" else "inferences_per_s"
    p[rk] = round(rate, 3)
    if power is not None:
        a = t0 + settle_s if t1 - t0 > settle_s + 0.5 else t0
        p.update(power.window(a, t1, t0_instant=t0))
        W = p.get("W")
        if W is not None:
            e = "token" if unit == "token" else "inference"
            p[f"uJ_per_{e}"] = round(W / rate * 1e6, 6)
            p[f"mJ_per_{e}"] = round(W / rate * 1e3, 9)
            p["pJ_per_trit_mac"] = round(W / (rate * trits) * 1e12, 4)
            if idle_W is not None:
                dw = W - idle_W
                p["W_above_idle"] = round(dw, 2)
                p[f"uJ_per_{e}_above_idle"] = round(dw / rate * 1e6, 6)
                p["pJ_per_trit_mac_above_idle"] = round(dw / (rate * trits) * 1e12, 4)
    return p


def _environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
           "cpu_count": os.cpu_count(), "machine": platform.machine(), "os": platform.platform()}
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env["cpu"] = cpu or "unknown CPU"
    if hasattr(os, "getloadavg"):
        env["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, cuda=torch.version.cuda, gpu_memory_GiB=round(p.total_memory / 2**30, 1),
                   tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32))
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,power.limit,pstate",
                                "--format=csv,noheader", "-i", _smi_id(device)],
                               capture_output=True, text=True, timeout=10)
            if q.returncode == 0:
                name, drv, lim, ps = [v.strip() for v in q.stdout.strip().splitlines()[0].split(",")]
                env.update(nvidia_smi_name=name, driver=drv, power_limit=lim, pstate_before=ps)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return env


def _smi_id(device: torch.device) -> str:
    """The nvidia-smi ``-i`` of a torch CUDA device: its UUID when torch gives one (robust to
    CUDA_VISIBLE_DEVICES), else its index."""
    try:
        u = str(torch.cuda.get_device_properties(device).uuid)
        if u and u != "None":
            return u if u.startswith("GPU-") else f"GPU-{u}"
    except (AttributeError, RuntimeError):
        pass
    return str(device.index or 0)


def _summary(workloads: dict) -> dict:
    s = {}
    for name, w in workloads.items():
        for which in ("batch1", "best"):
            p = w.get(which)
            if not p:
                continue
            s[f"{name}_{which}_batch"] = p["batch"]
            if "threads" in p:
                s[f"{name}_{which}_threads"] = p["threads"]
            for k in KINDS:
                if k in p and k not in ("block_ms", "median_block_ms", "power_samples", "W_sd"):
                    s[f"{name}_{which}_{k}"] = p[k]
    return s


def _kinds_of(result: dict) -> dict:
    """The ``kinds`` map of a result: every figure key that occurs, with its kind."""
    kinds = {}
    keys = set()
    for w in result["workloads"].values():
        for p in w["points"]:
            keys.update(p)
    keys.update(k for k in ("idle_W", "idle_W_before_cuda") if result.get(k) is not None)
    for k in sorted(keys):
        if k in KINDS:
            kinds[k] = KINDS[k]
    for k in result.get("summary", {}):
        if k.endswith(("_batch", "_threads")):
            continue
        base = next((b for b in sorted(KINDS, key=len, reverse=True) if k.endswith("_" + b)), None)
        if base is not None:
            kinds[k] = KINDS[base]
    return kinds


def _run(kind: str, device: torch.device, *, workloads, batches, warmup, repeats, block_s,
         max_steps, max_step_s, command, lm_checkpoint, digits_checkpoint, text_path,
         calib_chars, power_interval_s, power_settle_s, idle_s, progress,
         thread_counts=(None,), max_point_s=None) -> dict:
    workloads = list(workloads)
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        raise InputError(f"unknown workload {bad[0]!r}; choose from {', '.join(WORKLOADS)}")
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1:
        raise InputError(f"batch sizes must be positive integers, not {batches!r}")
    if repeats < 1 or warmup < 0 or block_s < 0 or max_steps < 1:
        raise InputError("repeats and max_steps must be >= 1, warmup and block_s >= 0")
    t_run = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    idle_before = None
    if device.type == "cuda" and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # board power before this process creates a CUDA context (the GPU may then sit in
        # a lower P-state than with a context open)
        try:
            pre = PowerSampler(str(device.index or 0))
            idle_before = round(statistics.fmean(pre._query()[0] for _ in range(5)), 2)
        except (OSError, ValueError, IndexError, RuntimeError, subprocess.SubprocessError):
            idle_before = None
    env = _environment(device)
    objs, models = _load_models(workloads, lm_checkpoint=lm_checkpoint,
                                digits_checkpoint=digits_checkpoint, text_path=text_path,
                                calib_chars=calib_chars)
    gpu_objs: dict = {}
    power = None
    idle_W = None
    notes = []
    if device.type == "cuda":
        old_tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        gpu_objs = _gpu_objects(workloads, objs, device)
        check = _gpu_check(objs, gpu_objs, device)
        power = PowerSampler(_smi_id(device), power_interval_s).start()
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        time.sleep(idle_s)
        idle_W = power.window(t0, time.perf_counter())["W"]

        def sync():
            torch.cuda.synchronize(device)
        notes.append("lm_int and digits_int on CUDA: the golden models' own graphs "
                     "(IntLM.graph(), mlp.mlp_graph) evaluated node by node with the golden op "
                     "functions on CUDA tensors, each MATVEC as an exact float32 GEMM (CUDA has "
                     "no int64 GEMM); checked element for element against IntLM.step and "
                     "mlp.int_forward on the CPU before timing (gpu_check)")
        notes.append("idle_W is the board power with this process's CUDA context open and no "
                     "kernel running (the GPU stays in P0); idle_W_before_cuda before the "
                     "context was created; *_above_idle figures subtract idle_W and are within "
                     "the sampling noise (W_sd) where the GPU is barely loaded")
        notes.append("lm_float and the integer models synchronise with the host inside a step "
                     "(float(act_scale) per BitLinear; int(x.min()) range checks in the integer "
                     "units), so batch 1 on the GPU is bound by launch and sync latency, not by "
                     "arithmetic")
    else:
        check = None
        old_tf32 = None

        def sync():
            pass
        notes.append("no CPU power counter is read: CPU points carry no energy figure")
    results = {}
    old_threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            for w in workloads:
                unit = WORKLOADS[w][1]
                rk = "tokens_per_s" if unit == "token" else "inferences_per_s"
                trits = _trits_per_unit(w, models)
                pts = []
                for th in thread_counts:
                    if th is not None:
                        torch.set_num_threads(th)
                    for b in batches:
                        step = _make_step(w, objs, b, device, gpu_objs)
                        p = _time_point(step, b, sync, warmup=warmup, repeats=repeats,
                                        block_s=block_s, max_steps=max_steps, max_step_s=max_step_s,
                                        max_point_s=max_point_s)
                        p = _finish_point(p, unit, trits, power, idle_W, power_settle_s)
                        if th is not None:
                            p["threads"] = th
                        pts.append(p)
                        del step
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                        if progress:
                            extra = f", {p['W']} W" if p.get("W") is not None else ""
                            tt = f", {th} threads" if th is not None else ""
                            print(f"[{kind}] {w} batch {b}{tt}: " + (p["skipped"] if "skipped" in p else
                                  f"{p[rk]:.1f} {rk}, {p['ms_per_step']:.3f} ms/step{extra}"),
                                  file=sys.stderr, flush=True)
                        if "skipped" in p:
                            break
                done = [p for p in pts if "skipped" not in p]
                one = [p for p in done if p["batch"] == 1]
                results[w] = {"what": WORKLOADS[w][2], "unit": unit, "trits_per_" + unit: trits,
                              "points": pts,
                              "batch1": max(one, key=lambda p: p[rk]) if one else None,
                              "best": max(done, key=lambda p: p[rk]) if done else None}
    finally:
        torch.set_num_threads(old_threads)
        if power is not None:
            power.stop()
        if old_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = old_tf32
    if hasattr(os, "getloadavg"):
        env["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    device_name = env.get("gpu") if device.type == "cuda" else env["cpu"]
    out = {"schema": SCHEMA, "run": kind, "device": device_name, "torch_device": str(device),
           "date": date, "command": command, "environment": env,
           "settings": {"batches": batches, "threads": [t for t in thread_counts if t is not None] or None,
                        "warmup": warmup, "repeats": repeats,
                        "block_s": block_s, "max_point_s": max_point_s, "max_steps": max_steps, "max_step_s": max_step_s,
                        "power_interval_s": power_interval_s if power else None,
                        "power_settle_s": power_settle_s if power else None,
                        "idle_s": idle_s if power else None},
           "models": models, "idle_W": idle_W, "idle_W_before_cuda": idle_before,
           "gpu_check": check, "workloads": results,
           "notes": notes, "method": _method_text()}
    out["summary"] = _summary(results)
    out["kinds"] = _kinds_of(out)
    out["seconds_total"] = round(time.perf_counter() - t_run, 1)
    return out


def _method_text() -> str:
    doc = __doc__ or ""
    if "Method\n------\n" not in doc:
        return "see ternac/baselines.py"
    return doc.split("Method\n------\n", 1)[1].split("\n\nRun it", 1)[0].strip()


def measure_cpu(*, workloads=tuple(WORKLOADS), batches=_DEFAULT_CPU_BATCHES, warmup: int = 2,
                repeats: int = 5, block_s: float = 0.3, max_steps: int = 10_000,
                max_step_s: float | None = 1.0, max_point_s: float | None = 20.0, threads=None,
                command: str | None = None, lm_checkpoint=None, digits_checkpoint=None,
                text_path=None, calib_chars: int | None = None, progress: bool = False) -> dict:
    """Measure the baselines with PyTorch on this machine's CPU.

    Parameters
    ----------
    workloads : names from :data:`WORKLOADS`
    batches : batch sizes (streams a step; images a step for digits)
    warmup, repeats, block_s, max_steps, max_step_s : timing (see the module docstring);
        ``block_s`` in s, the target length of one timed block
    max_point_s : s; once one batch's timed blocks have taken this long, no further block
        is started (the point records the blocks done and ``repeats_requested``): a machine
        slowed down by other work cannot stall the run
    threads : int or sequence of int, the ``torch.set_num_threads`` values to measure at
        (restored after); default ``(1, torch's default)``: on a shared machine one thread
        can be many times faster than several (OpenMP threads waiting on busy cores), so
        both are measured and each point records its ``threads``; ``batch1`` and ``best``
        are the fastest over them
    command : the command line to record (default: a description of this call)
    lm_checkpoint, digits_checkpoint : checkpoint paths (default the committed ones)
    text_path : the tinyshakespeare corpus for the integer LM's calibration
    calib_chars : characters the integer LM is calibrated on (default 2,000)

    Returns
    -------
    dict (JSON-serialisable): ``device`` (CPU model), ``date`` (UTC ISO 8601), ``command``,
    ``environment`` (torch version, ``threads``, load average before and after), ``models``
    (checkpoints with sha256 and trit counts), ``workloads`` {name: {``points`` (one per
    batch: ``batch``, ``steps_per_block``, ``repeats``, ``block_ms``, ``median_block_ms``,
    ``ms_per_step``, ``tokens_per_s`` or ``inferences_per_s``), ``batch1``, ``best``}},
    ``summary`` (flat ``<workload>_<batch1|best>_<key>``), ``kinds``.

    Raises
    ------
    InputError for an unknown workload, bad batch sizes or timing values, or an unreadable
    checkpoint.
    """
    default = torch.get_num_threads()
    if threads is None:
        counts = sorted({1, default})
    else:
        counts = [threads] if isinstance(threads, int) and not isinstance(threads, bool) else list(threads)
        if not counts or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in counts):
            raise InputError(f"threads must be positive integers, not {threads!r}")
    return _run("cpu", torch.device("cpu"), workloads=workloads, batches=batches,
                warmup=warmup, repeats=repeats, block_s=block_s, max_steps=max_steps,
                max_step_s=max_step_s, command=command or "ternac.baselines.measure_cpu()",
                lm_checkpoint=lm_checkpoint, digits_checkpoint=digits_checkpoint,
                text_path=text_path, calib_chars=calib_chars, power_interval_s=None,
                power_settle_s=0.0, idle_s=0.0, progress=progress, thread_counts=counts,
                max_point_s=max_point_s)


def measure_gpu(*, device: str = "cuda", workloads=tuple(WORKLOADS), batches=_DEFAULT_GPU_BATCHES,
                warmup: int = 3, repeats: int = 7, block_s: float = 0.5, max_steps: int = 100_000,
                max_step_s: float | None = 5.0, power_interval_s: float = 0.1,
                power_settle_s: float = 1.0, idle_s: float = 3.0, command: str | None = None,
                lm_checkpoint=None, digits_checkpoint=None, text_path=None,
                calib_chars: int | None = None, progress: bool = False) -> dict:
    """Measure the baselines on a CUDA GPU, with board power from ``nvidia-smi``.

    Parameters as :func:`measure_cpu`, and
    device : a torch CUDA device string
    power_interval_s : s between nvidia-smi power samples (0.1)
    power_settle_s : s at the start of each point's timed blocks whose samples are not used
    idle_s : s of idle sampling before any work gives ``idle_W``

    Returns
    -------
    dict as :func:`measure_cpu`, with ``device`` the GPU's name, ``idle_W``,
    ``idle_W_before_cuda``, ``gpu_check`` (element-for-element comparison of the CUDA
    integer models with the CPU golden ones), and in every point ``W``, ``W_sd``,
    ``W_instant``, ``gpu_util_pct``, ``power_samples``, ``W_above_idle``,
    ``uJ_per_token`` / ``mJ_per_token`` (digits: ``_per_inference``),
    ``uJ_per_token_above_idle``, ``pJ_per_trit_mac`` and ``pJ_per_trit_mac_above_idle``.

    Raises
    ------
    InputError if no CUDA device is available or ``device`` is not one, or as
    :func:`measure_cpu`; RuntimeError if nvidia-smi cannot read the GPU's power or a CUDA
    integer model differs from its golden model.
    """
    if not torch.cuda.is_available():
        raise InputError("no CUDA device is available to this PyTorch "
                         f"({torch.__version__}); run the GPU baseline on a machine with one")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"{device!r} is not a torch device") from None
    if dev.type != "cuda":
        raise InputError(f"{device!r} is not a CUDA device")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev.index >= torch.cuda.device_count():
        raise InputError(f"{device!r}: only {torch.cuda.device_count()} CUDA device(s) are present")
    return _run("gpu", dev, workloads=workloads, batches=batches, warmup=warmup, repeats=repeats,
                block_s=block_s, max_steps=max_steps, max_step_s=max_step_s,
                command=command or "ternac.baselines.measure_gpu()", lm_checkpoint=lm_checkpoint,
                digits_checkpoint=digits_checkpoint, text_path=text_path, calib_chars=calib_chars,
                power_interval_s=power_interval_s, power_settle_s=power_settle_s, idle_s=idle_s,
                progress=progress)


# ---------------------------------------------------------------------------------------
# Reading committed results
# ---------------------------------------------------------------------------------------

def load_result(path=GPU_RESULT) -> dict:
    """Read a baseline JSON written by :func:`main` (e.g. the committed :data:`GPU_RESULT`)
    and check it: schema, ``command``, ``date``, ``device``, a ``kinds`` entry for every
    figure, positive rates. Returns the dict with ``source`` set to the path.

    Raises
    ------
    InputError (one sentence) for a missing, unreadable or malformed file.
    """
    p = Path(path)
    try:
        r = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"baseline result {str(p)!r} cannot be read: {e}") from None
    if not isinstance(r, dict) or r.get("schema") != SCHEMA:
        raise InputError(f"baseline result {str(p)!r} is not a {SCHEMA} file")
    for k in ("command", "date", "device", "workloads", "kinds", "summary"):
        if not r.get(k):
            raise InputError(f"baseline result {str(p)!r} has no {k!r}")
    for name, w in r["workloads"].items():
        rk = "tokens_per_s" if w.get("unit") == "token" else "inferences_per_s"
        for pt in w.get("points", []):
            if "skipped" in pt:
                continue
            if not (isinstance(pt.get(rk), (int, float)) and pt[rk] > 0):
                raise InputError(f"baseline result {str(p)!r}: {name} batch {pt.get('batch')} "
                                 f"has no positive {rk}")
            missing = [k for k in pt if k in KINDS and k not in r["kinds"]]
            if missing:
                raise InputError(f"baseline result {str(p)!r}: figure {missing[0]!r} has no kind")
    r["source"] = str(p)
    return r


_LIT_REQUIRED = ("id", "name", "platform", "kind", "comparable", "source")
_SRC_REQUIRED = ("title", "venue", "year", "url")


def load_literature(path=LITERATURE) -> list[dict]:
    """Read the literature anchors and check every entry.

    Each entry has ``id``, ``name``, ``platform``, ``kind == "literature"``, ``comparable``
    (bool) with ``comparable_reason`` when False, and ``source`` {``title``, ``venue``,
    ``year``, ``url``}; figures ``model_params``, ``tokens_per_s``, ``W``,
    ``uJ_per_token``, ``pJ_per_weight_op`` are numbers or null. Where ``uJ_per_token`` is
    derived it must equal ``W / tokens_per_s * 1e6`` within 1 %.

    Raises
    ------
    InputError (one sentence naming the entry) for a missing source or field, or a derived
    figure that does not follow from the others.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"literature table {str(p)!r} cannot be read: {e}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not entries:
        raise InputError(f"literature table {str(p)!r} has no entries")
    for e in entries:
        eid = e.get("id", "?")
        for k in _LIT_REQUIRED:
            if k not in e:
                raise InputError(f"literature entry {eid!r} has no {k!r}")
        if e["kind"] != "literature":
            raise InputError(f"literature entry {eid!r} has kind {e['kind']!r}, not 'literature'")
        if not isinstance(e["comparable"], bool) or (not e["comparable"] and not e.get("comparable_reason")):
            raise InputError(f"literature entry {eid!r} needs a boolean 'comparable' and, when "
                             f"false, a 'comparable_reason'")
        src = e["source"]
        if not isinstance(src, dict) or any(not src.get(k) for k in _SRC_REQUIRED):
            raise InputError(f"literature entry {eid!r} needs a source with {', '.join(_SRC_REQUIRED)}")
        W, r, uj = e.get("W"), e.get("tokens_per_s"), e.get("uJ_per_token")
        if uj is not None and W is not None and r:
            if abs(uj - W / r * 1e6) > 0.01 * abs(uj):
                raise InputError(f"literature entry {eid!r}: uJ_per_token {uj} is not "
                                 f"W / tokens_per_s * 1e6 = {W / r * 1e6:.4g}")
    return entries


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

def _table(r: dict) -> str:
    th = r["settings"].get("threads") or [r["environment"]["threads"]]
    lines = [f"{r['run']} baseline on {r['device']} (torch {r['environment']['torch']}, "
             f"threads {','.join(map(str, th))}), {r['date']}"]
    if r.get("idle_W") is not None:
        lines.append(f"idle {r['idle_W']} W")
    for name, w in r["workloads"].items():
        rk = "tokens_per_s" if w["unit"] == "token" else "inferences_per_s"
        ek = f"uJ_per_{w['unit']}"
        for which in ("batch1", "best"):
            p = w.get(which)
            if p:
                e = f", {p['W']} W, {p[ek]:.4g} uJ/{w['unit']}" if p.get(ek) is not None else ""
                th = f", {p['threads']} thr" if "threads" in p else ""
                lines.append(f"  {name:13s} {which:6s} (B={p['batch']:>6}{th}): {p[rk]:>14,.1f} {rk}, "
                             f"{p['ms_per_step']:.3f} ms/step{e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m ternac.baselines {cpu,gpu} [--out FILE] [options]``: measure and write JSON.

    Exit 0 on success, 2 (one sentence on stderr) on bad input or when the device is absent.
    """
    from ternac.cliargs import drop_argument_prefix, number, usable_cpus, whole, whole_list

    class Parser(argparse.ArgumentParser):
        # An argument error is one line, as the ternac CLI's (ternac.cli.Parser).
        def error(self, message: str):
            self.exit(2, f"ternac: error: {drop_argument_prefix(message)} (see {self.prog} "
                         f"--help)\n")

    argv = list(sys.argv[1:] if argv is None else argv)
    cpus = usable_cpus()
    ap = Parser(prog="python -m ternac.baselines",
                description="Measure the PyTorch baselines (tokens/s, inferences/s, "
                            "GPU power) of the flagship LM and the digits MLP.")
    ap.add_argument("where", choices=("cpu", "gpu"))
    ap.add_argument("--out", default=None, help="JSON file to write")
    ap.add_argument("--device", default="cuda", help="torch CUDA device for 'gpu' (default cuda)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--batches", default=None, metavar="B,B,...",
                    type=whole_list("--batches", 1, BATCH_MAX,
                                    why="LM streams or digits images a step"),
                    help=f"comma-separated batch sizes, each at most {BATCH_MAX}")
    ap.add_argument("--warmup", type=whole("--warmup", 0, 1000, why="untimed steps a point"),
                    default=None)
    ap.add_argument("--repeats", type=whole("--repeats", 1, 1000, why="timed blocks a point"),
                    default=None)
    ap.add_argument("--block-s", type=number("--block-s", 0, 60, noun="a time in seconds",
                                             why="the target length of one timed block"),
                    default=None, help="target seconds of one timed block")
    ap.add_argument("--max-step-s", type=number("--max-step-s", 0, 3600, above=True,
                                                noun="a time in seconds",
                                                why="a batch whose probe step takes longer is "
                                                    "skipped"), default=None)
    ap.add_argument("--threads", default=None, metavar="T,T,...",
                    type=whole_list("--threads", 1, cpus,
                                    why=f"torch.set_num_threads values; this machine has "
                                        f"{cpus} CPUs"),
                    help="comma-separated CPU thread counts to measure at (cpu only; default 1 and torch's default)")
    ap.add_argument("--text", default=None, help="tinyshakespeare corpus for the integer LM's calibration")
    ap.add_argument("--calib-chars", default=None,
                    type=whole("--calib-chars", 1, 1_000_000,
                               why="the first characters of the corpus's training split, "
                                   "the integer LM's calibration; default 2000"))
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    command = "python -m ternac.baselines " + shlex.join(argv)
    kw = {"workloads": [w.strip() for w in a.workloads.split(",") if w.strip()],
          "command": command, "text_path": a.text, "calib_chars": a.calib_chars,
          "progress": not a.quiet}
    if a.batches is not None:
        kw["batches"] = list(a.batches)
    for k in ("warmup", "repeats", "block_s", "max_step_s"):
        if getattr(a, k) is not None:
            kw[k] = getattr(a, k)
    try:
        if a.out is not None:
            from ternac.errors import check_output_file
            check_output_file(a.out, "JSON output", make_folder=True)
        if a.where == "cpu":
            r = measure_cpu(threads=None if a.threads is None else list(a.threads), **kw)
        else:
            r = measure_gpu(device=a.device, **kw)
        if a.out is not None:
            write_json(a.out, r)
    except InputError as e:
        print(f"ternac: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(_table(r))
    if a.out:
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
