"""The integer golden model of the MatMul-free LM (HGRN-Bit), one token at a time.

This is the bit-exact specification of the LM program (:mod:`ternac.lower`): the
program interpreter (:mod:`golden.interpreter`) and the RTL must produce exactly these
logits, token after token. It computes nothing of its own: every step is one of the
functions the interpreter calls for an instruction (:func:`golden.numerics.ternary_matvec`
and :func:`~golden.numerics.requantize` for MATVEC, :func:`golden.intops.int_rmsnorm`,
:func:`~golden.intops.sigmoid_q`, :func:`~golden.intops.gated_q`,
:func:`golden.vecops.eltwise_add` and :func:`~golden.vecops.eltwise_mul` for the vector
ops), with the operands the ISA gives them (RMSNORM: bias 0, eps 0). Floats appear only
offline, in the constants.

It is built from the float model of :mod:`golden.lm` *in static mode* (int8 BitLinear
inputs at calibrated ``act_scale``, int16 MLGRU state at ``h_scale``, int16 residual at
``residual_scale``, int8 embedding table) plus a calibration of the intermediates that the
float model keeps in float.

Integer dataflow (one token; d hidden, D MLGRU width, I GLU width; every tensor an
integer vector at a stated real scale; flags and ``(m, s)`` are the instruction's)
-----------------------------------------------------------------------------------------
::

    E  = EMBED(token)                           int8 table round(W_emb / emb_scale)
    R  = ADD(E, E; m,s = dyadic(emb_scale/res_scale), m2 = 0)    int16 residual, res_scale
    per layer l (state H_l: int16 at h_scale_l, kept across tokens):
      XW  = MUL(R, attn_norm.weight; x_mul)     int16 at xw_scale     (block norm, see 3.)
      XF  = RMSNORM(XW, f_proj.norm)            OUT8 at f_proj.act_scale (BitLinear norm)
      F_  = MATVEC(f_proj, XF) WIDE             int16 at f_scale
      F   = SIGMOID(F_; exp_gain(f_scale), m2,s2 = 1,0)           Q15 (2^15 = 1, sat 32767)
      NF  = SIGMOID(F_, NEG; same)              Q15, 1 - f  (NF = 2^15 - sigmoid_q exactly)
      [lower bound: F = ADD(MUL(F, OMLB; 1,14), LB; 1,0, 2,0); NF = MUL(NF, OMLB; 1,14),
       OMLB = round((1 - lb) 2^14), LB = round(lb 2^14): f = lb + (1 - lb) sigmoid]
      XI  = RMSNORM(XW, i_proj.norm) OUT8;   I_ = MATVEC(i_proj, XI) WIDE   at i_scale
      SI  = SILU(I_; exp_gain(i_scale), act_out_multiplier(i_scale, si_scale))  OUT16
      C   = MUL(SI, NF; dyadic(si_scale 2^-15 / h_scale))          at h_scale
      FH  = MUL(F, H; 1, 15)                                        at h_scale
      H   = ADD(FH, C; 1,0, 1,0)                                    the new state
      XG  = RMSNORM(XW, g_proj.norm) OUT8;   G_ = MATVEC(g_proj, XG) WIDE   at g_scale
      GW  = MUL(G_, g_norm.weight; gw_mul)      int16 at gw_scale     (g_norm, see 3.)
      SH  = SILU(H; exp_gain(h_scale), act_out_multiplier(h_scale, sh_scale))   OUT16
      O   = MUL(GW, SH; dyadic(gw_scale sh_scale / ow_scale))
      XO  = RMSNORM(O, o_proj.norm) OUT8;  OP = MATVEC(o_proj, XO) WIDE  at res_scale
      R   = ADD(R, OP; 1,0, 1,0)
      XMW = MUL(R, mlp_norm.weight; xm_mul) at xmw_scale;  XM = RMSNORM(XMW, gate_proj.norm) OUT8
      GT  = MATVEC(gate_proj[:I], XM) WIDE at gate_scale;  SG = SILU(GT) OUT16 at sg_scale
      Y   = MATVEC(gate_proj[I:], XM) WIDE at y_scale (the two halves of gate_proj, each with
            its own output scale; each op right after the MATVEC it reads: ternac.lower
            runs SG and Z as those MATVECs' epilogues)
      Z   = MUL(SG, Y; dyadic(sg_scale y_scale / z_scale))
      XD  = RMSNORM(Z, down_proj.norm) OUT8;  DP = MATVEC(down_proj, XD) WIDE  at res_scale
      R   = ADD(R, DP; 1,0, 1,0)
    XNW = MUL(R, norm.weight; xn_mul) at xnw_scale;  XL = RMSNORM(XNW, lm_head.norm) OUT8
    logits = MATVEC(lm_head, XL) RAW            int32, real value logits * gamma * act_scale
    next token (greedy) = ARGMAX(logits)        the smallest index of the maximum
  sampling (generate(greedy=False, seed)) instead:
    L16 = MATVEC(lm_head, XL) WIDE              int16 logits at logit16_scale (calibrated)
    P   = SHIFTMAX(L16; exp_gain(logit16_scale / temperature))   Q15 probabilities
    next token = SAMPLE(P, LFSR)                golden.sampler: 32-bit Galois LFSR, one step
                                                a token fed (prompt tokens included)

What was changed to make the model integer-only (each measured in docs/lm.md)
---------------------------------------------------------------------------
1. Static scales everywhere (the float model's static mode, trained with them): int8
   BitLinear inputs at ``act_scale`` instead of the reference's per-token absmax; int16
   state, residual and embedding table as the float static mode.
2. Every intermediate the float model keeps in float is an int16 vector at a calibrated
   scale ``2 * absmax / 32767`` (headroom x2), absmax measured by running the float static
   model on the first ``calib_chars`` characters of the training split (one stream from
   the zero state): the block-norm outputs, the pre-activations i, f, g, gate, y, SiLU
   outputs, g_norm, o = g_norm * SiLU(h), z = SiLU(gate) * y, the final norm.
3. Double RMSNorm: a block RMSNorm followed by a BitLinear's own RMSNorm (and g_norm, whose
   output o = g_norm(g) * SiLU(h) is RMS-normalized by o_proj's norm) keeps only the block
   norm's weight: RMSNorm_w2(w1 x / rms(x)) = RMSNorm_w2(w1 x) exactly, as RMSNorm is blind to
   a per-vector scale, so the block norm is one MUL by its int16 weight into an int16 vector
   calibrated like every other (``xw``, ``gw``, ``ow``, ``xmw``, ``xnw``), and only the
   BitLinear's integer RMSNorm (int8 at its scale) normalizes (validation bpc 2.2088 against
   2.2090 for two integer RMSNorms: measured, docs/lm.md).
4. Branch outputs (o_proj, down_proj) requantize (MATVEC WIDE) straight into the residual's
   scale; the embedding is brought to it by one ADD.
5. Sigmoid gates in Q15 fixed point; the shift-exp sigmoid/SiLU of :mod:`golden.intops`
   (max abs error ~0.015 on the sigmoid).
6. RMSNorms with eps = 0 (the vector unit's; the float eps 1e-6 / 1e-8 is far below the
   mean square of any real input), norm weights as 16-bit integers with
   ``|w| <= NORM_W_MAX = 127 * 256`` (so each splits into two int8 byte rows, see
   :mod:`ternac.lower`), 8 fraction bits of the normalized value (intops).
7. The MLGRU update ``h = f h + (1 - f) c`` computes ``f h`` and ``(1 - f) SiLU(i)`` each
   rounded to h_scale, then adds (the float static model rounds the sum once).
8. Log-probabilities (for bits per character) are ``log_softmax(logits * gamma *
   act_scale)`` in float64 from the integer logits: the accelerator's output is the int32
   logit vector and its ARGMAX; it needs no softmax for greedy decoding.
9. Sampling draws from the shift-exp Shiftmax of int16 logits (calibrated like every other
   int16 intermediate: ``2 * absmax / 32767`` of the float logits over the calibration
   text), Q15 probabilities, with the integer inverse-CDF draw of :mod:`golden.sampler`
   (2^-15 resolution), instead of a float softmax and a float uniform.

Sources: Zhu et al. 2024 (arXiv:2406.02528) and github ridgerchu/matmulfreellm for the
model; Jacob et al. 2018 (static calibrated ranges, dyadic requantization); Li & Gu 2023
(I-ViT) for the integer nonlinear units.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import intops, numerics, sampler
from .numerics import ACT_MAX, requantize, ternary_matvec
from .vecops import SHIFTMAX_OUT_BITS, eltwise_add, eltwise_mul
from .widths import WIDE_MAX

__all__ = ["HEADROOM", "NORM_W_MAX", "SIG_M2S2", "LB_FRAC_BITS", "DEFAULT_CALIB_CHARS",
           "IntLinear", "IntNorm", "IntAct", "IntLayer", "IntLM", "calibration_absmax",
           "int16_scale", "norm_consts", "compare_with_float"]

#: int16 intermediates: scale = HEADROOM * absmax / 32767 (as golden.lm's state/residual).
HEADROOM = 2.0
#: Largest |norm weight|: 127 * 256, so w = 256 * hi + lo with int8 hi and lo (the compiler
#: can then load a weight vector from the weight memory with two EMBEDs and one ADD).
NORM_W_MAX = 127 * 256
#: SIGMOID output (m2, s2): sigmoid_q's Q15 value unchanged (saturated at 32767).
SIG_M2S2 = (1, 0)
#: Fraction bits of the forget-gate lower-bound constants (Q14, so 1 - lb fits the staging).
LB_FRAC_BITS = 14
#: Characters of the training split the int16 scales are calibrated on.
DEFAULT_CALIB_CHARS = 2000
#: Smallest absmax a calibrated scale is computed from (a tensor that was always 0).
_ABSMAX_FLOOR = 1e-6


def int16_scale(absmax: float) -> float:
    """Real value of one LSB of a calibrated int16 intermediate: ``2 * absmax / 32767``."""
    return HEADROOM * max(float(absmax), _ABSMAX_FLOOR) / WIDE_MAX


@dataclasses.dataclass(frozen=True)
class IntLinear:
    """A BitLinear's integer MATVEC.

    trits : (N, K) int8 in {-1, 0, 1}; gamma : absmean scale (real weight = gamma * t);
    act_scale : real value of one LSB of the int8 input; out_scale : real LSB of the int16
    output (WIDE), or None for RAW (int32 accumulators, real value ``acc * gamma *
    act_scale``); m, s : ``dyadic(gamma * act_scale / out_scale)`` (0, 0 for RAW).
    """
    name: str
    trits: torch.Tensor
    gamma: float
    act_scale: float
    out_scale: float | None
    m: int = 0
    s: int = 0

    @property
    def raw(self) -> bool:
        return self.out_scale is None

    @property
    def acc_scale(self) -> float:
        """Real value of one accumulator LSB: ``gamma * act_scale``."""
        return self.gamma * self.act_scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        acc = ternary_matvec(self.trits, x)
        if self.raw:
            return acc
        return requantize(acc, self.m, self.s, -WIDE_MAX, WIDE_MAX)


@dataclasses.dataclass(frozen=True)
class IntNorm:
    """An integer RMSNORM (bias 0, eps 0): ``weight`` (n,) int64 with |w| <= NORM_W_MAX,
    ``(m, s) = dyadic(weight_scale * 2^-G / out_scale)`` with ``G =
    intops.norm_frac_bits(out_bits)``, ``out_bits`` 8 or 16."""
    name: str
    weight: torch.Tensor
    m: int
    s: int
    weight_scale: float
    out_scale: float
    out_bits: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return intops.int_rmsnorm(x, self.weight, torch.zeros_like(self.weight), self.m, self.s,
                                  eps=0, out_bits=self.out_bits)


@dataclasses.dataclass(frozen=True)
class IntAct:
    """A SIGMOID or SILU vector op's constants: exp gain ``(m, s)`` and output ``(m2, s2)``."""
    m: int
    s: int
    m2: int
    s2: int


