"""The MatMul-free language model (HGRN-Bit): float QAT model, training, checkpoint.

The float model of ternac's flagship: the MatMul-free LM of Zhu et al. 2024 ("Scalable
MatMul-free Language Modeling", arXiv:2406.02528), with the structure and the tensor names
of its reference code (github ridgerchu/matmulfreellm, ``HGRNBitForCausalLM``), so
checkpoints in the reference's Hugging Face layout load into it (:mod:`golden.lm_import`).
The integer golden model is built on this one; the module is written so that the float
model *in static mode* is what the integer model computes, up to rounding.

Architecture (one token; d = hidden_size, D = d * expand_ratio, I = intermediate_size)
--------------------------------------------------------------------------------------
Every :class:`LMBitLinear` is, as the reference's BitLinear: its own RMSNorm (weight
``<name>.norm.weight``), 8-bit activation quantization, absmean-ternary weights
(straight-through), no bias. The eps of that RMSNorm, the rule of the absmean scale and the
per-token activation rounding are the model's *conventions* (:attr:`LMConfig.conventions`,
see "Conventions" below): ``"ternac"`` (the committed checkpoint's) or
``"matmulfreellm@9e6fd30"`` (the reference's ``FusedBitLinear``, for imported checkpoints).

::

    r = embeddings[token]                                   model.embeddings.weight (V, d)
    for each layer i:
        x = RMSNorm(r)                                      .attn_norm.weight
        i_ = i_proj(x); f_ = f_proj(x); g_ = g_proj(x)      .attn.{i,f,g}_proj (d -> D)
        f = sigmoid(f_)        [lower bound: f = lb + (1 - lb) f, only if use_lower_bound]
        c = SiLU(i_) * (1 - f)
        h_t = f * h_{t-1} + c                               the MLGRU state, (D,) per layer
        o = RMSNorm(g_) * SiLU(h_t)                         .attn.g_norm.weight
        r = r + o_proj(o)                                   .attn.o_proj (D -> d)
        x = RMSNorm(r)                                      .mlp_norm.weight
        gate, y = split(gate_proj(x))                       .mlp.gate_proj (d -> 2I)
        r = r + down_proj(SiLU(gate) * y)                   .mlp.down_proj (I -> d)
    logits = lm_head(RMSNorm(r))                            model.norm.weight, lm_head (d -> V)

Facts checked against the reference code (ridgerchu/matmulfreellm; commit 5a584d4 of its
``bitblas`` branch, and master at 9e6fd30, whose forward files are unchanged up to a016f72):
``HGRNBitAttention.forward`` computes ``i = swiglu(i, 1 - f)`` = SiLU(i)(1 - f) and
``fused_recurrent_hgrn`` runs ``h = f * h + i``; the output gate is
``g_norm = FusedRMSNormSwishGate`` called as ``g_norm(g_proj(x), o)``, whose kernel computes
``RMSNorm(g_proj(x)) * w * o * sigmoid(o)``, i.e. the RMSNorm is on the g_proj branch and
the SiLU on the recurrent state (the paper's equations put a sigmoid gate on g instead;
this module follows the code). ``HGRNBitMLP`` splits ``gate_proj`` (d -> 2I) into
``gate, y`` and applies ``down_proj(swiglu(gate, y))``. ``BitLinear`` holds an RMSNorm
of its input and quantizes activations per token with absmax to 8 bits (its eps: see
"Conventions").
``HGRNBitConfig`` defaults ``use_lower_bound=True``; the model trained here sets it False
(the plain ``f = sigmoid(f_proj x)``, one elementwise op fewer in the integer model); the
lower bound is implemented for imported checkpoints.

Conventions (:attr:`LMConfig.conventions`, :data:`CONVENTIONS`)
----------------------------------------------------------------
Three rules of the BitLinear that the reference states one way and the committed checkpoint
was trained another way; a model follows one set, named in its config (and in every
checkpoint's ``config`` metadata as ``ternac_conventions``):

========================  ===================================  ======================================
rule                      ``"ternac"`` (default)               ``"matmulfreellm@9e6fd30"``
========================  ===================================  ======================================
absmean weight scale      ``gamma = mean|W| + 1e-5``           ``gamma = max(mean|W|, 1e-5)``,
                          (``numerics.absmean_ternarize``,     ``t = clamp(round(W * (1/gamma)))``,
                          BitNet b1.58 eq. 1-3)                in W's dtype (fusedbitnet.py:43-46)
BitLinear RMSNorm eps     1e-8 (the reference's unfused        1e-6 (FusedBitLinear.forward,
                          ``BitLinear``, fusedbitnet.py:556)   fusedbitnet.py:602-610, passes no eps:
                                                               the default eps=1e-6 of :520)
per-token int8 quant      ``s = max(absmax, 1e-5) / 127``,     ``k = 127 / max(absmax, 1e-5)``,
                          ``clamp(round(x / s), -127, 127)     ``clamp(round(x k), -128, 127) / k``,
                          * s``, ties to even (torch.round)    ties away from zero
                                                               (fusedbitnet.py:125-128: tl.math.round
                                                               is libdevice ``__nv_roundf``)
========================  ===================================  ======================================

(file:line at commit 9e6fd30 of github ridgerchu/matmulfreellm, ``mmfreelm/ops/fusedbitnet.py``;
master up to a016f72 has the same file. The kernel normalizes as ``x * (1 / sqrt(mean(x^2) +
eps)) * w`` in float32, fusedbitnet.py:108-120.) Everything else (block RMSNorms and g_norm
at ``rms_norm_eps``, the MLGRU, the GLU, static mode's activation quantizer) is the same
under both; static mode's trits follow the conventions' weight rule. The committed
``checkpoints/shakespeare.safetensors`` was trained with ``"ternac"``; a checkpoint of format
``ternac-hgrn-bit/1`` whose config has no ``ternac_conventions`` key (that one) is
``"ternac"``. Reference checkpoints imported by :mod:`golden.lm_import` get
``"matmulfreellm@9e6fd30"``. The difference is not small: on a random-init hidden-64 model
(tests/test_lm_import.py) the logits differ by 0.11 of the largest logit (measured; the
weight-scale rule alone 0.12, as it moves trits at the rounding boundaries, the eps alone
0.03), while ternac's float model under the reference's conventions equals the reference's
equations to 6e-16 in float64.

Quantization modes (:meth:`MatMulFreeLM.set_quant`)
---------------------------------------------------
``"per_token"`` (the reference): each BitLinear input is quantized to int8 with its own
absmax per token, ``s = max|x| / 127``; everything else is float.

``"static"`` (what the integer model computes): every scale is a fixed number, calibrated
as an exponential moving average (momentum 0.9 a batch) of the batch absmax while
``calibrating`` and frozen after (Jacob et al. 2018, sec. 3):

* BitLinear input (after its RMSNorm): int8, ``act_scale = EMA(absmax) / 127``;
* MLGRU state h: int16, ``h_scale = 2 * EMA(absmax) / 32767`` per layer (headroom x2);
  the recurrence is ``h_t = Q16(f h_{t-1} + c)`` step by step in evaluation;
* residual stream r: int16 with one ``residual_scale = 2 * EMA(absmax) / 32767`` for the
  whole network, applied after the embedding and after each residual add (so the integer
  model requantizes each branch output straight into the residual's scale);
* embedding: an int8 table, ``embeddings.scale = max|E| / 127`` (per table, from the
  weights).

All fake quantizers use a straight-through estimator. For speed, *training* in static mode
quantizes the outputs h_t of the (float, chunk-parallel) scan rather than each step inside
it; evaluation runs the exact step-by-step quantized recurrence. With int16 the two differ
by far less than an LSB of anything downstream.

Calibration statistics (EMA of the batch absmax, for the integer model's requantization
scales, not used by the float model): every BitLinear records ``in_absmax`` (its input
before its RMSNorm) and ``out_absmax`` (its real output).

Checkpoint (safetensors; :func:`save_checkpoint`, :func:`load_checkpoint`)
--------------------------------------------------------------------------
The reference's names: ``model.embeddings.weight``, ``model.layers.{i}.attn_norm.weight``,
``model.layers.{i}.attn.{i,f,g,o}_proj.weight`` and ``.norm.weight``,
``model.layers.{i}.attn.g_norm.weight``, ``model.layers.{i}.mlp_norm.weight``,
``model.layers.{i}.mlp.{gate,down}_proj.weight`` and ``.norm.weight``, ``model.norm.weight``,
``lm_head.weight``, ``lm_head.norm.weight`` (and ``model.lower_bounds`` with the lower
bound); all float32, BitLinear weights latent (ternarized on use). Added by ternac: every
BitLinear's ``act_scale``, ``in_absmax``, ``out_absmax``; ``model.layers.{i}.attn.h_scale``;
``model.residual_scale``; ``model.embeddings.scale`` (all scalars, float32). Metadata:
``format`` (``ternac-hgrn-bit/1``), ``config`` (JSON, ``HGRNBitConfig`` keys and
``ternac_conventions``; absent in the committed checkpoint, which is "ternac"), ``vocab``
(JSON string of the symbols), ``calibrated`` (``"1"`` if the static scales are set), and
training information.

Sources: Zhu et al. 2024 (arXiv:2406.02528) and its code for the architecture; Ma et al.
2024 (BitNet b1.58) for absmean BitLinear; Jacob et al. 2018 for static EMA-calibrated
activation ranges; Bengio et al. 2013 for the straight-through estimator.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import numerics
from .errors import CheckpointImportError
from .mlp import fake_quant_act, ste_ternary
from .shakespeare_data import SPLIT_DESCRIPTION, Vocab, load_corpus

__all__ = [
    "LMConfig", "SHAKESPEARE_CONFIG", "DEFAULT_CHECKPOINT", "DEFAULT_STEPS", "CHECKPOINT_FORMAT",
    "INT16_MAX", "RMSNorm", "LMBitLinear", "QuantEmbedding", "MLGRU", "GLU", "HGRNBitBlock",
    "HGRNBitModel", "MatMulFreeLM", "fake_quant_per_token", "fake_quant_sym", "mlgru_scan",
    "mlgru_scan_sequential", "count_ternary_weights", "ternary_layers", "save_checkpoint",
    "load_checkpoint", "load_state", "check_state", "expected_shapes", "evaluate_bpc", "calibrate", "generate", "train_shakespeare",
    "Conventions", "CONVENTIONS", "TERNAC_CONVENTIONS", "REFERENCE_CONVENTIONS", "HF_ACTIVATIONS",
    "fake_quant_per_token_reference", "round_half_away", "ternarize_clamped",
]

#: Largest magnitude of the symmetric int16 range used for the state and the residual.
INT16_MAX = (1 << 15) - 1
#: Momentum of the EMA that calibrates static scales (per batch), as golden.mlp.
EMA_MOMENTUM = 0.9
#: Headroom of the int16 scales: scale = HEADROOM * EMA(absmax) / 32767.
INT16_HEADROOM = 2.0
#: eps of the RMSNorm inside each BitLinear under the "ternac" conventions (the reference's
#: unfused BitLinear, mmfreelm/ops/fusedbitnet.py:556 at 9e6fd30).
BITLINEAR_NORM_EPS = 1e-8
#: eps of the RMSNorm inside each BitLinear under the "matmulfreellm@9e6fd30" conventions (the
#: reference's FusedBitLinear: layer_norm_linear_quant_fn's default, fusedbitnet.py:520).
FUSED_BITLINEAR_NORM_EPS = 1e-6
#: Name of the committed checkpoint's conventions (the default of LMConfig).
TERNAC_CONVENTIONS = "ternac"
#: Name of the reference's conventions (ridgerchu/matmulfreellm master since 9e6fd30).
REFERENCE_CONVENTIONS = "matmulfreellm@9e6fd30"
#: Activation names transformers' ACT2FN knows (transformers 5.23.0,
#: src/transformers/activations.py, ACT2CLS). The reference's HGRNBitMLP looks hidden_act up
#: there (modeling_hgrn_bit.py:56 at 9e6fd30), so another name cannot build, but its forward
#: never calls the result: ``z = down_proj(swiglu(gate, y))`` (:61), always SiLU(gate) * y.
HF_ACTIVATIONS = frozenset({
    "gelu", "gelu_10", "gelu_fast", "gelu_new", "gelu_python", "gelu_pytorch_tanh",
    "gelu_python_tanh", "gelu_accurate", "hardswish", "laplace", "leaky_relu", "linear", "mish",
    "quick_gelu", "relu", "relu2", "relu6", "sigmoid", "silu", "sqrtsoftplus", "swish", "tanh",
    "prelu", "xielu"})
CHECKPOINT_FORMAT = "ternac-hgrn-bit/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "shakespeare.safetensors"
#: Steps of the committed checkpoint's recipe.
DEFAULT_STEPS = 9444
#: Length of the chunks of the chunk-parallel MLGRU scan.
SCAN_CHUNK = 16

# Training hyper-parameters of train_shakespeare (the checkpoint is a function of seed,
# steps and these).
_LR = 2e-3
_LR_MIN_FRACTION = 0.1
_WARMUP = 200
_WEIGHT_DECAY = 0.05
_BETAS = (0.9, 0.95)
_GRAD_CLIP = 1.0
_BATCH = 64
_SEQ_LEN = 256
#: Phases as fractions of the steps: per-token QAT until 0.70, static with calibrating
#: scales until 0.75, static with frozen scales to the end.
_CALIBRATE_AT = 0.70
_FREEZE_AT = 0.75


# ---------------------------------------------------------------------------------------
# Conventions
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Conventions:
    """The rules of a BitLinear that differ between ternac and the reference (module docstring).

    Attributes
    ----------
    name : the key of :data:`CONVENTIONS` (``"ternac"`` or ``"matmulfreellm@9e6fd30"``)
    weight_scale : ``"mean+eps"`` (gamma = mean|W| + eps, ``numerics.absmean_ternarize``) or
        ``"max(mean,eps)"`` (gamma = max(mean|W|, eps), :func:`ternarize_clamped`)
    weight_eps : the eps of the absmean scale (1e-5 in both)
    bitlinear_norm_eps : eps of the RMSNorm inside every BitLinear (1e-8 or 1e-6)
    act_quant : ``"ternac"`` (:func:`fake_quant_per_token`) or ``"reference"``
        (:func:`fake_quant_per_token_reference`), the per-token int8 activation quantizer
    source : where each rule comes from (file:line@commit)
    """
    name: str
    weight_scale: str
    weight_eps: float
    bitlinear_norm_eps: float
    act_quant: str
    source: str

    def ternarize(self, w: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Trits and scale of a latent weight: ``(t (N, K) int8 in {-1, 0, 1}, gamma)``, real
        weight ``gamma * t`` (for ``"max(mean,eps)"``: ``t / (1 / gamma)`` in W's dtype)."""
        if self.weight_scale == "mean+eps":
            return numerics.absmean_ternarize(w, self.weight_eps)
        t, inv = ternarize_clamped(w, self.weight_eps)
        return t.to(torch.int8), 1.0 / float(inv)

    def ste_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The forward weight of a BitLinear (straight-through), W's shape and dtype."""
        if self.weight_scale == "mean+eps":
            return ste_ternary(w)
        t, inv = ternarize_clamped(w, self.weight_eps)
        return t / inv + (w - w.detach())

    def per_token(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token int8 fake quantization of a BitLinear input (straight-through)."""
        if self.act_quant == "ternac":
            return fake_quant_per_token(x)
        return fake_quant_per_token_reference(x)


#: The known conventions, by name (see the module docstring for the table and the sources).
CONVENTIONS: dict[str, Conventions] = {
    TERNAC_CONVENTIONS: Conventions(
        name=TERNAC_CONVENTIONS, weight_scale="mean+eps", weight_eps=numerics.ABSMEAN_EPS,
        bitlinear_norm_eps=BITLINEAR_NORM_EPS, act_quant="ternac",
        source="ternac's own (the committed checkpoint was trained with it): gamma = mean|W| + "
               "1e-5 (golden.numerics.absmean_ternarize, BitNet b1.58 eq. 1-3); BitLinear RMSNorm "
               "eps 1e-8 (ridgerchu/matmulfreellm mmfreelm/ops/fusedbitnet.py:556@9e6fd30, the "
               "unfused BitLinear); per-token s = max(absmax, 1e-5)/127, ties to even"),
    REFERENCE_CONVENTIONS: Conventions(
        name=REFERENCE_CONVENTIONS, weight_scale="max(mean,eps)", weight_eps=1e-5,
        bitlinear_norm_eps=FUSED_BITLINEAR_NORM_EPS, act_quant="reference",
        source="ridgerchu/matmulfreellm@9e6fd30 FusedBitLinear: weight_quant "
               "mmfreelm/ops/fusedbitnet.py:43-46 (scale = 1/max(mean|W|, 1e-5)); RMSNorm eps "
               "1e-6 (fusedbitnet.py:520, FusedBitLinear.forward :602-610 passes none); "
               "activation quant fusedbitnet.py:125-128 (tl.math.round = __nv_roundf, ties away "
               "from zero; clamp -128..127)"),
}


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero (C ``roundf``, CUDA ``__nv_roundf``).

    Exact for every float: ``trunc(v) + sign(v) * (|v - trunc(v)| >= 0.5)`` (the subtraction
    is exact). Same dtype and shape as ``v``.
    """
    r = torch.trunc(v)
    return r + torch.sign(v) * ((v - r).abs() >= 0.5).to(v.dtype)


def ternarize_clamped(w: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's absmean ternarization: ``k = 1 / max(mean|W|, eps)``, ``t = clamp(round(W k),
    -1, 1)``, real weight ``t / k``, all in W's dtype (torch.round, ties to even).

    Source: ridgerchu/matmulfreellm ``weight_quant``, mmfreelm/ops/fusedbitnet.py:43-46 at
    9e6fd30; transformers' ``WeightQuant`` (src/transformers/integrations/bitnet.py,
    transformers 5.23.0) is the same rule computed in float32.

    Returns
    -------
    (t, k) : t W's shape and dtype with values in {-1, 0, 1}; k a 0-d tensor (1 / gamma).
    """
    w = w.detach()
    k = 1.0 / w.abs().mean().clamp(min=eps)
    return torch.clamp(torch.round(w * k), -1, 1), k


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Sizes of a MatMul-free LM; the keys of the reference ``HGRNBitConfig`` that matter.

    vocab_size V, hidden_size d, num_hidden_layers L, intermediate_size I (GLU width),
    expand_ratio (MLGRU width D = d * expand_ratio), num_heads (no effect on the math: the
    recurrence is elementwise), use_lower_bound (forget-gate lower bound of HGRN),
    rms_norm_eps (block RMSNorms and g_norm), conventions (a key of :data:`CONVENTIONS`:
    the BitLinear's weight-scale rule, inner RMSNorm eps and per-token rounding; ``"ternac"``
    for the committed checkpoint, ``"matmulfreellm@9e6fd30"`` for imported reference
    checkpoints).

    Raises
    ------
    ValueError for a non-positive size or an eps that is not positive and finite.
    """
    vocab_size: int = 65
    hidden_size: int = 128
    num_hidden_layers: int = 3
    intermediate_size: int = 192
    expand_ratio: int = 1
    num_heads: int = 1
    use_lower_bound: bool = False
    rms_norm_eps: float = 1e-6
    conventions: str = TERNAC_CONVENTIONS

    def __post_init__(self):
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                  "expand_ratio", "num_heads"):
            v = getattr(self, k)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"config {k} must be a positive integer, not {v!r}")
        if (self.hidden_size * self.expand_ratio) % self.num_heads:
            raise ValueError(f"hidden_size * expand_ratio = {self.hidden_size * self.expand_ratio} "
                             f"is not divisible by num_heads = {self.num_heads}")
        if not (isinstance(self.rms_norm_eps, (int, float)) and math.isfinite(self.rms_norm_eps)
                and self.rms_norm_eps > 0):
            raise ValueError(f"config rms_norm_eps must be positive and finite, not {self.rms_norm_eps!r}")
        if not (isinstance(self.conventions, str) and self.conventions in CONVENTIONS):
            raise ValueError(f"config conventions {self.conventions!r} is not one of "
                             f"{', '.join(repr(k) for k in CONVENTIONS)}")

    @property
    def rules(self) -> Conventions:
        """The :class:`Conventions` named by :attr:`conventions`."""
        return CONVENTIONS[self.conventions]

    @property
    def attn_size(self) -> int:
        """D, the width of the MLGRU (i/f/g projections, state, g_norm)."""
        return self.hidden_size * self.expand_ratio

    @property
    def n_ternary(self) -> int:
        """Ternary weights (trits) in all BitLinear layers, lm_head included."""
        return count_ternary_weights(self)

    def to_hf(self) -> dict:
        """The ``config.json`` of the reference (``HGRNBitConfig`` keys, model_type hgrn_bit),
        plus ``ternac_conventions`` (the reference ignores unknown keys; ternac reads it back)."""
        return {"model_type": "hgrn_bit", "architectures": ["HGRNBitForCausalLM"],
                "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, "attn_mode": "fused_recurrent",
                "num_heads": self.num_heads, "expand_ratio": self.expand_ratio,
                "use_short_conv": False, "conv_size": 4, "share_conv_kernel": True,
                "use_lower_bound": self.use_lower_bound, "hidden_ratio": 4,
                "intermediate_size": self.intermediate_size, "hidden_act": "swish",
                "rms_norm_eps": self.rms_norm_eps, "tie_word_embeddings": False,
                "ternac_conventions": self.conventions}

    @classmethod
    def from_hf(cls, cfg: dict, *, default_conventions: str) -> "LMConfig":
        """Build from a reference ``config.json`` dict (see :mod:`golden.lm_import`).

        ``intermediate_size`` missing or null is derived as the reference ``HGRNBitMLP``
        does: ``int(d * hidden_ratio * 2 / 3)`` rounded up to a multiple of 256
        (hidden_ratio default 4). Defaults of ``HGRNBitConfig`` apply to missing keys.
        ``hidden_act`` may be any name transformers' ACT2FN knows (:data:`HF_ACTIVATIONS`):
        the reference's forward ignores it (the GLU is always SiLU(gate) * y,
        modeling_hgrn_bit.py:56 and :61 at 9e6fd30), and so does this model.
        ``ternac_conventions`` names the conventions; without it they are
        ``default_conventions`` (the caller says which: ``"ternac"`` for a checkpoint of
        format ternac-hgrn-bit/1, the reference's for a reference checkpoint).

        Raises
        ------
        ValueError for a missing hidden_size/num_hidden_layers/vocab_size, an unsupported
        option (short convolution, another attention mode, an activation transformers does
        not know), unknown conventions or a bad value.
        """
        if not isinstance(cfg, dict):
            raise ValueError(f"config must be a JSON object, not {type(cfg).__name__}")
        for k in ("hidden_size", "num_hidden_layers", "vocab_size"):
            if k not in cfg:
                raise ValueError(f"config has no {k!r}")
        if cfg.get("use_short_conv", False):
            raise ValueError("config sets use_short_conv, which ternac's MLGRU does not support")
        if cfg.get("attn_mode", "fused_recurrent") not in ("fused_recurrent", "chunk"):
            raise ValueError(f"config attn_mode {cfg['attn_mode']!r} is not supported")
        act = cfg.get("hidden_act", "swish")
        if not (isinstance(act, str) and act in HF_ACTIVATIONS):
            raise ValueError(f"config hidden_act {act!r} is not an activation transformers knows, "
                             f"so the reference's HGRNBitMLP cannot be built with it")
        d = cfg["hidden_size"]
        inter = cfg.get("intermediate_size")
        if inter is None:
            ratio = cfg.get("hidden_ratio") or 4
            if not isinstance(d, int) or not isinstance(ratio, (int, float)):
                raise ValueError(f"config hidden_size {d!r} / hidden_ratio {ratio!r} are not numbers")
            inter = int(d * ratio * 2 / 3)
            inter = 256 * ((inter + 256 - 1) // 256)
        return cls(vocab_size=cfg["vocab_size"], hidden_size=d,
                   num_hidden_layers=cfg["num_hidden_layers"], intermediate_size=inter,
                   expand_ratio=cfg.get("expand_ratio") or 1, num_heads=cfg.get("num_heads") or 1,
                   use_lower_bound=bool(cfg.get("use_lower_bound", True)),
                   rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
                   conventions=cfg.get("ternac_conventions", default_conventions))


#: The committed shakespeare model: d=128, 3 layers, GLU width 192, 65 symbols.
SHAKESPEARE_CONFIG = LMConfig()


def count_ternary_weights(config: LMConfig) -> int:
    """Trits of a model: per layer ``4 d D`` (MLGRU) + ``3 d I`` (GLU), plus ``V d`` (lm_head).

    For :data:`SHAKESPEARE_CONFIG` (d=128, D=128, I=192, L=3, V=65): 3 * (65,536 + 73,728)
    + 8,320 = 426,112.
    """
    d, D, inter = config.hidden_size, config.attn_size, config.intermediate_size
    return config.num_hidden_layers * (3 * d * D + D * d + d * 2 * inter + inter * d) \
        + config.vocab_size * d


# ---------------------------------------------------------------------------------------
# Quantizers (straight-through)
# ---------------------------------------------------------------------------------------

def fake_quant_per_token(x: torch.Tensor, qmax: int = numerics.ACT_MAX) -> torch.Tensor:
    """Per-token absmax fake quantization (the reference's ``activation_quant``), STE.

    ``s = max(max|x| over the last axis, 1e-5) / qmax``; forward value
    ``clamp(round(x / s), -qmax, qmax) * s``; gradient identity (``x + (q - x).detach()``,
    as the reference). x: (..., K) float -> same shape.
    """
    s = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-5) / qmax
    q = torch.clamp(torch.round(x.detach() / s), -qmax, qmax) * s
    return x + (q - x).detach()


