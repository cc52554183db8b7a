"""Accuracy bench of the integer nonlinear units (golden/intops.py) against their float functions.

``ternac bench numerics --json FILE`` calls :func:`main`. For each unit it measures, on
this machine and in this run, the error of the integer golden model against its float
counterpart, next to the I-ViT released code (``intops.ivit_*``) on the same inputs:

* sigmoid, SiLU, ShiftGELU: every int8 input (and every int16 input for two scales) at
  input ranges +-4, +-8, +-16, +-64 (scale = range / 127); error in real units, split at
  |x| = 8 as the targets are; ShiftGELU also against the erf GELU; I-ViT's ShiftGELU on
  rows of 64 random inputs (it subtracts the row maximum), and the sigmoid(1.702 x) inside
  it next to ours (every int8 input, rows of 64, and issue 11's x = [-23] at 4/127);
* Shiftmax: random logits of range +-4/8/16/64 on rows of 16..1024, constant rows, long
  rows of small logits, heavy-tailed rows with outlier channels, and the logits and hidden
  activations of the trained digits model (``checkpoints/digits.safetensors``): row-sum
  error, error of the largest probability, max and mean absolute error;
* LayerNorm, RMSNorm: error in int8 and int16 output LSB against a float computed on the
  same integers, and the error of the normalized value (G = 8 fraction bits for int8
  outputs, 16 for int16: ``intops.norm_frac_bits``) next to I-ViT's I-LayerNorm, issue
  11's row [-289, 82, -240] included; the square roots.

Every random input comes from a ``torch.Generator`` with a fixed seed that is printed and
written to the JSON. Figures are all of kind ``measured``.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ternac.golden import intops as I
from ternac.golden import numerics

__all__ = ["main", "run"]

RANGES = (4, 8, 16, 64)
ROW_LENGTHS = (16, 64, 256, 1024)
ROWS = 32
BASE_SEED = 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _heavy_tailed(rows: int, n: int, seed: int, outlier_channels: int = 4,
                  outlier_gain: float = 30.0) -> torch.Tensor:
    """Student-t (2 degrees of freedom) rows plus a few fixed outlier channels (float64)."""
    g = _gen(seed)
    z = torch.randn(rows, n, generator=g, dtype=torch.float64)
    chi2 = (torch.randn(rows, n, 2, generator=g, dtype=torch.float64) ** 2).sum(-1)
    t = z / torch.sqrt(chi2 / 2)
    ch = torch.randperm(n, generator=g)[:outlier_channels]
    t[:, ch] *= outlier_gain
    return t


def _absmax_int8(v: torch.Tensor, real_range: float | None = None) -> tuple[torch.Tensor, float]:
    """Quantize real values to int8 with an absmax scale (or the given range)."""
    r = float(v.abs().max()) if real_range is None else real_range
    scale = max(r, 1e-6) / numerics.ACT_MAX
    return numerics.quantize_act(v, scale).to(torch.int64), scale


def _rec(unit: str, inputs: str, **figs) -> dict:
    figs = {k: (round(v, 8) if isinstance(v, float) else v) for k, v in figs.items()}
    return {"unit": unit, "inputs": inputs, **figs, "kind": "measured"}


# --- elementwise units -------------------------------------------------------------------

_ELEMENTWISE = {
    "sigmoid": (lambda x, s: I.int_sigmoid(x, s).double() * 2.0 ** -I.SIG_FRAC_BITS,
                I.sigmoid_float, lambda s: 2.0 ** -I.SIG_FRAC_BITS),
    "silu": (lambda x, s: I.int_silu(x, s).double() * s * 2.0 ** -I.SIG_FRAC_BITS,
             I.silu_float, lambda s: s * 2.0 ** -I.SIG_FRAC_BITS),
    "shift_gelu": (lambda x, s: I.shift_gelu(x, s).double() * s * 2.0 ** -I.SIG_FRAC_BITS,
                   I.gelu_float, lambda s: s * 2.0 ** -I.SIG_FRAC_BITS),
}


def _elementwise_errors(name: str, x: torch.Tensor, scale: float) -> dict:
    fint, ffloat, lsb = _ELEMENTWISE[name]
    v = x.double() * scale
    got, ref = fint(x, scale), ffloat(x, scale)
    err = (got - ref).abs()
    inner, outer = v.abs() <= 8, v.abs() > 8
    lsb_v = lsb(scale)
    figs = {
        "max_abs_err_real": float(err.max()),
        "mean_abs_err_real": float(err.mean()),
        "max_abs_err_inner_real": float(err[inner].max()) if inner.any() else None,
        "max_err_over_abs_x_outer_fraction": float((err[outer] / v[outer].abs()).max())
        if outer.any() else None,
        "output_lsb_real": lsb_v,
    }
    ok_in = bool((err[inner] <= 0.05 + lsb_v).all())
    ok_out = bool((err[outer] <= 0.01 * v[outer].abs() + lsb_v).all())
    figs["target_met"] = ok_in and ok_out
    if name == "shift_gelu":
        erf = torch.nn.functional.gelu(v)
        figs["max_abs_err_vs_erf_gelu_real"] = float((got - erf).abs().max())
    # requantized to int8 at the output's own absmax scale: error in output LSB
    if name != "sigmoid":
        out_scale = float(ref.abs().max()) / numerics.ACT_MAX
        fn = I.int_silu if name == "silu" else I.shift_gelu
        q = fn(x, scale, out_scale).double()
        e8 = (q * out_scale - ref).abs()
        figs["int8_out_max_abs_err_real"] = float(e8.max())
        figs["int8_out_lsb_real"] = out_scale
        figs["int8_out_target_met"] = bool(
            ((e8 <= 0.05 + out_scale) | ~inner).all()
            and ((e8 <= 0.01 * v.abs() + out_scale) | ~outer).all())
    return figs


def _bench_elementwise(progress) -> list[dict]:
    recs = []
    x8 = torch.arange(-127, 128)
    x16 = torch.arange(-32767, 32768)
    for name in _ELEMENTWISE:
        for r in RANGES:
            recs.append(_rec(name, f"every int8, range +-{r}", range_real=r,
                             **_elementwise_errors(name, x8, r / 127)))
            progress.update()
        for r in (8, 64):
            recs.append(_rec(name, f"every int16, range +-{r}", range_real=r,
                             **_elementwise_errors(name, x16, r / 32767)))
            progress.update()
    # I-ViT's ShiftGELU on rows of 64 (row maximum subtracted) against ours, same inputs
    for r in RANGES:
        seed = BASE_SEED + 100 + r
        x = torch.randint(-127, 128, (ROWS, 64), generator=_gen(seed))
        s = r / 127
        ref = I.gelu_float(x, s)
        ours = (I.shift_gelu(x, s).double() * s * 2.0 ** -I.SIG_FRAC_BITS - ref).abs()
        ivit = (I.ivit_shift_gelu(x, s, out_bits=8) - ref).abs()
        recs.append(_rec("shift_gelu_rows", f"uniform int8 rows of 64, range +-{r}",
                         range_real=r, seed=seed, rows=ROWS,
                         ours_max_abs_err_real=float(ours.max()),
                         ivit8_max_abs_err_real=float(ivit.max()),
                         ivit8_mean_abs_err_real=float(ivit.mean())))
        # the sigmoid(1.702 x) inside ShiftGELU: ours (elementwise) and I-ViT's (rows)
        recs.append(_rec("gelu_sigmoid", f"uniform int8 rows of 64, range +-{r}",
                         range_real=r, seed=seed, rows=ROWS,
                         **_gelu_sigmoid_errors(x, s, rows=True)))
        recs.append(_rec("gelu_sigmoid", f"every int8, range +-{r}", range_real=r,
                         **_gelu_sigmoid_errors(torch.arange(-127, 128), s, rows=False)))
        progress.update()
    recs.append(_rec("gelu_sigmoid", "issue 11: x = [-23] at 4/127", range_real=4,
                     **_gelu_sigmoid_errors(torch.tensor([[-23]]), 4 / 127, rows=True)))
    return recs


def _gelu_sigmoid_errors(x: torch.Tensor, scale: float, rows: bool) -> dict:
    """sigmoid(1.702 x S): ours (``sigmoid_q`` at ``exp_gain(S, 1.702)``) and, on rows,
    I-ViT's (its ``IntGELU``'s, 8 and 16 bits) against float."""
    m, s = I.exp_gain(scale, I.GELU_ALPHA)
    ref = torch.sigmoid(I.GELU_ALPHA * x.double() * scale)
    ours = (I.sigmoid_q(x, m, s).double() * 2.0 ** -I.SIG_FRAC_BITS - ref).abs()
    figs = {"ours_max_abs_err": float(ours.max()), "ours_mean_abs_err": float(ours.mean())}
    if rows:
        for bits in (8, 16):
            iv = (I.ivit_gelu_sigmoid(x, scale, bits) - ref).abs()
            figs[f"ivit{bits}_max_abs_err"] = float(iv.max())
            figs[f"ivit{bits}_mean_abs_err"] = float(iv.mean())
    return figs


# --- Shiftmax -------------------------------------------------------------------------------

def _softmax_figs(prefix: str, p: torch.Tensor, pf: torch.Tensor) -> dict:
    """p: real probabilities (float64), pf: float softmax."""
    rows_sum = p.sum(-1)
    arg = pf.argmax(-1, keepdim=True)
    return {
        f"{prefix}_row_sum_max_abs_err_fraction": float((rows_sum - 1).abs().max()),
        f"{prefix}_row_sum_min": float(rows_sum.min()),
        f"{prefix}_pmax_max_abs_err": float((p.gather(-1, arg) - pf.gather(-1, arg)).abs().max()),
        f"{prefix}_max_abs_err": float((p - pf).abs().max()),
        f"{prefix}_mean_abs_err": float((p - pf).abs().mean()),
    }


def _shiftmax_case(inputs: str, x: torch.Tensor, scale: float, **meta) -> dict:
    pf = I.shiftmax_float(x, scale)
    figs = {}
    figs.update(_softmax_figs("ours16", I.shiftmax(x, scale, 16).double() / 2 ** 16, pf))
    figs.update(_softmax_figs("ours8", I.shiftmax(x, scale, 8).double() / 2 ** 8, pf))
    figs.update(_softmax_figs("ivit8", I.ivit_shiftmax(x, scale, 8), pf))
    figs.update(_softmax_figs("ivit16", I.ivit_shiftmax(x, scale, 16), pf))
    figs["target_met"] = figs["ours16_row_sum_max_abs_err_fraction"] <= 0.01
    return _rec("shiftmax", inputs, n=int(x.shape[-1]), rows=int(x.shape[0]), **meta, **figs)


def _bench_shiftmax(progress, digits) -> list[dict]:
    recs = []
    for n in ROW_LENGTHS:
        for r in RANGES:
            seed = BASE_SEED + 1000 * n + r
            x = torch.randint(-127, 128, (ROWS, n), generator=_gen(seed))
            recs.append(_shiftmax_case(f"uniform logits +-{r}", x, r / 127,
                                       range_real=r, seed=seed))
            progress.update()
    for n in (16, 100, 1000, 1024):
        recs.append(_shiftmax_case("constant rows", torch.full((4, n), 37), 8 / 127))
        progress.update()
    for n in (256, 1024):
        seed = BASE_SEED + 7 + n
        x = torch.randint(-127, 128, (ROWS, n), generator=_gen(seed))
        recs.append(_shiftmax_case("small logits +-0.25", x, 0.25 / 127, range_real=0.25,
                                   seed=seed))
        progress.update()
    for n in (64, 256, 1024):
        seed = BASE_SEED + 11 + n
        v = _heavy_tailed(ROWS, n, seed)
        for r in (8, 32):
            x, s = _absmax_int8(v / v.abs().max() * r)
            recs.append(_shiftmax_case(f"heavy-tailed t(2) + 4 outlier channels, +-{r}",
                                       x, s, range_real=r, seed=seed))
            progress.update()
    if digits is not None:
        for key, (x, s) in digits["shiftmax"].items():
            recs.append(_shiftmax_case(key, x, s, source="checkpoints/digits.safetensors"))
            progress.update()
    return recs


# --- LayerNorm / RMSNorm ---------------------------------------------------------------------

#: Output error targets (output LSB against the float on the same integers): int8 within
#: 1 LSB; int16 within 2 (y's ~2^-14 relative error from the 16-bit isqrt and reciprocal).
NORM_TARGET_LSB = {8: 1.0, 16: 2.0}


def _norm_case(inputs: str, x: torch.Tensor, seed: int | None, rms: bool,
               affine: bool = True) -> dict:
    n = x.shape[-1]
    g = _gen(seed if seed is not None else 0)
    gamma = 1 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
    beta = 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    if not affine:
        gamma, beta = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    in_scale = 1.0
    fn = I.int_rmsnorm if rms else I.int_layernorm
    # the normalized value itself, against float: ours (y / 2^G) and I-ViT's
    xf = x.double()
    mean = torch.zeros_like(xf[:, :1]) if rms else xf.mean(-1, keepdim=True)
    var = ((xf - mean) ** 2).mean(-1, keepdim=True)
    yf = torch.where(var > 0, (xf - mean) / var.clamp(min=1e-300).sqrt(), 0.0)
    figs: dict = {"target_met": True}
    for bits in (8, 16):
        hi = (1 << (bits - 1)) - 1
        p = I.norm_params(gamma, beta, in_scale, 4.0 / hi, eps=0.0, out_bits=bits)
        tr: dict = {}
        out = fn(x, **p.kwargs(), trace=tr).double()
        ref = I.layernorm_float(x, p.weight, p.bias, p.m, p.s, eps=p.eps, rms=rms,
                                out_bits=bits)
        err = (out - ref.clamp(-hi, hi)).abs()
        y_ours = tr["y"].double() / 2 ** I.norm_frac_bits(bits)
        sfx = "" if bits == 8 else "16"
        figs.update({f"max_abs_err_lsb{sfx}": float(err.max()),
                     f"mean_abs_err_lsb{sfx}": float(err.mean()),
                     f"y{sfx}_ours_max_abs_err": float((y_ours - yf).abs().max()),
                     f"y{sfx}_frac_bits": I.norm_frac_bits(bits)})
        figs["target_met"] &= bool((err <= NORM_TARGET_LSB[bits]).all())
        if bits == 8:
            v_bits = int(tr["V"].max()).bit_length()
    if not rms:
        figs["y_ivit_max_abs_err"] = float((I.ivit_layernorm(x) - yf).abs().max())
        var_sum = ((xf - torch.round(xf.mean(-1, keepdim=True))) ** 2).sum(-1)
        figs["ivit_var_sum_bits"] = int(float(var_sum.max())).bit_length()
    figs["v_bits"] = v_bits
    return _rec("rmsnorm" if rms else "layernorm", inputs, n=int(n), rows=int(x.shape[0]),
                seed=seed, affine=affine, **figs)


def _bench_norms(progress, digits) -> list[dict]:
    recs = []
    cases = []
    for n in (16, 256, 1024, 4096):
        seed = BASE_SEED + 20 + n
        cases.append(("uniform int8", torch.randint(-127, 128, (8, n), generator=_gen(seed)), seed))
        seed = BASE_SEED + 30 + n
        cases.append(("uniform int16", torch.randint(-32767, 32768, (8, n), generator=_gen(seed)),
                      seed))
    for n in (16, 1024, 4096):
        seed = BASE_SEED + 40 + n
        cases.append(("small variance: 30000 + {0, 1}",
                      30000 + torch.randint(0, 2, (8, n), generator=_gen(seed)), seed))
        seed = BASE_SEED + 50 + n
        cases.append(("small variance: -5 + {0, 1, 2}",
                      -5 + torch.randint(0, 3, (8, n), generator=_gen(seed)), seed))
    for n in (256, 4096):
        seed = BASE_SEED + 60 + n
        v = _heavy_tailed(8, n, seed)
        cases.append(("heavy-tailed t(2) + outliers, int16",
                      torch.round(v / v.abs().max() * 32767).to(torch.int64), seed))
        cases.append(("heavy-tailed t(2) + outliers, int8", _absmax_int8(v)[0], seed))
        x = torch.zeros(8, n, dtype=torch.int64)
        x[:, 0] = 32767
        cases.append(("one outlier, rest 0", x, None))
    cases.append(("zero variance (constant rows)", torch.full((4, 768), -91), None))
    if digits is not None:
        for key, x in digits["norm"].items():
            cases.append((key, x, None))
    for name, x, seed in cases:
        for rms in (False, True):
            recs.append(_norm_case(name, x, seed, rms))
            progress.update()
    # issue 11 item 4: a well-spread int16 row, gamma 1, beta 0 (the scale is irrelevant)
    for rms in (False, True):
        recs.append(_norm_case("issue 11: [-289, 82, -240]", torch.tensor([[-289, 82, -240]]),
                               None, rms, affine=False))
        progress.update()
    return recs


def _bench_isqrt() -> list[dict]:
    recs = []
    for lo, hi in ((0, 1 << 12), (1 << 12, 1 << 20), (1 << 20, 1 << 24)):
        v = torch.arange(lo, hi)
        exact = torch.tensor([math.isqrt(i) for i in range(lo, hi, max(1, (hi - lo) // 4096))])
        sub = v[::max(1, (hi - lo) // 4096)]
        ours = I.isqrt(sub)
        ivit = I.ivit_isqrt(sub)
        recs.append(_rec("isqrt", f"v in [{lo}, {hi})", samples=int(sub.numel()),
                         ours_wrong_fraction=float((ours != exact).double().mean()),
                         ivit_wrong_fraction=float((ivit != exact.double()).double().mean()),
                         ivit_max_abs_err=float((ivit - exact.double()).abs().max())))
    recs.append(_rec("isqrt", "v = 100", ours=I.isqrt(100),
                     ivit=int(I.ivit_isqrt(torch.tensor([100]))[0]), exact=math.isqrt(100)))
    return recs


# --- the digits model's activations ------------------------------------------------------------

def _digits_activations() -> dict | None:
    """Hidden pre-activations and logits of the trained digits model, or None if absent."""
    try:
        from ternac.golden import mlp
        from ternac.golden.digits_data import load_split, quantize_pixels
        path = mlp.DEFAULT_CHECKPOINT
        if not Path(path).exists():
            return None
        ckpt = mlp.load_checkpoint(path)
        layers = mlp.int_layers_from_checkpoint(path)
        x = quantize_pixels(load_split()[2]).to(torch.int64)
    except Exception as exc:  # the model is optional for this bench
        print(f"digits model not used: {exc}", file=sys.stderr)
        return None
    shift, norm = {}, {}
    h = x
    for l, layer in enumerate(layers):
        acc = numerics.ternary_matvec(layer.trits, h)
        real = acc.double() * ckpt.layers[l].act_scale * ckpt.layers[l].gamma
        q, s = _absmax_int8(real)
        what = "logits" if layer.raw else f"layer {l} pre-activations"
        shift[f"digits {what} (int8 absmax)"] = (q, s)
        if not layer.raw:
            norm[f"digits {what} (int8 absmax)"] = q
            norm[f"digits {what} (raw accumulators)"] = acc
            h = numerics.relu(numerics.requantize(acc, layer.m, layer.s))
    return {"shiftmax": shift, "norm": norm,
            "elementwise": {k: v for k, v in shift.items() if "logits" not in k}}


def _bench_digits_elementwise(digits, progress) -> list[dict]:
    recs = []
    for key, (x, s) in digits["elementwise"].items():
        for name in _ELEMENTWISE:
            figs = _elementwise_errors(name, x.flatten(), s)
            recs.append(_rec(name, key, range_real=float(x.abs().max()) * s,
                             source="checkpoints/digits.safetensors", **figs))
        progress.update()
    return recs


# --- report ------------------------------------------------------------------------------------

def _f(v, digits=4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _markdown(res: dict) -> str:
    out = [f"# ternac numerics bench (measured, {res['elapsed_s']:.1f} s, torch "
           f"{res['torch']})", ""]
    out += ["## Sigmoid, SiLU, ShiftGELU (error in real units; targets: <= 0.05 + 1 LSB for "
            "|x| <= 8, <= 1 % |x| + 1 LSB beyond)", "",
            "| unit | inputs | max abs err | mean abs err | max err/|x| (|x|>8) | int8 out max err "
            "(LSB) | vs erf GELU | target |", "|---|---|---|---|---|---|---|---|"]
    for r in res["elementwise"]:
        if r["unit"] in ("shift_gelu_rows", "gelu_sigmoid"):
            continue
        i8 = (f"{r['int8_out_max_abs_err_real']:.3g} ({r['int8_out_lsb_real']:.3g})"
              if "int8_out_max_abs_err_real" in r else "-")
        out.append(f"| {r['unit']} | {r['inputs']} | {_f(r['max_abs_err_real'])} | "
                   f"{_f(r['mean_abs_err_real'])} | {_f(r['max_err_over_abs_x_outer_fraction'])} | "
                   f"{i8} | {_f(r.get('max_abs_err_vs_erf_gelu_real'))} | "
                   f"{_f(r['target_met'] and r.get('int8_out_target_met', True))} |")
    out += ["", "ShiftGELU on rows of 64 (I-ViT subtracts the row maximum; ours is elementwise):",
            "", "| inputs | seed | ours max abs err | I-ViT 8-bit max abs err | I-ViT mean abs err |",
            "|---|---|---|---|---|"]
    for r in res["elementwise"]:
        if r["unit"] == "shift_gelu_rows":
            out.append(f"| {r['inputs']} | {r['seed']} | {_f(r['ours_max_abs_err_real'])} | "
                       f"{_f(r['ivit8_max_abs_err_real'])} | {_f(r['ivit8_mean_abs_err_real'])} |")
    out += ["", "sigmoid(1.702 x), the sigmoid inside ShiftGELU (ours elementwise; I-ViT's on "
            "rows, its row maximum subtracted):", "",
            "| inputs | ours max / mean err | I-ViT 8-bit max / mean err | I-ViT 16-bit max / "
            "mean err |", "|---|---|---|---|"]
    for r in res["elementwise"]:
        if r["unit"] == "gelu_sigmoid":
            iv = [f"{_f(r.get(f'ivit{b}_max_abs_err'), 3)} / {_f(r.get(f'ivit{b}_mean_abs_err'), 3)}"
                  if f"ivit{b}_max_abs_err" in r else "-" for b in (8, 16)]
            out.append(f"| {r['inputs']} | {_f(r['ours_max_abs_err'], 3)} / "
                       f"{_f(r['ours_mean_abs_err'], 3)} | {iv[0]} | {iv[1]} |")
    out += ["", "## Shiftmax (probabilities; row-sum error = max |sum p - 1|; pmax = the "
            "largest probability; target: 16-bit row sums within 1 %)", "",
            "| inputs | N | rows | seed | ours16 row-sum err | ours16 pmax err | ours16 max / mean "
            "err | ours8 row-sum err | I-ViT8 row-sum err (min sum) | I-ViT8 pmax err | "
            "I-ViT16 row-sum err | target |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["shiftmax"]:
        out.append(
            f"| {r['inputs']} | {r['n']} | {r['rows']} | {_f(r.get('seed'))} | "
            f"{_f(r['ours16_row_sum_max_abs_err_fraction'], 3)} | {_f(r['ours16_pmax_max_abs_err'], 3)} | "
            f"{_f(r['ours16_max_abs_err'], 3)} / {_f(r['ours16_mean_abs_err'], 2)} | "
            f"{_f(r['ours8_row_sum_max_abs_err_fraction'], 3)} | "
            f"{_f(r['ivit8_row_sum_max_abs_err_fraction'], 3)} ({_f(r['ivit8_row_sum_min'], 3)}) | "
            f"{_f(r['ivit8_pmax_max_abs_err'], 3)} | {_f(r['ivit16_row_sum_max_abs_err_fraction'], 3)} | "
            f"{_f(r['target_met'])} |")
    out += ["", "## LayerNorm / RMSNorm (error in int8 / int16 output LSB against a float on "
            "the same integers; targets <= 1 / 2 LSB; y = normalized value, G = 8 / 16 "
            "fraction bits)", "",
            "| unit | inputs | N | seed | int8 max / mean err (LSB) | int16 max / mean err (LSB) "
            "| ours y max err, G = 8 | G = 16 | I-ViT y max err | V bits | I-ViT var-sum bits "
            "| target |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["norms"]:
        out.append(f"| {r['unit']} | {r['inputs']} | {r['n']} | {_f(r['seed'])} | "
                   f"{_f(r['max_abs_err_lsb'], 3)} / {_f(r['mean_abs_err_lsb'], 3)} | "
                   f"{_f(r['max_abs_err_lsb16'], 3)} / {_f(r['mean_abs_err_lsb16'], 3)} | "
                   f"{_f(r['y_ours_max_abs_err'], 3)} | {_f(r['y16_ours_max_abs_err'], 3)} | "
                   f"{_f(r.get('y_ivit_max_abs_err'), 3)} | "
                   f"{r['v_bits']} | {_f(r.get('ivit_var_sum_bits'))} | {_f(r['target_met'])} |")
    out += ["", "## Integer square root (ours: digit by digit; I-ViT: 10 Newton steps from 2^16)",
            "", "| inputs | ours wrong | I-ViT wrong | I-ViT max abs err |", "|---|---|---|---|"]
    for r in res["isqrt"]:
        if "ours_wrong_fraction" in r:
            out.append(f"| {r['inputs']} | {_f(r['ours_wrong_fraction'])} | "
                       f"{_f(r['ivit_wrong_fraction'])} | {_f(r['ivit_max_abs_err'])} |")
        else:
            out.append(f"| {r['inputs']} | {r['ours']} (exact {r['exact']}) | {r['ivit']} | - |")
    out += ["", f"all targets met: {_f(res['all_targets_met'])}", ""]
    return "\n".join(out)


def run(progress: bool = True) -> dict:
    """Run every measurement; returns the JSON-able result (all figures ``measured``)."""
    t0 = time.perf_counter()
    digits = _digits_activations()
    n_jobs = (len(_ELEMENTWISE) * (len(RANGES) + 2) + len(RANGES)
              + len(ROW_LENGTHS) * len(RANGES) + 4 + 2 + 6 + 2 * 22
              + (len(digits["shiftmax"]) + len(digits["elementwise"]) + 2 * len(digits["norm"])
                 if digits else 0))
    with tqdm(total=n_jobs, desc="bench numerics", unit="case", file=sys.stderr,
              disable=not progress, leave=False) as bar:
        elementwise = _bench_elementwise(bar)
        if digits is not None:
            elementwise += _bench_digits_elementwise(digits, bar)
        shift = _bench_shiftmax(bar, digits)
        norms = _bench_norms(bar, digits)
        sq = _bench_isqrt()
    all_ok = all(r.get("target_met", True) and r.get("int8_out_target_met", True)
                 for r in elementwise + shift + norms)
    return {
        "bench": "numerics", "kind": "measured", "torch": torch.__version__,
        "base_seed": BASE_SEED, "digits_model_used": digits is not None,
        "elementwise": elementwise, "shiftmax": shift, "norms": norms, "isqrt": sq,
        "all_targets_met": all_ok, "elapsed_s": time.perf_counter() - t0,
    }


def main(json_path: str | None = None) -> int:
    """Run the bench, print the Markdown tables, write JSON to ``json_path`` if given.

    The JSON is written through :func:`ternac.errors.write_json` (atomic: an existing file
    is replaced only by a complete one); its path is checked before the bench runs.

    Returns 0 if every accuracy target is met, 1 otherwise.

    Raises
    ------
    ternac.errors.InputError (one sentence) for a JSON path that cannot be written.
    """
    from ternac.errors import check_output_file, write_json
    check_output_file(json_path, "JSON output", make_folder=True)
    res = run(progress=sys.stderr.isatty())
    print(f"seeds: torch.Generator().manual_seed(s) with s from base seed {BASE_SEED} "
          f"(listed per row); digits model used: {res['digits_model_used']}")
    print(_markdown(res))
    if json_path:
        write_json(json_path, res)
        print(f"wrote {json_path}")
    return 0 if res["all_targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else None))