def norm_consts(name: str, gamma: torch.Tensor, out_scale: float, out_bits: int) -> IntNorm:
    """Offline: the integers of an RMSNorm with float weight ``gamma`` writing ``out_scale``.

    As :func:`golden.intops.norm_params` (bias 0), but the weight scale is
    ``max|gamma| / NORM_W_MAX`` (so every weight splits into two int8 bytes):
    ``w = round(gamma / ws)``, ``(m, s) = numerics.dyadic(ws * 2^-G / out_scale)`` with
    ``G = intops.norm_frac_bits(out_bits)`` (8 for int8 outputs, 16 for int16).
    An all-zero gamma gives w = 0 (the output is then 0).
    """
    g = gamma.detach().to(torch.float64).flatten()
    gmax = float(g.abs().max()) if g.numel() else 0.0
    ws = gmax / NORM_W_MAX if gmax > 0 else 1.0
    w = torch.round(g / ws).to(torch.int64)
    m, s = numerics.dyadic(ws * 2.0 ** -intops.norm_frac_bits(out_bits) / out_scale)
    return IntNorm(name, w, m, s, ws, float(out_scale), out_bits)


def _silu(x_scale: float, out_scale: float) -> IntAct:
    return IntAct(*intops.exp_gain(x_scale), *intops.act_out_multiplier(x_scale, out_scale))