def fake_quant_per_token_reference(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8 fake quantization as the reference's fused BitLinear kernel, STE.

    ``k = 127 / max(max|x| over the last axis, 1e-5)``; forward value
    ``clamp(round_half_away(x k), -128, 127) / k``; gradient identity. x: (..., K) float ->
    same shape. Differs from :func:`fake_quant_per_token` only in float rounding and at exact
    ties (-128 is never reached: ``|x k| <= 127``).

    Source: ridgerchu/matmulfreellm mmfreelm/ops/fusedbitnet.py:125-128 at 9e6fd30
    (``tl.math.round`` is libdevice ``__nv_roundf``, halfway cases away from zero).
    """
    k = 127.0 / x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-5)
    q = torch.clamp(round_half_away(x.detach() * k), -128, 127) / k
    return x + (q - x).detach()


def fake_quant_sym(x: torch.Tensor, scale: torch.Tensor | float, qmax: int = INT16_MAX) -> torch.Tensor:
    """Symmetric fake quantization with a static scale, clipped STE (as ``mlp.fake_quant_act``).

    Forward ``clamp(round(x / scale), -qmax, qmax) * scale`` (float32 arithmetic; for the
    int8 BitLinear inputs ternac uses ``mlp.fake_quant_act``, the float64 rule of
    ``numerics.quantize_act``); gradient 1 inside ``[-qmax * scale, qmax * scale]``, 0 outside.
    ``scale`` may be a 0-d tensor (no host sync) or a float.
    """
    lim = scale * qmax
    xc = torch.clamp(x, -lim, lim)
    q = torch.clamp(torch.round(x.detach() / scale), -qmax, qmax) * scale
    return q + (xc - xc.detach())


@torch.no_grad()
def _ema_(buf: torch.Tensor, value: torch.Tensor) -> None:
    """buf <- value if buf == 0 else momentum * buf + (1 - momentum) * value (no host sync)."""
    v = value.detach().to(buf.dtype).clamp_min(1e-8)
    buf.copy_(torch.where(buf == 0, v, EMA_MOMENTUM * buf + (1 - EMA_MOMENTUM) * v))


class _Quantized(nn.Module):
    """Mixin state: ``quant`` ("per_token" | "static") and ``calibrating`` (update EMAs)."""
    quant: str = "per_token"
    calibrating: bool = False


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2) + eps) * weight`` over the last axis (Zhang & Sennrich 2019).

    weight: (n,) float32, initialised to ones. x: (..., n) -> (..., n), float32.
    """

    def __init__(self, n: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LMBitLinear(_Quantized):
    """BitLinear of the MatMul-free LM: RMSNorm -> int8 activations -> ternary weights.

    Parameters
    ----------
    in_features K, out_features N : int
    conventions : a :class:`Conventions` or its name (default ``"ternac"``): the weight-scale
        rule, the per-token quantizer and the default ``norm_eps``
    norm_eps : eps of the input RMSNorm (None: the conventions', 1e-8 for "ternac", 1e-6 for
        "matmulfreellm@9e6fd30")

    Parameters / buffers
    --------------------
    weight : (N, K) float32 latent; the forward uses ``conventions.ste_weight(weight)`` =
        gamma * t (``ste_ternary`` under "ternac").
    norm.weight : (K,) float32.
    act_scale : () float32, the static int8 input scale (0 until calibrated).
    in_absmax, out_absmax : () float32, calibration statistics (EMA of batch absmax of the
        input before the RMSNorm and of the output).

    Forward ``x (..., K) -> (..., N)``: ``F.linear(Q8(RMSNorm(x)), gamma * t)``, Q8 per
    token (``conventions.per_token``: ``fake_quant_per_token`` under "ternac") or static
    (``mlp.fake_quant_act(., act_scale)``, the same under both conventions). The
    integer model computes ``acc = t @ q`` exactly; the real output is ``s_x * gamma * acc``.

    Raises
    ------
    RuntimeError in static mode if ``act_scale`` was never calibrated.
    """

    def __init__(self, in_features: int, out_features: int, *,
                 conventions: Conventions | str = TERNAC_CONVENTIONS, norm_eps: float | None = None):
        super().__init__()
        self.conventions = CONVENTIONS[conventions] if isinstance(conventions, str) else conventions
        if norm_eps is None:
            norm_eps = self.conventions.bitlinear_norm_eps
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        nn.init.normal_(self.weight, std=0.02)
        self.norm = RMSNorm(self.in_features, norm_eps)
        for name in ("act_scale", "in_absmax", "out_absmax"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cal = self.calibrating and self.quant == "static"
        if cal:
            _ema_(self.in_absmax, x.detach().abs().max())
        xn = self.norm(x)
        if self.quant == "per_token":
            xq = self.conventions.per_token(xn)
        else:
            if cal:
                _ema_(self.act_scale, xn.detach().abs().max() / numerics.ACT_MAX)
            scale = float(self.act_scale)
            if not scale > 0:
                raise RuntimeError("LMBitLinear static input scale is not calibrated: run "
                                   "calibrate() or train with a calibration phase first")
            xq = fake_quant_act(xn, scale)
        y = F.linear(xq, self.conventions.ste_weight(self.weight))
        if cal:
            _ema_(self.out_absmax, y.detach().abs().max())
        return y

    def ternarize(self) -> tuple[torch.Tensor, float]:
        """The layer's trits and scale by its conventions: ``(t (N, K) int8, gamma)`` (CPU)."""
        return self.conventions.ternarize(self.weight.detach().cpu())


class QuantEmbedding(_Quantized):
    """Token embedding; an int8 table in static mode.

    weight : (V, d) float32 latent. scale : () float32 buffer, ``max|weight| / 127`` (kept
    up to date by every static forward and by :func:`save_checkpoint`). Static forward:
    ``fake_quant_sym(weight, scale, 127)[ids]`` (STE); per-token mode: ``weight[ids]``.
    """

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, dim))
        nn.init.normal_(self.weight, std=0.02)
        self.register_buffer("scale", torch.zeros((), dtype=torch.float32))

    def table_scale(self) -> torch.Tensor:
        return self.weight.detach().abs().max().clamp_min(1e-8) / numerics.ACT_MAX

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.quant == "per_token":
            return F.embedding(ids, self.weight)
        s = self.table_scale()
        with torch.no_grad():
            self.scale.copy_(s)
        return F.embedding(ids, fake_quant_sym(self.weight, s, numerics.ACT_MAX))


def mlgru_scan(f: torch.Tensor, c: torch.Tensor, h0: torch.Tensor | None = None,
               chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """The MLGRU recurrence ``h_t = f_t * h_{t-1} + c_t``, chunk-parallel, differentiable.

    Within a chunk of ``chunk`` steps ``h_t = sum_{s<=t} exp(L_t - L_s) c_s + exp(L_t) h_in``
    with ``L = cumsum(log f)`` (every exponent <= 0, so nothing overflows); chunks run in
    sequence. Equal to :func:`mlgru_scan_sequential` up to float rounding.

    Parameters
    ----------
    f : (B, T, D) forget gates in (0, 1]; c : (B, T, D) inputs; h0 : (B, D) or None (zeros)

    Returns
    -------
    (B, T, D) float: h_1 .. h_T.
    """
    B, T, D = c.shape
    h = c.new_zeros(B, D) if h0 is None else h0
    pad = (-T) % chunk
    if pad:
        f = F.pad(f, (0, 0, 0, pad), value=1.0)
        c = F.pad(c, (0, 0, 0, pad))
    n = (T + pad) // chunk
    L = torch.log(f.clamp_min(1e-30)).view(B, n, chunk, D).cumsum(2)
    mask = torch.ones(chunk, chunk, dtype=torch.bool, device=c.device).tril().view(1, 1, chunk, chunk, 1)
    A = torch.exp((L.unsqueeze(3) - L.unsqueeze(2)).masked_fill(~mask, float("-inf")))
    local = (A * c.view(B, n, 1, chunk, D)).sum(3)          # (B, n, t, D)
    decay = torch.exp(L)
    outs = []
    for k in range(n):
        hk = local[:, k] + decay[:, k] * h.unsqueeze(1)
        outs.append(hk)
        h = hk[:, -1]
    return torch.cat(outs, 1)[:, :T]


def mlgru_scan_sequential(f: torch.Tensor, c: torch.Tensor, h0: torch.Tensor | None = None,
                          quant=None) -> torch.Tensor:
    """The MLGRU recurrence one step at a time: ``h_t = quant(f_t * h_{t-1} + c_t)``.

    ``quant`` (e.g. int16 fake quantization) is applied to every new state, as the integer
    model holds it. Shapes as :func:`mlgru_scan`.
    """
    B, T, D = c.shape
    h = c.new_zeros(B, D) if h0 is None else h0
    outs = []
    for t in range(T):
        h = torch.addcmul(c[:, t], f[:, t], h)
        if quant is not None:
            h = quant(h)
        outs.append(h)
    return torch.stack(outs, 1)


class MLGRU(_Quantized):
    """The MLGRU token mixer (reference ``HGRNBitAttention``, fused_recurrent mode).

    i_proj, f_proj, g_proj : :class:`LMBitLinear` (d -> D); o_proj : (D -> d);
    g_norm : :class:`RMSNorm` (D); h_scale : () float32 buffer, static int16 scale of h.

    Forward ``x (B, T, d), h0 (B, D) or None, lower_bound (D,) or None ->
    (out (B, T, d), h_T (B, D))``; see the module docstring for the equations.
    """

    def __init__(self, d: int, D: int, eps: float, conventions: str = TERNAC_CONVENTIONS):
        super().__init__()
        self.i_proj = LMBitLinear(d, D, conventions=conventions)
        self.f_proj = LMBitLinear(d, D, conventions=conventions)
        self.g_proj = LMBitLinear(d, D, conventions=conventions)
        self.g_norm = RMSNorm(D, eps)
        self.o_proj = LMBitLinear(D, d, conventions=conventions)
        self.register_buffer("h_scale", torch.zeros((), dtype=torch.float32))

    def _quant_h(self, h: torch.Tensor) -> torch.Tensor:
        return fake_quant_sym(h, self.h_scale, INT16_MAX)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None,
                lower_bound: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.i_proj(x)
        f = torch.sigmoid(self.f_proj(x))
        if lower_bound is not None:
            f = lower_bound + (1 - lower_bound) * f
        c = F.silu(i) * (1 - f)
        g = self.g_proj(x)
        if self.quant == "static":
            hf = mlgru_scan(f, c, h0) if (self.training or self.calibrating) else None
            if self.calibrating:
                _ema_(self.h_scale, INT16_HEADROOM * hf.detach().abs().max() / INT16_MAX)
            if not float(self.h_scale) > 0:
                raise RuntimeError("MLGRU static state scale is not calibrated")
            if self.training:
                h = self._quant_h(hf)
            else:
                h = mlgru_scan_sequential(f, c, h0, self._quant_h)
        else:
            h = mlgru_scan(f, c, h0)
        o = self.g_norm(g) * F.silu(h)
        return self.o_proj(o), h[:, -1]


class GLU(nn.Module):
    """The GLU channel mixer (reference ``HGRNBitMLP``): ``down(SiLU(gate) * y)``.

    gate_proj : :class:`LMBitLinear` (d -> 2I), split into ``gate, y`` (first and second
    half); down_proj : (I -> d). Forward ``(B, T, d) -> (B, T, d)``.
    """

    def __init__(self, d: int, inter: int, conventions: str = TERNAC_CONVENTIONS):
        super().__init__()
        self.gate_proj = LMBitLinear(d, 2 * inter, conventions=conventions)
        self.down_proj = LMBitLinear(inter, d, conventions=conventions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, y = self.gate_proj(x).chunk(2, -1)
        return self.down_proj(F.silu(gate) * y)


class HGRNBitBlock(nn.Module):
    """One layer: ``r += attn(attn_norm(r))``, ``r += mlp(mlp_norm(r))`` (pre-norm residual)."""

    def __init__(self, config: LMConfig):
        super().__init__()
        d = config.hidden_size
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.attn = MLGRU(d, config.attn_size, config.rms_norm_eps, config.conventions)
        self.mlp_norm = RMSNorm(d, config.rms_norm_eps)
        self.mlp = GLU(d, config.intermediate_size, config.conventions)

    def forward(self, r, h0, lower_bound, rq):
        a, h = self.attn(self.attn_norm(r), h0, lower_bound)
        r = rq(r + a)
        r = rq(r + self.mlp(self.mlp_norm(r)))
        return r, h


class HGRNBitModel(_Quantized):
    """Embedding, the layers and the final RMSNorm (the reference ``HGRNBitModel``).

    Buffers: residual_scale, () float32, the static int16 scale of the residual stream.
    """

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        self.embeddings = QuantEmbedding(config.vocab_size, config.hidden_size)
        if config.use_lower_bound:
            self.lower_bounds = nn.Parameter(torch.zeros(config.num_hidden_layers, config.attn_size))
        self.layers = nn.ModuleList(HGRNBitBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.register_buffer("residual_scale", torch.zeros((), dtype=torch.float32))

    def lower_bound_values(self) -> list[torch.Tensor | None]:
        """Per layer the forget-gate lower bound (D,), or None (layer 0, or not used).

        As the reference: ``lb = softmax(lower_bounds, 0)``, ``lb = cumsum(lb, 0) - lb[0]``,
        and layer 0 uses none.
        """
        if not self.config.use_lower_bound:
            return [None] * self.config.num_hidden_layers
        lb = self.lower_bounds.softmax(0)
        lb = lb.cumsum(0) - lb[0]
        return [None] + [lb[i] for i in range(1, self.config.num_hidden_layers)]

    def _rq(self, r: torch.Tensor) -> torch.Tensor:
        if self.quant != "static":
            return r
        if self.calibrating:
            _ema_(self.residual_scale, INT16_HEADROOM * r.detach().abs().max() / INT16_MAX)
        if not float(self.residual_scale) > 0:
            raise RuntimeError("residual stream static scale is not calibrated")
        return fake_quant_sym(r, self.residual_scale, INT16_MAX)

    def forward(self, ids: torch.Tensor, state: list[torch.Tensor] | None = None):
        r = self._rq(self.embeddings(ids))
        new_state = []
        for i, (layer, lb) in enumerate(zip(self.layers, self.lower_bound_values())):
            r, h = layer(r, None if state is None else state[i], lb, self._rq)
            new_state.append(h)
        return self.norm(r), new_state


class MatMulFreeLM(nn.Module):
    """The whole model (reference ``HGRNBitForCausalLM``): ``model`` and a ternary ``lm_head``.

    Parameters
    ----------
    config : :class:`LMConfig` (default :data:`SHAKESPEARE_CONFIG`)

    Forward ``ids (B, T) int64, state (list of L tensors (B, D)) or None ->
    (logits (B, T, V) float32, new state)``. Weights initialised as the reference
    ``_init_weights``: normal(0, 0.02), o_proj and down_proj divided by sqrt(2 L).
    """

    def __init__(self, config: LMConfig = SHAKESPEARE_CONFIG):
        super().__init__()
        self.config = config
        self.model = HGRNBitModel(config)
        self.lm_head = LMBitLinear(config.hidden_size, config.vocab_size, conventions=config.conventions)
        with torch.no_grad():
            for layer in self.model.layers:
                layer.attn.o_proj.weight.div_(math.sqrt(2 * config.num_hidden_layers))
                layer.mlp.down_proj.weight.div_(math.sqrt(2 * config.num_hidden_layers))

    @property
    def n_ternary(self) -> int:
        """Trits in the BitLinear layers (see :func:`count_ternary_weights`)."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, LMBitLinear))

    @property
    def quant(self) -> str:
        return self.model.quant

    @property
    def calibrated(self) -> bool:
        """Whether every static scale is set (> 0)."""
        return all(float(b) > 0 for n, b in self.named_buffers()
                   if n.endswith(("act_scale", "h_scale", "residual_scale")))

    def set_quant(self, quant: str, *, calibrating: bool = False) -> "MatMulFreeLM":
        """Select ``"per_token"`` or ``"static"`` quantization; ``calibrating`` updates the EMAs.

        Raises ValueError for another mode or calibrating in per-token mode.
        """
        if quant not in ("per_token", "static"):
            raise ValueError(f"quantization mode must be 'per_token' or 'static', not {quant!r}")
        if calibrating and quant != "static":
            raise ValueError("calibration runs in static mode")
        for m in self.modules():
            if isinstance(m, _Quantized):
                m.quant = quant
                m.calibrating = calibrating
        return self

    def forward(self, ids: torch.Tensor, state: list[torch.Tensor] | None = None):
        x, new_state = self.model(ids, state)
        return self.lm_head(x), new_state


def ternary_layers(model: MatMulFreeLM) -> dict[str, tuple[torch.Tensor, float]]:
    """Every BitLinear of ``model`` as trits: ``{name: (t (N, K) int8, gamma)}``.

    ``name`` is the module name (``model.layers.0.attn.i_proj``, ..., ``lm_head``);
    ``(t, gamma) = LMBitLinear.ternarize()`` by the model's conventions
    (``numerics.absmean_ternarize(weight)`` under "ternac"), the real weight ``gamma * t``.
    """
    return {n: m.ternarize()
            for n, m in model.named_modules() if isinstance(m, LMBitLinear)}


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------

def _state_tensors(model: MatMulFreeLM) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        model.model.embeddings.scale.copy_(model.model.embeddings.table_scale())
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone()
            for k, v in model.state_dict().items()}


def save_checkpoint(model: MatMulFreeLM, path: str | Path, vocab: Vocab,
                    metadata: dict[str, str] | None = None) -> None:
    """Write ``model`` as safetensors in the reference's layout plus ternac's scales.

    See the module docstring for the tensors and metadata. ``metadata`` values must be
    strings; ``format``, ``config``, ``vocab`` and ``calibrated`` are set here.

    Raises
    ------
    ValueError if the vocabulary size differs from the model's.
    """
    from safetensors.torch import save

    from .fileio import atomic_write

    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"vocabulary of {len(vocab)} symbols for a model of vocab_size "
                         f"{model.config.vocab_size}")
    md = {str(k): str(v) for k, v in (metadata or {}).items()}
    md.update(format=CHECKPOINT_FORMAT, config=json.dumps(model.config.to_hf(), sort_keys=True),
              vocab=json.dumps(vocab.chars), calibrated="1" if model.calibrated else "0")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Atomically: an existing checkpoint is replaced only by the complete new one.
    atomic_write(path, save(_state_tensors(model), metadata=md))


def load_checkpoint(path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu"
                    ) -> tuple[MatMulFreeLM, Vocab, dict[str, str]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    (model in eval mode, per-token quantization; vocab; metadata dict)

    Raises
    ------
    CheckpointImportError (a ValueError), one sentence naming the file, if it does not exist
    (the sizes its config declares are checked against the tensors before the model is
    allocated), is not a readable
    safetensors file, is not in this format, has a bad config or vocabulary, misses or has
    unexpected tensors, has tensors of the wrong shape or non-finite values, or marks
    itself calibrated while a static scale is not positive.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointImportError(f"checkpoint {str(p)!r} does not exist or is not a file")
    try:
        with safe_open(str(p), framework="pt") as f:
            md = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointImportError(f"checkpoint {str(p)!r} is not a readable safetensors file "
                         f"(corrupt or truncated): {' '.join(str(e).split())}") from None
    if md.get("format") != CHECKPOINT_FORMAT:
        has = (f"has format {md['format']!r}" if md.get("format") is not None
               else "has no 'format' in its metadata")
        raise CheckpointImportError(f"checkpoint {str(p)!r} {has}, not "
                         f"{CHECKPOINT_FORMAT!r} (for a reference Hugging Face checkpoint use "
                         f"ternac.golden.lm_import.load_hf_checkpoint)")
    try:
        # format ternac-hgrn-bit/1 without ternac_conventions (the committed checkpoint) was
        # written under ternac's conventions, the only ones that existed then
        config = LMConfig.from_hf(json.loads(md.get("config", "")), default_conventions=TERNAC_CONVENTIONS)
        vocab = Vocab(json.loads(md.get("vocab", "")))
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
        raise CheckpointImportError(f"checkpoint {str(p)!r} has a bad config or vocabulary: {e}") from None
    if len(vocab) != config.vocab_size:
        raise CheckpointImportError(f"checkpoint {str(p)!r} has {len(vocab)} vocabulary symbols but "
                         f"vocab_size {config.vocab_size}")
    check_state(expected_shapes(config, str(p), max_tensors=len(tensors)), tensors, str(p))
    model = MatMulFreeLM(config)
    load_state(model, tensors, str(p))
    if md.get("calibrated") == "1" and not model.calibrated:
        raise CheckpointImportError(f"checkpoint {str(p)!r} says it is calibrated but a static scale is not positive")
    return model.to(device).eval(), vocab, md


def expected_shapes(config: LMConfig, where: str = "", *, max_tensors: int | None = None
                    ) -> dict[str, tuple]:
    """The state-dict names and shapes of a :class:`MatMulFreeLM` of ``config``, computed
    on the meta device (nothing allocated, whatever sizes ``config`` declares).

    Raises
    ------
    CheckpointImportError if the model would have more than ``max_tensors`` tensors (a
    checkpoint's count: a config declaring more layers than its file holds) or a tensor too
    large for torch to index.
    """
    if max_tensors is not None and config.num_hidden_layers > max_tensors:
        raise CheckpointImportError(f"checkpoint {where}: its config declares "
                                    f"{config.num_hidden_layers} layers, more than the file's "
                                    f"{max_tensors} tensors")
    try:
        with torch.device("meta"):
            return {k: tuple(v.shape) for k, v in MatMulFreeLM(config).state_dict().items()}
    except (RuntimeError, OverflowError, MemoryError):   # e.g. 2**31 x 2**31 elements
        raise CheckpointImportError(f"checkpoint {where}: its config declares tensors too large "
                                    f"for torch to index (hidden_size {config.hidden_size}, "
                                    f"intermediate_size {config.intermediate_size})") from None


def check_state(expected: dict[str, tuple], tensors: dict[str, torch.Tensor], where: str,
                allow_missing: tuple[str, ...] = ()) -> None:
    """Check ``tensors`` against the names and shapes ``expected`` (:func:`expected_shapes`):
    see :func:`load_state`, which calls it."""
    missing = [k for k in expected if k not in tensors and not k.endswith(allow_missing)]
    if missing:
        raise CheckpointImportError(f"checkpoint {where} is missing tensor {missing[0]!r}"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [k for k in tensors if k not in expected]
    if extra:
        raise CheckpointImportError(f"checkpoint {where} has unexpected tensor {extra[0]!r}"
                                    + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k]):
            raise CheckpointImportError(f"checkpoint {where}: tensor {k!r} has shape "
                                        f"{tuple(v.shape)}, expected {tuple(expected[k])}")
        if not v.is_floating_point():
            raise CheckpointImportError(f"checkpoint {where}: tensor {k!r} must be floating "
                                        f"point, not {v.dtype}")
        if not bool(torch.isfinite(v.to(torch.float32)).all()):
            raise CheckpointImportError(f"checkpoint {where}: tensor {k!r} holds NaN or "
                                        f"infinite values")


def load_state(model: MatMulFreeLM, tensors: dict[str, torch.Tensor], where: str,
               allow_missing: tuple[str, ...] = ()) -> None:
    """Check ``tensors`` against ``model``'s names and shapes and load them (float32).

    Names ending in one of ``allow_missing`` may be absent (they keep their initial value).

    Raises
    ------
    CheckpointImportError (a ValueError) naming ``where`` for a missing, unexpected,
    misshapen, non-float or non-finite tensor.
    """
    expected = model.state_dict()
    check_state({k: tuple(v.shape) for k, v in expected.items()}, tensors, where, allow_missing)
    merged = dict(expected)
    merged.update({k: v.to(torch.float32) for k, v in tensors.items()})
    model.load_state_dict(merged, strict=True)


# ---------------------------------------------------------------------------------------
# Evaluation, calibration, generation
# ---------------------------------------------------------------------------------------

def _streams(ids: torch.Tensor, n_streams: int) -> torch.Tensor:
    n = ids.numel() // n_streams
    if n < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for {n_streams} streams")
    return ids[:n * n_streams].view(n_streams, n)


@torch.no_grad()
def evaluate_bpc(model: MatMulFreeLM, ids: torch.Tensor, quant: str = "per_token", *,
                 n_streams: int = 32, window: int = 256, device=None) -> float:
    """Bits per character of ``model`` on the token ids ``ids`` (e.g. the validation split).

    ``ids`` is cut into ``n_streams`` contiguous streams (the tail that does not divide is
    dropped); each is read once from its start with the recurrent state carried across
    windows of ``window`` tokens, predicting every token but the first of its stream.
    Returns ``mean cross-entropy / ln 2`` over those predictions. The model's mode is
    restored afterwards.
    """
    was_training, old_quant = model.training, model.quant
    old_cal = any(getattr(m, "calibrating", False) for m in model.modules())
    dev = next(model.parameters()).device if device is None else torch.device(device)
    model.eval().set_quant(quant)
    try:
        s = _streams(ids.to(torch.int64), n_streams).to(dev)
        state, total, count = None, 0.0, 0
        for a in range(0, s.shape[1] - 1, window):
            b = min(a + window, s.shape[1] - 1)
            logits, state = model(s[:, a:b], state)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           s[:, a + 1:b + 1].reshape(-1), reduction="sum"))
            count += (b - a) * s.shape[0]
    finally:
        model.set_quant(old_quant, calibrating=old_cal and old_quant == "static")
        model.train(was_training)
    return total / count / math.log(2)


@torch.no_grad()
def calibrate(model: MatMulFreeLM, ids: torch.Tensor, *, n_batches: int = 20, batch_size: int = 16,
              seq_len: int = 256, seed: int = 0) -> MatMulFreeLM:
    """Set every static scale from data: EMA of absmax over ``n_batches`` random windows.

    For models that were not trained with a calibration phase (e.g. imported ones). Scales
    start from zero (the first batch sets them). Leaves the model in static mode, eval.
    """
    dev = next(model.parameters()).device
    for n, b in model.named_buffers():
        if n.endswith(("act_scale", "h_scale", "residual_scale", "in_absmax", "out_absmax")):
            b.zero_()
    gen = torch.Generator().manual_seed(seed)
    model.train().set_quant("static", calibrating=True)
    ids = ids.to(torch.int64)
    for _ in range(n_batches):
        off = torch.randint(0, ids.numel() - seq_len, (batch_size,), generator=gen)
        model(ids[off[:, None] + torch.arange(seq_len)].to(dev))
    return model.set_quant("static").eval()


@torch.no_grad()
def generate(model: MatMulFreeLM, vocab: Vocab, prompt: str, n_tokens: int, *,
             temperature: float = 0.0, seed: int = 0, quant: str | None = None) -> str:
    """Continue ``prompt`` by ``n_tokens`` characters; returns only the new text.

    ``temperature == 0``: greedy (the smallest index of the largest logit); otherwise
    sampling from ``softmax(logits / temperature)`` with a ``torch.Generator`` seeded with
    ``seed`` (CPU). ``quant`` overrides the model's mode for the call.

    Raises ValueError for an empty prompt or characters outside the vocabulary.
    """
    if not prompt:
        raise ValueError("the prompt must hold at least one character")
    old = model.quant
    was_training = model.training
    model.eval()
    if quant is not None:
        model.set_quant(quant)
    try:
        dev = next(model.parameters()).device
        ids = vocab.encode(prompt).to(dev)[None]
        gen = torch.Generator().manual_seed(seed)
        logits, state = model(ids)
        out = []
        for _ in range(n_tokens):
            last = logits[0, -1].float().cpu()
            if temperature > 0:
                nxt = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen))
            else:
                nxt = int(torch.argmax(last))
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]], device=dev), state)
    finally:
        model.set_quant(old)
        model.train(was_training)
    return vocab.decode(out)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

def _lr_at(step: int, steps: int) -> float:
    warm = min(_WARMUP, max(1, steps // 10))
    if step < warm:
        return _LR * (step + 1) / warm
    p = (step - warm) / max(1, steps - warm)
    return _LR * (_LR_MIN_FRACTION + (1 - _LR_MIN_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def _phases(steps: int) -> tuple[int, int]:
    a_end = min(round(_CALIBRATE_AT * steps), steps - 1)
    b_end = min(max(a_end + 1, round(_FREEZE_AT * steps)), steps)
    return a_end, b_end


def train_shakespeare(text_path: str | Path | None = None, out: str | Path | None = None, *,
                      seed: int = 0, steps: int = DEFAULT_STEPS, device: str = "cpu",
                      progress: bool = True, config: LMConfig = SHAKESPEARE_CONFIG,
                      batch_size: int = _BATCH, seq_len: int = _SEQ_LEN,
                      time_budget_s: float | None = None, eval_chars: int | None = None,
                      log_every: int = 100, val_every: int | None = 1000,
                      sample_chars: int = 400) -> dict:
    """Train the MatMul-free LM on tinyshakespeare (QAT) and save its checkpoint.

    Recipe: ``torch.manual_seed(seed)`` initialisation; batches of ``batch_size`` random
    windows of ``seq_len + 1`` characters of the training split, offsets from a CPU
    ``torch.Generator`` seeded with ``seed`` (so the same on every device); AdamW (lr 2e-3,
    betas (0.9, 0.95), weight decay 0.05 on BitLinear weights only), linear warm-up over
    200 steps then cosine decay to 10%; gradient clipping at 1.0; cross-entropy. Phases:
    per-token QAT for the first 70% of the steps; then static mode with the scales
    following an EMA of the batch absmax (5%); then static mode with frozen scales (25%),
    so the weights adapt to the scales that are exported. On CPU the run is deterministic
    (tested); on CUDA it is not bitwise (atomic adds in the embedding's backward).

    Parameters
    ----------
    text_path : the corpus (default ``<repo>/../shared/data/tinyshakespeare.txt``)
    out : path of the safetensors checkpoint to write, or None
    seed, steps : int (steps >= 1)
    device : "cpu" or "cuda" (or any torch device string)
    progress : show a tqdm progress bar
    config : model sizes; vocab_size is replaced by the corpus's
    batch_size, seq_len : windows a step and their length
    time_budget_s : if set, after 20 timed steps the number of steps is lowered (never
        raised) so the training fits the budget; the schedule depends only on the final
        number, which is reported (the run then equals one with ``steps=<reported>`` when
        that is >= 2000, the warm-up being fixed then)
    eval_chars : evaluate on the first ``eval_chars`` validation characters only (None: all)
    log_every : steps between logged training losses
    val_every : steps between validation bpc measurements on the first 16,384 validation
        characters (in the current mode, logged in ``curve``); None: none
    sample_chars : length of the generated sample in the result

    Returns
    -------
    dict (JSON-serialisable): ``val_bpc_per_token``, ``val_bpc_static`` (measured on the
    validation characters evaluated, ``val_chars_evaluated``), ``steps``, ``seconds_train``,
    ``seconds_total``, ``n_ternary``, ``config``, hyper-parameters, ``curve`` (logged
    losses), ``sample`` (greedy static-mode continuation of "ROMEO:", or of the first validation
    character if the vocabulary lacks those), device and versions.

    Raises
    ------
    ValueError for a bad corpus path or steps < 1.
    """
    from tqdm import tqdm

    steps = steps_requested = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps!r}")
    t0 = time.perf_counter()
    dev = torch.device(device)
    corpus = load_corpus(text_path)
    config = dataclasses.replace(config, vocab_size=len(corpus.vocab))
    if corpus.train.numel() <= seq_len + 1:
        raise ValueError(f"the training split ({corpus.train.numel()} characters) is shorter "
                         f"than a window of {seq_len + 1}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = MatMulFreeLM(config).to(dev)
    train_ids = corpus.train.to(dev)
    decay = [p for n, p in model.named_parameters() if n.endswith("proj.weight") or n == "lm_head.weight"]
    other = [p for n, p in model.named_parameters() if not (n.endswith("proj.weight") or n == "lm_head.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": _WEIGHT_DECAY},
                             {"params": other, "weight_decay": 0.0}], lr=_LR, betas=_BETAS)
    arange = torch.arange(seq_len + 1, device=dev)
    curve, running, n_running = [], 0.0, 0
    a_end, b_end = _phases(steps)
    bar = tqdm(total=steps, desc="train shakespeare", unit="step", disable=not progress,
               mininterval=0.5 if sys.stderr.isatty() else 30)
    t_train = time.perf_counter()
    t_probe, probe = None, None
    step = 0
    model.train().set_quant("per_token")
    phase = "per-token"
    while step < steps:
        want = "per-token" if step < a_end else ("calibrate" if step < b_end else "static")
        if want != phase:
            phase = want
            model.set_quant("static", calibrating=phase == "calibrate")
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps)
        off = torch.randint(0, train_ids.numel() - seq_len - 1, (batch_size,), generator=gen).to(dev)
        chunk = train_ids[off[:, None] + arange]
        logits, _ = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), _GRAD_CLIP)
        opt.step()
        step += 1
        bar.update(1)
        if step % 10 == 0 or step == steps:
            lv = float(loss.detach())
            running += lv
            n_running += 1
            bar.set_postfix(loss=f"{lv:.3f}", phase=phase)
        if step % log_every == 0 or step == steps:
            curve.append({"step": step, "train_loss_nats": round(running / max(1, n_running), 4),
                          "lr": round(_lr_at(step - 1, steps), 6),
                          "seconds": round(time.perf_counter() - t_train, 1)})
            running, n_running = 0.0, 0
        if val_every and step % val_every == 0 and step < steps:
            model.eval()
            curve.append({"step": step, "quant": model.quant,
                          "val_bpc_first_16k": round(evaluate_bpc(model, corpus.val[:16384], model.quant), 4)})
            model.train()
        if time_budget_s is not None:
            if step == 5:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t_probe = time.perf_counter()
            if step == 25:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                per_step = probe = (time.perf_counter() - t_probe) / 20
                # static-mode steps cost more (the quantizers); budget them at 1.3x.
                a, b = _CALIBRATE_AT, 1 - _CALIBRATE_AT
                fit = int((time_budget_s - (time.perf_counter() - t_train)) / (per_step * (a + 1.3 * b))) + step
                if fit < steps:
                    # never so few that the per-token phase would already be over
                    steps = max(fit, int(step / _CALIBRATE_AT) + 2)
                    a_end, b_end = _phases(steps)
                    bar.total = steps
                    bar.refresh()
    bar.close()
    seconds_train = time.perf_counter() - t_train
    model.set_quant("static").eval()
    val = corpus.val if eval_chars is None else corpus.val[:int(eval_chars)]
    n_streams = 32 if val.numel() >= 32 * 64 else max(1, val.numel() // 64)
    bpc_tok = evaluate_bpc(model, val, "per_token", n_streams=n_streams)
    bpc_static = evaluate_bpc(model, val, "static", n_streams=n_streams)
    prompt = "ROMEO:" if set("ROMEO:") <= set(corpus.vocab.chars) else corpus.vocab.decode(corpus.val[:1])
    sample = generate(model, corpus.vocab, prompt, sample_chars, quant="static")
    result = {
        "val_bpc_per_token": round(bpc_tok, 4), "val_bpc_static": round(bpc_static, 4),
        "val_chars_evaluated": int(val.numel()), "eval_streams": n_streams,
        "steps": steps, "steps_requested": steps_requested, "seed": seed, "batch_size": batch_size,
        "seq_len": seq_len, "phases": {"per_token_steps": a_end, "calibrate_steps": b_end - a_end,
                                       "static_frozen_steps": steps - b_end},
        "lr": _LR, "lr_min_fraction": _LR_MIN_FRACTION, "warmup": min(_WARMUP, max(1, steps // 10)),
        "weight_decay": _WEIGHT_DECAY, "betas": list(_BETAS), "grad_clip": _GRAD_CLIP,
        "n_ternary": model.n_ternary, "config": config.to_hf(),
        "embedding_int8_bytes": config.vocab_size * config.hidden_size,
        "seconds_train": round(seconds_train, 1), "time_budget_s": time_budget_s,
        "probe_seconds_per_step": None if probe is None else round(probe, 4),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "corpus_sha256": corpus.sha256, "split": SPLIT_DESCRIPTION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "curve": curve, "sample": sample,
    }
    if out is not None:
        md = {k: str(result[k]) for k in ("val_bpc_per_token", "val_bpc_static", "steps", "seed",
                                          "batch_size", "seq_len", "date", "corpus_sha256", "split")}
        md["model"] = "MatMulFreeLM"
        save_checkpoint(model, out, corpus.vocab, md)
        result["out"] = str(out)
    result["seconds_total"] = round(time.perf_counter() - t0, 1)
    return result