@dataclasses.dataclass(frozen=True)
class IntLayer:
    """The integer constants of one HGRN-Bit layer (names as the dataflow of the module
    docstring; ``lb``/``one_minus_lb`` are Q14 (D,) vectors or None). ``attn_norm``,
    ``g_norm`` and ``mlp_norm`` give their int16 weights (and weight scales) to the MULs
    ``x_mul``, ``gw_mul``, ``xm_mul`` (dyadic (m, s) to the calibrated ``xw``, ``gw``,
    ``xmw`` scales; their own (m, s) are unused)."""
    attn_norm: IntNorm
    i_in: IntNorm
    f_in: IntNorm
    g_in: IntNorm
    i_proj: IntLinear
    f_proj: IntLinear
    g_proj: IntLinear
    f_sig: IntAct
    i_silu: IntAct
    c_mul: tuple[int, int]
    g_norm: IntNorm
    h_silu: IntAct
    o_mul: tuple[int, int]
    o_in: IntNorm
    o_proj: IntLinear
    mlp_norm: IntNorm
    gate_in: IntNorm
    gate_proj: IntLinear
    y_proj: IntLinear
    gate_silu: IntAct
    z_mul: tuple[int, int]
    down_in: IntNorm
    down_proj: IntLinear
    h_scale: float
    x_mul: tuple[int, int] = (1, 15)
    gw_mul: tuple[int, int] = (1, 15)
    xm_mul: tuple[int, int] = (1, 15)
    lb: torch.Tensor | None = None
    one_minus_lb: torch.Tensor | None = None

    #: F * H >> 15: Q15 gate times the state stays at h_scale.
    fh_mul = (1, 15)


@torch.no_grad()
def calibration_absmax(model, ids: torch.Tensor, keep: dict | None = None
                       ) -> tuple[dict[str, float], torch.Tensor]:
    """Run the float model in static mode on one stream ``ids`` (T,) from the zero state
    and record the absmax of every intermediate the integer model holds as int16.

    This mirrors :class:`golden.lm.MatMulFreeLM`'s static evaluation step by step (its
    modules are called, so it is that model; the returned logits equal
    ``model(ids[None])`` in static eval mode, tested).

    If ``keep`` is a dict it receives every recorded float tensor, (T, n) each.

    Returns
    -------
    (absmax, logits) : ({name: float}, (T, V) float32). Names, per layer ``l``:
    ``layers.l.{x, xw, i, f, g, si, c, h, gn, sh, o, gw, ow, xm, xmw, gate, y, sg, z}``,
    ``xn``, ``xnw`` (the unnormalized weighted vectors ``r * w``, ``g * w``, ``gw * sh`` of
    the single-RMSNorm dataflow) and
    ``logits`` (the float lm_head output, calibrating the int16 logits that sampling uses).

    Raises
    ------
    RuntimeError (from golden.lm) if the model's static scales are not calibrated.
    """
    was_training, old_quant = model.training, model.quant
    model.eval().set_quant("static")
    amax: dict[str, float] = {}

    def rec(name: str, t: torch.Tensor) -> None:
        amax[name] = max(amax.get(name, 0.0), float(t.detach().abs().max()))
        if keep is not None:
            keep[name] = t.detach()[0]

    try:
        from .lm import mlgru_scan_sequential
        m = model.model
        x_ids = ids.to(torch.int64).view(1, -1)
        r = m._rq(m.embeddings(x_ids))
        for li, (layer, lb) in enumerate(zip(m.layers, m.lower_bound_values())):
            p = f"layers.{li}."
            attn = layer.attn
            x = layer.attn_norm(r)
            rec(p + "x", x)
            rec(p + "xw", r * layer.attn_norm.weight)
            i_, f_, g_ = attn.i_proj(x), attn.f_proj(x), attn.g_proj(x)
            rec(p + "i", i_), rec(p + "f", f_), rec(p + "g", g_)
            f = torch.sigmoid(f_)
            if lb is not None:
                f = lb + (1 - lb) * f
            si = F.silu(i_)
            c = si * (1 - f)
            rec(p + "si", si), rec(p + "c", c)
            h = mlgru_scan_sequential(f, c, None, attn._quant_h)
            rec(p + "h", h)
            gn, sh = attn.g_norm(g_), F.silu(h)
            o = gn * sh
            rec(p + "gn", gn), rec(p + "sh", sh), rec(p + "o", o)
            gw = g_ * attn.g_norm.weight
            rec(p + "gw", gw), rec(p + "ow", gw * sh)
            r = m._rq(r + attn.o_proj(o))
            xm = layer.mlp_norm(r)
            rec(p + "xm", xm)
            rec(p + "xmw", r * layer.mlp_norm.weight)
            gate, y = layer.mlp.gate_proj(xm).chunk(2, -1)
            sg = F.silu(gate)
            z = sg * y
            rec(p + "gate", gate), rec(p + "y", y), rec(p + "sg", sg), rec(p + "z", z)
            r = m._rq(r + layer.mlp.down_proj(z))
        xn = m.norm(r)
        rec("xn", xn)
        rec("xnw", r * m.norm.weight)
        logits = model.lm_head(xn)
        rec("logits", logits)
        logits = logits[0]
    finally:
        model.set_quant(old_quant)
        model.train(was_training)
    return amax, logits


def _linear(name: str, module, out_scale: float | None) -> IntLinear:
    t, gamma = numerics.absmean_ternarize(module.weight.detach().cpu())
    act = float(module.act_scale)
    if out_scale is None:
        return IntLinear(name, t, gamma, act, None)
    m, s = numerics.dyadic(gamma * act / out_scale)
    return IntLinear(name, t, gamma, act, float(out_scale), m, s)


def _split_linear(name: str, module, out_scales: tuple[float, float]) -> tuple[IntLinear, IntLinear]:
    """The two halves (gate, y) of gate_proj: one absmean gamma, two output scales."""
    t, gamma = numerics.absmean_ternarize(module.weight.detach().cpu())
    act = float(module.act_scale)
    half = t.shape[0] // 2
    out = []
    for part, tt, sc in (("gate", t[:half], out_scales[0]), ("y", t[half:], out_scales[1])):
        m, s = numerics.dyadic(gamma * act / sc)
        out.append(IntLinear(f"{name}.{part}", tt.contiguous(), gamma, act, float(sc), m, s))
    return out[0], out[1]


class IntLM:
    """The integer MatMul-free LM: trits, int8 embedding table, int16 norm weights and
    every dyadic ``(m, s)``, all fixed offline.

    Build with :meth:`from_checkpoint` or :meth:`from_model`. Attributes: ``config``
    (golden.lm.LMConfig), ``vocab`` (or None), ``emb_table`` (V, d) int64 in [-127, 127],
    ``emb_scale``, ``res_scale``, ``emb_res`` (m, s), ``layers`` (list of
    :class:`IntLayer`), ``final_norm``, ``head_norm`` (:class:`IntNorm`), ``lm_head``
    (RAW :class:`IntLinear`), ``lm_head_wide`` (the same trits as a WIDE :class:`IntLinear`
    writing int16 logits at ``scales["logits"]``, for sampling; None if not calibrated),
    ``absmax`` (the calibration measurements), ``scales`` ({name: real LSB} of every int16
    intermediate), ``calib_chars``.
    """

    def __init__(self, *, config, vocab, emb_table, emb_scale, res_scale, emb_res, layers,
                 final_norm, head_norm, lm_head, absmax, scales, calib_chars,
                 lm_head_wide: "IntLinear | None" = None, xn_mul: tuple[int, int] = (1, 15)):
        self.config = config
        self.vocab = vocab
        self.emb_table = emb_table
        self.emb_scale = emb_scale
        self.res_scale = res_scale
        self.emb_res = emb_res
        self.layers = layers
        self.final_norm = final_norm
        self.head_norm = head_norm
        self.lm_head = lm_head
        self.absmax = absmax
        self.scales = scales
        self.calib_chars = calib_chars
        self.lm_head_wide = lm_head_wide
        self.xn_mul = xn_mul

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_model(cls, model, calib_ids: torch.Tensor, vocab=None) -> "IntLM":
        """Build the integer model of a float :class:`golden.lm.MatMulFreeLM` whose static
        scales are calibrated, calibrating the int16 intermediates on ``calib_ids`` (T,).

        Raises
        ------
        ValueError if the model's static scales are not calibrated, ``calib_ids`` is empty
        or outside the vocabulary, or a constant cannot be represented (numerics.dyadic).
        """
        if not model.calibrated:
            raise ValueError("the float model's static scales are not calibrated (act_scale, "
                             "h_scale, residual_scale); run golden.lm.calibrate first")
        ids = torch.as_tensor(calib_ids, dtype=torch.int64).flatten()
        V = model.config.vocab_size
        if ids.numel() < 1 or int(ids.min()) < 0 or int(ids.max()) >= V:
            raise ValueError(f"calibration needs at least one token id in [0, {V}), not "
                             f"{ids.numel()} ids")
        amax, _ = calibration_absmax(model, ids)
        sc = {k: int16_scale(v) for k, v in amax.items()}
        mm = model.model
        emb = mm.embeddings
        es = emb.table_scale()                               # float32 0-d, as the float model
        table = torch.clamp(torch.round(emb.weight.detach() / es), -ACT_MAX, ACT_MAX)
        emb_scale, res_scale = float(es), float(mm.residual_scale)
        scales = dict(sc, emb=emb_scale, res=res_scale)
        layers = []
        for li, (layer, lb) in enumerate(zip(mm.layers, mm.lower_bound_values())):
            p = f"layers.{li}."
            a, mlp = layer.attn, layer.mlp
            h_scale = float(a.h_scale)
            scales[p + "h"] = h_scale
            x_s = sc[p + "x"]
            i_proj = _linear(p + "attn.i_proj", a.i_proj, sc[p + "i"])
            f_proj = _linear(p + "attn.f_proj", a.f_proj, sc[p + "f"])
            g_proj = _linear(p + "attn.g_proj", a.g_proj, sc[p + "g"])
            o_proj = _linear(p + "attn.o_proj", a.o_proj, res_scale)
            gate_proj, y_proj = _split_linear(p + "mlp.gate_proj", mlp.gate_proj,
                                              (sc[p + "gate"], sc[p + "y"]))
            down_proj = _linear(p + "mlp.down_proj", mlp.down_proj, res_scale)
            lbq = omlb = None
            if lb is not None:
                one = 1 << LB_FRAC_BITS
                lbv = lb.detach().to(torch.float64)
                lbq = torch.clamp(torch.round(lbv * one), 0, one).to(torch.int64)
                omlb = torch.clamp(torch.round((1 - lbv) * one), 0, one).to(torch.int64)
            attn_norm = norm_consts(p + "attn_norm", layer.attn_norm.weight, x_s, 16)
            g_norm = norm_consts(p + "attn.g_norm", a.g_norm.weight, sc[p + "gn"], 16)
            mlp_norm = norm_consts(p + "mlp_norm", layer.mlp_norm.weight, sc[p + "xm"], 16)
            layers.append(IntLayer(
                attn_norm=attn_norm,
                i_in=norm_consts(p + "attn.i_proj.norm", a.i_proj.norm.weight, i_proj.act_scale, 8),
                f_in=norm_consts(p + "attn.f_proj.norm", a.f_proj.norm.weight, f_proj.act_scale, 8),
                g_in=norm_consts(p + "attn.g_proj.norm", a.g_proj.norm.weight, g_proj.act_scale, 8),
                i_proj=i_proj, f_proj=f_proj, g_proj=g_proj,
                f_sig=IntAct(*intops.exp_gain(sc[p + "f"]), *SIG_M2S2),
                i_silu=_silu(sc[p + "i"], sc[p + "si"]),
                c_mul=numerics.dyadic(sc[p + "si"] * 2.0 ** -intops.SIG_FRAC_BITS / h_scale),
                g_norm=g_norm,
                h_silu=_silu(h_scale, sc[p + "sh"]),
                o_mul=numerics.dyadic(sc[p + "gw"] * sc[p + "sh"] / sc[p + "ow"]),
                o_in=norm_consts(p + "attn.o_proj.norm", a.o_proj.norm.weight, o_proj.act_scale, 8),
                o_proj=o_proj,
                mlp_norm=mlp_norm,
                gate_in=norm_consts(p + "mlp.gate_proj.norm", mlp.gate_proj.norm.weight,
                                    gate_proj.act_scale, 8),
                gate_proj=gate_proj, y_proj=y_proj,
                gate_silu=_silu(sc[p + "gate"], sc[p + "sg"]),
                z_mul=numerics.dyadic(sc[p + "sg"] * sc[p + "y"] / sc[p + "z"]),
                down_in=norm_consts(p + "mlp.down_proj.norm", mlp.down_proj.norm.weight,
                                    down_proj.act_scale, 8),
                down_proj=down_proj, h_scale=h_scale,
                x_mul=numerics.dyadic(res_scale * attn_norm.weight_scale / sc[p + "xw"]),
                gw_mul=numerics.dyadic(sc[p + "g"] * g_norm.weight_scale / sc[p + "gw"]),
                xm_mul=numerics.dyadic(res_scale * mlp_norm.weight_scale / sc[p + "xmw"]),
                lb=lbq, one_minus_lb=omlb))
        lm_head = _linear("lm_head", model.lm_head, None)
        lm_head_wide = _linear("lm_head", model.lm_head, sc["logits"])
        final_norm = norm_consts("norm", mm.norm.weight, sc["xn"], 16)
        return cls(config=model.config, vocab=vocab, emb_table=table.to(torch.int64),
                   emb_scale=emb_scale, res_scale=res_scale,
                   emb_res=numerics.dyadic(emb_scale / res_scale), layers=layers,
                   final_norm=final_norm,
                   xn_mul=numerics.dyadic(res_scale * final_norm.weight_scale / sc["xnw"]),
                   head_norm=norm_consts("lm_head.norm", model.lm_head.norm.weight,
                                         lm_head.act_scale, 8),
                   lm_head=lm_head, absmax=amax, scales=scales, calib_chars=int(ids.numel()),
                   lm_head_wide=lm_head_wide)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, calib_chars: int = DEFAULT_CALIB_CHARS,
                        text_path: str | Path | None = None) -> "IntLM":
        """Load a :func:`golden.lm.save_checkpoint` file (default the committed
        ``checkpoints/shakespeare.safetensors``) and build its integer model, calibrating
        the int16 intermediates on the first ``calib_chars`` characters of the training
        split of the corpus (``text_path``, default golden.shakespeare_data.DEFAULT_TEXT).

        A checkpoint without static scales is calibrated first (golden.lm.calibrate on the
        training split, seed 0).

        Raises
        ------
        ValueError (one sentence) for an unreadable checkpoint or corpus, a corpus whose
        characters the checkpoint's vocabulary does not hold, or ``calib_chars`` < 1.
        """
        from .lm import DEFAULT_CHECKPOINT, calibrate, load_checkpoint
        from .shakespeare_data import TRAIN_FRACTION, read_text

        if not (isinstance(calib_chars, int) and calib_chars >= 1):
            raise ValueError(f"calib_chars must be a positive integer, not {calib_chars!r}")
        model, vocab, _ = load_checkpoint(DEFAULT_CHECKPOINT if path is None else path)
        text = read_text(text_path)
        train = text[:int(TRAIN_FRACTION * len(text))]
        if not model.calibrated:
            calibrate(model, vocab.encode(train))
        return cls.from_model(model, vocab.encode(train[:calib_chars]), vocab)

    # --- inference ---------------------------------------------------------------------

    @property
    def logit_scale(self) -> float:
        """Real value of one logit LSB: lm_head's ``gamma * act_scale``."""
        return self.lm_head.acc_scale

    @property
    def logit16_scale(self) -> float:
        """Real value of one LSB of the int16 logits that sampling uses (``lm_head_wide``):
        ``2 * absmax / 32767`` of the float logits over the calibration text.

        Raises
        ------
        ValueError if the model has no int16 logits (built without ``lm_head_wide``).
        """
        return self._wide().out_scale

    def _wide(self) -> IntLinear:
        if self.lm_head_wide is None:
            raise ValueError("this IntLM has no calibrated int16 logits (lm_head_wide); build it "
                             "with IntLM.from_model or IntLM.from_checkpoint to sample")
        return self.lm_head_wide

    def sample_gain(self, temperature: float = 1.0) -> tuple[int, int]:
        """The SHIFTMAX exp gain ``(m, s) = exp_gain(logit16_scale / temperature)``: the
        temperature is folded into the constant (``p ~ exp(logit / T)``).

        Raises
        ------
        ValueError if ``temperature`` is not positive and finite, or the model has no int16
        logits.
        """
        t = float(temperature)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"the temperature must be positive and finite, not {temperature!r}")
        return intops.exp_gain(self.logit16_scale / t)

    def probabilities(self, logits16: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The SHIFTMAX of int16 logits: Q15 probabilities (int64, ``out_bits = 15``), as
        the sampling program computes them."""
        return intops.shiftmax_q(torch.as_tensor(logits16, dtype=torch.int64),
                                 *self.sample_gain(temperature), SHIFTMAX_OUT_BITS)

    def init_state(self, batch: int | None = None) -> list[torch.Tensor]:
        """The zero MLGRU state: one int64 (D,) (or (batch, D)) tensor a layer."""
        shape = (self.config.attn_size,) if batch is None else (batch, self.config.attn_size)
        return [torch.zeros(shape, dtype=torch.int64) for _ in self.layers]

    def graph(self, sample: bool = False, temperature: float = 1.0, *,
              with_logits16: bool = False):
        """The LM's one-token model graph (:mod:`ternac.golden.graph`): the dataflow of the
        module docstring, node for node.

        Vectors: input ``token`` (1 word); state ``layers.l.H`` (D, int16 at h_scale) and,
        for sampling, ``lfsr`` (2 words, golden.sampler); consts: every RMSNorm weight by its
        norm's name (int16, ``|w| <= NORM_W_MAX``) and the Q14 lower-bound vectors
        ``layers.l.attn.one_minus_lb`` / ``.lb`` of an imported model; table
        ``embeddings`` (V, d) int8; one weight matrix a BitLinear (``lm_head`` once).
        Greedy (default): ``logits`` = MATVEC RAW lm_head (int32), ARGMAX. ``sample``:
        ``logits16`` = MATVEC WIDE lm_head (int16 at logit16_scale), ``probs`` = SHIFTMAX
        with ``sample_gain(temperature)`` (Q15), SAMPLE over them with the ``lfsr`` state.
        ``with_logits16`` (greedy only) also computes ``logits16`` (for a trace).

        Raises
        ------
        ValueError for a bad temperature or, when sampling, a model without int16 logits.
        """
        key = (bool(sample), float(temperature) if sample else None, bool(with_logits16))
        cache = self.__dict__.setdefault("_graphs", {})
        if key in cache:
            return cache[key]
        from .graph import Graph, Vec
        from .isa import Flag, Op

        c = self.config
        d, D, V = c.hidden_size, c.attn_size, c.vocab_size
        g = Graph(name="matmulfree-lm")
        WIDE, OUT8, NEG, RAW = int(Flag.WIDE), int(Flag.OUT8), int(Flag.NEG), int(Flag.RAW)
        tok = g.input("token", 1, bits=16)
        states = [g.state(f"layers.{i}.H", D, 16, L.h_scale) for i, L in enumerate(self.layers)]
        lfsr = g.state("lfsr", 2, 16) if sample else None
        consts: dict[str, str] = {}

        def const(name, values):
            if name not in consts:
                consts[name] = g.const(name, values, 16)
            return consts[name]

        def norm(x, nm, out):
            w = const(nm.name, nm.weight)
            return g.add(Op.RMSNORM, Vec(out, g.vecs[x].n, nm.out_bits, nm.out_scale), x, w,
                         m=nm.m, s=nm.s, flags=OUT8 if nm.out_bits == 8 else 0)

        def weight(lin):
            if lin.name not in g.weights:
                g.weight(lin.name, lin.trits, lin.gamma, lin.act_scale)
            return lin.name

        def matvec(x, lin, out):
            n = int(lin.trits.shape[0])
            return g.add(Op.MATVEC, Vec(out, n, 16, lin.out_scale), x, weight=weight(lin),
                         m=lin.m, s=lin.s, flags=WIDE)

        def act(op, x, a, out, flags=0):
            return g.add(op, Vec(out, g.vecs[x].n, 16), x, m=a.m, s=a.s, m2=a.m2, s2=a.s2,
                         flags=flags)

        def mul(x, y, ms, out):
            o = out if out in g.vecs else Vec(out, g.vecs[x].n, 16)
            return g.add(Op.MUL, o, x, y, m=ms[0], s=ms[1])

        def add(x, y, ms, ms2, out):
            o = out if out in g.vecs else Vec(out, g.vecs[x].n, 16)
            return g.add(Op.ADD, o, x, y, m=ms[0], s=ms[1], m2=ms2[0], s2=ms2[1])

        g.table("embeddings", self.emb_table)
        E = g.add(Op.EMBED, Vec("E", d, 8, self.emb_scale), tok, weight="embeddings")
        R = add(E, E, self.emb_res, (0, 0), "R")
        for li, L in enumerate(self.layers):
            p = f"layers.{li}."
            H = states[li]
            XW = mul(R, const(L.attn_norm.name, L.attn_norm.weight), L.x_mul, p + "XW")
            F_ = matvec(norm(XW, L.f_in, p + "XF"), L.f_proj, p + "F_")
            lb = L.lb is not None
            Fq = act(Op.SIGMOID, F_, L.f_sig, p + ("F0" if lb else "F"))
            NF = act(Op.SIGMOID, F_, L.f_sig, p + ("NF0" if lb else "NF"), NEG)
            if lb:
                omlb = const(p + "attn.one_minus_lb", L.one_minus_lb)
                lbv = const(p + "attn.lb", L.lb)
                Fq = add(mul(Fq, omlb, (1, LB_FRAC_BITS), p + "F*(1-lb)"), lbv, (1, 0),
                         (1 << (15 - LB_FRAC_BITS), 0), p + "F")
                NF = mul(NF, omlb, (1, LB_FRAC_BITS), p + "NF")
            # f h right after f (the pair's f streams into it on an op_chain build)
            FH = mul(Fq, H, L.fh_mul, p + "FH")
            I_ = matvec(norm(XW, L.i_in, p + "XI"), L.i_proj, p + "I_")
            SI = act(Op.SILU, I_, L.i_silu, p + "SI")
            C = mul(SI, NF, L.c_mul, p + "C")
            add(FH, C, (1, 0), (1, 0), H)
            G_ = matvec(norm(XW, L.g_in, p + "XG"), L.g_proj, p + "G_")
            GW = mul(G_, const(L.g_norm.name, L.g_norm.weight), L.gw_mul, p + "GW")
            SH = act(Op.SILU, H, L.h_silu, p + "SH")
            O = mul(GW, SH, L.o_mul, p + "O")
            OP = matvec(norm(O, L.o_in, p + "XO"), L.o_proj, p + "OP")
            R = add(R, OP, (1, 0), (1, 0), p + "R1")
            XMW = mul(R, const(L.mlp_norm.name, L.mlp_norm.weight), L.xm_mul, p + "XMW")
            XM = norm(XMW, L.gate_in, p + "XM")
            GT = matvec(XM, L.gate_proj, p + "GT")
            SG = act(Op.SILU, GT, L.gate_silu, p + "SG")     # (each op right after the
            Y = matvec(XM, L.y_proj, p + "Y")                 # MATVEC it reads: epilogues)
            Z = mul(SG, Y, L.z_mul, p + "Z")
            DP = matvec(norm(Z, L.down_in, p + "XD"), L.down_proj, p + "DP")
            R = add(R, DP, (1, 0), (1, 0), p + "R2")
        XNW = mul(R, const(self.final_norm.name, self.final_norm.weight), self.xn_mul, "XNW")
        XL = norm(XNW, self.head_norm, "XL")
        head = weight(self.lm_head)
        if sample or with_logits16:
            lw = self._wide()
            L16 = g.add(Op.MATVEC, Vec("logits16", V, 16, lw.out_scale), XL, weight=head,
                        m=lw.m, s=lw.s, flags=WIDE)
        if sample:
            gm, gs = self.sample_gain(temperature)
            P = g.add(Op.SHIFTMAX, Vec("probs", V, 15), L16, m=gm, s=gs)
            g.add(Op.SAMPLE, lfsr, P, lfsr)
            g.outputs = [L16]
        else:
            logits = g.add(Op.MATVEC, Vec("logits", V, 32, self.logit_scale), XL, weight=head,
                           flags=RAW)
            g.add(Op.ARGMAX, None, logits)
            g.outputs = [logits]
        cache[key] = g
        return g

    def step(self, token, state: list[torch.Tensor] | None = None, *,
             trace: dict | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One token through the integer model: an evaluation of :meth:`graph`.

        Parameters
        ----------
        token : int, or (B,) integer tensor of token ids in [0, V)
        state : list of L int64 tensors (D,) (or (B, D)), int16 values at each layer's
            h_scale; None for the zero state
        trace : optional dict; receives every vector of the graph by name
            (``layers.l.XW``, ..., ``XL``, ``logits``) and, if the model has int16 logits
            (``lm_head_wide``), ``logits16`` (the sampling program's MATVEC WIDE; computed
            only when a trace is asked for)

        Returns
        -------
        (logits, new_state) : (V,) (or (B, V)) int64 raw lm_head accumulators (int32
        range), and the new state list.

        Raises
        ------
        ValueError for a token id outside the vocabulary or a state of the wrong shape.
        """
        scalar = not isinstance(token, torch.Tensor) or token.dim() == 0
        tok = torch.as_tensor(token, dtype=torch.int64).reshape(-1)
        V = self.config.vocab_size
        if tok.numel() and (int(tok.min()) < 0 or int(tok.max()) >= V):
            raise ValueError(f"token id {int(tok.max()) if int(tok.max()) >= V else int(tok.min())} "
                             f"is outside the vocabulary [0, {V})")
        B = tok.numel()
        if state is None:
            state = self.init_state(B)
        if len(state) != len(self.layers):
            raise ValueError(f"the state has {len(state)} tensors, the model {len(self.layers)} layers")
        state = [s.to(torch.int64).reshape(B, -1) for s in state]
        g = self.graph(with_logits16=trace is not None and self.lm_head_wide is not None)
        env = g.evaluate({"token": tok[:, None]},
                         {f"layers.{i}.H": h for i, h in enumerate(state)})
        if trace is not None:
            for name, v in env.items():
                if name not in g.consts and name != "result":
                    trace[name] = v
        logits = env["logits"]
        new_state = [env[f"layers.{i}.H"] for i in range(len(self.layers))]
        if scalar:
            return logits[0], [h[0] for h in new_state]
        return logits, new_state

    @staticmethod
    def argmax(logits: torch.Tensor) -> torch.Tensor:
        """The smallest index of the maximum over the last axis (the ARGMAX instruction,
        :func:`ternac.golden.vecops.argmax`)."""
        from .vecops import argmax

        return argmax(logits)

    def generate(self, prompt_ids, n: int, greedy: bool = True, seed: int | None = None,
                 temperature: float = 1.0, logits_out: list | None = None,
                 on_token=None) -> list[int]:
        """Feed ``prompt_ids`` and continue for ``n`` tokens; returns the new ids.

        Greedy (default): each next token is the ARGMAX of the raw int32 logits (the
        greedy program's result). Sampling (``greedy=False``, ``seed`` required): at every
        token fed, the int16 logits ``L16`` (``lm_head_wide``), ``P = shiftmax_q(L16,
        *sample_gain(temperature), 15)`` and ``golden.sampler.sample_index(P, state)`` with
        ``state = sampler.seed_state(seed)`` at the start, carried across tokens (the
        sampling program's MATVEC WIDE, SHIFTMAX, SAMPLE). The LFSR steps once per token
        *fed*, prompt tokens included (their draws are discarded, as the host discards the
        result register while it feeds the prompt); so ``len(prompt) + n - 1`` draws.

        Parameters
        ----------
        logits_out : optional list; receives the logits of every step (``len(prompt) + n
            - 1`` of them, lists of int): raw int32 for greedy, int16 for sampling.
        on_token : optional callable(int); called with each new id as soon as its step is
            done, in order (``n`` calls).

        Raises
        ------
        ValueError for an empty prompt, n < 0, ``greedy=False`` without a seed, a bad
        temperature, or a model without int16 logits.
        """
        ids = [int(t) for t in (prompt_ids.tolist() if isinstance(prompt_ids, torch.Tensor)
                                else prompt_ids)]
        if not ids:
            raise ValueError("the prompt must hold at least one token")
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n!r}")
        if not greedy:
            if seed is None:
                raise ValueError("sampling (greedy=False) needs a seed")
            g = self.graph(sample=True, temperature=temperature)
            lo, hi = sampler.split_state(sampler.seed_state(seed))
        if n == 0:
            return []
        state = self.init_state()
        out: list[int] = []
        seq = list(ids)
        for k in range(len(ids) + n - 1):
            if greedy:
                logits, state = self.step(seq[k], state)
                nxt = int(self.argmax(logits))
                shown = logits
            else:
                feeds = {f"layers.{i}.H": h for i, h in enumerate(state)}
                feeds["lfsr"] = torch.tensor([lo, hi], dtype=torch.int64)
                env = g.evaluate({"token": torch.tensor([seq[k]])}, feeds)
                state = [env[f"layers.{i}.H"] for i in range(len(self.layers))]
                lo, hi = (int(v) for v in env["lfsr"])
                nxt, shown = int(env["result"]), env["logits16"]
            if logits_out is not None:
                logits_out.append([int(v) for v in shown.tolist()])
            if k + 1 >= len(ids):
                out.append(nxt)
                seq.append(nxt)
                if on_token is not None:
                    on_token(nxt)
        return out

    @torch.no_grad()
    def bpc(self, text_ids, n_streams: int = 32, progress: bool = False) -> float:
        """Bits per character of the integer model on ``text_ids`` (e.g. validation).

        As :func:`golden.lm.evaluate_bpc`: the ids are cut into ``n_streams`` contiguous
        streams (the tail that does not divide is dropped), each read from its start with
        the zero state, predicting every token but the first of its stream; the streams run
        as one batch. The log-probabilities are ``log_softmax(logits * logit_scale)`` in
        float64 from the integer logits (the accelerator needs no softmax for greedy
        decoding; this only measures the model). Returns mean cross-entropy / ln 2.

        Raises
        ------
        ValueError if a stream would hold fewer than 2 tokens.
        """
        ids = torch.as_tensor(text_ids, dtype=torch.int64).flatten()
        n = ids.numel() // n_streams
        if n < 2:
            raise ValueError(f"{ids.numel()} tokens are too few for {n_streams} streams")
        s = ids[:n * n_streams].view(n_streams, n)
        state = self.init_state(n_streams)
        total = 0.0
        it = range(n - 1)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="integer bpc", unit="tok")
        for t in it:
            logits, state = self.step(s[:, t], state)
            lp = torch.log_softmax(logits.to(torch.float64) * self.logit_scale, -1)
            total -= float(lp.gather(1, s[:, t + 1:t + 2]).sum())
        return total / ((n - 1) * n_streams) / math.log(2)


# ---------------------------------------------------------------------------------------
# Measurement: the integer model against the float static model
# ---------------------------------------------------------------------------------------

#: Integer intermediates of :meth:`IntLM.step`'s trace and the float mirror's names.
_TRACE_FLOAT = {"XW": "xw", "F_": "f", "I_": "i", "G_": "g", "SI": "si", "C": "c", "H": "h",
                "GW": "gw", "SH": "sh", "O": "ow", "XMW": "xmw", "GT": "gate", "Y": "y",
                "SG": "sg", "Z": "z"}


@torch.no_grad()
def compare_with_float(intlm: IntLM, model, ids: torch.Tensor) -> dict:
    """Run the integer model and the float static model (:func:`calibration_absmax`'s
    mirror) on one stream ``ids`` from the zero state and compare every intermediate.

    Returns
    -------
    dict: ``intermediates`` {``layers.l.NAME``: {``rel_rms_error`` (mean over tokens of
    ``||int * scale - float|| / ||float||``), ``saturated`` (fraction of int16 elements at
    +-32767)}}, ``logits_rel_rms_error``, ``argmax_agreement`` (fraction of tokens whose
    integer ARGMAX equals the float argmax), ``tokens``.
    """
    keep: dict = {}
    _, flog = calibration_absmax(model, ids, keep)
    state = intlm.init_state()
    err: dict[str, list[float]] = {}
    sat: dict[str, list[float]] = {}
    lerr, agree = [], 0
    for k in range(ids.numel()):
        tr: dict = {}
        logits, state = intlm.step(int(ids[k]), state, trace=tr)
        for li, L in enumerate(intlm.layers):
            for a, b in _TRACE_FLOAT.items():
                iv = tr[f"layers.{li}.{a}"]
                sc = L.h_scale if b in ("c", "h") else intlm.scales[f"layers.{li}.{b}"]
                fv = keep[f"layers.{li}.{b}"][k].to(torch.float64)
                name = f"layers.{li}.{a}"
                err.setdefault(name, []).append(
                    float((iv.to(torch.float64) * sc - fv).norm() / fv.norm().clamp_min(1e-30)))
                sat.setdefault(name, []).append(float((iv.abs() >= WIDE_MAX).double().mean()))
        fl = flog[k].to(torch.float64)
        lerr.append(float((logits.to(torch.float64) * intlm.logit_scale - fl).norm() / fl.norm()))
        agree += int(IntLM.argmax(logits)) == int(IntLM.argmax(flog[k]))
    n = ids.numel()
    return {"tokens": n,
            "intermediates": {k: {"rel_rms_error": sum(v) / n, "saturated": sum(sat[k]) / n}
                              for k, v in err.items()},
            "logits_rel_rms_error": sum(lerr) / n, "argmax_agreement": agree / n}


def main(argv=None) -> int:
    """``python -m ternac.golden.lm_int [--checkpoint P] [--val-chars N] [--streams S] [--json F]``:
    validation bits per character of the float model (per-token and static) and of the
    integer model on the same streams, and the per-intermediate error table."""
    import argparse
    import json
    import time

    from .lm import evaluate_bpc, load_checkpoint
    from .shakespeare_data import load_corpus

    ap = argparse.ArgumentParser(prog="python -m ternac.golden.lm_int", description=main.__doc__)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--val-chars", type=int, default=None, help="first N validation characters (default all)")
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--compare-tokens", type=int, default=500)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    im = IntLM.from_checkpoint(a.checkpoint)
    model, _, _ = load_checkpoint(a.checkpoint) if a.checkpoint else load_checkpoint()
    corpus = load_corpus()
    val = corpus.val if a.val_chars is None else corpus.val[:a.val_chars]
    r = {"checkpoint": a.checkpoint or "default", "val_chars": int(val.numel()),
         "n_streams": a.streams, "calib_chars": im.calib_chars,
         "bpc_float_per_token": evaluate_bpc(model, val, "per_token", n_streams=a.streams),
         "bpc_float_static": evaluate_bpc(model, val, "static", n_streams=a.streams)}
    t = time.perf_counter()
    r["bpc_integer"] = im.bpc(val, n_streams=a.streams, progress=True)
    r["seconds_integer_bpc"] = round(time.perf_counter() - t, 1)
    r["compare"] = compare_with_float(im, model, corpus.val[:a.compare_tokens])
    r["seconds_total"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(r, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
