"""Ternary MLP: the float QAT model, its training, its checkpoint and its integer golden model.

Three views of one network, which must agree:

* :class:`TernaryMLP`, the float model used for training (quantization-aware). Each
  :class:`BitLinear` ternarizes its latent weights with the BitNet b1.58 absmean rule and
  fake-quantizes its input to int8 with a *static* per-layer scale, both with a
  straight-through estimator.
* :func:`float_forward`, the same network evaluated from a checkpoint in float arithmetic.
* :func:`int_forward`, the integer golden model: int8 activations, exact ternary matvec,
  dyadic requantization, integer ReLU, and the raw accumulators of the last layer as the
  logits. This is the bit-exact specification the compiler, the interpreter and the RTL
  must reproduce. Every rule it applies comes from :mod:`golden.numerics`.

From float to integer
---------------------
Layer ``l`` has trits ``t_l`` (N_l, K_l), absmean scale ``gamma_l`` and input scale
``a_l`` (the real value of one LSB of its int8 input ``q_l``). Its real output is
``y_l = a_l * gamma_l * acc_l`` with ``acc_l = t_l @ q_l``. The next layer's input is
``q_{l+1} = quantize_act(relu(y_l), a_{l+1}) = relu(sat8(round(acc_l * M_l)))`` with
``M_l = gamma_l * a_l / a_{l+1}``, which the integer model applies as the dyadic
``(m_l, s_l) = numerics.dyadic(M_l)`` (ReLU and a monotone requantization commute). The
last layer keeps ``acc_L`` (its real logits are ``a_L * gamma_L * acc_L``, a positive
multiple, so the argmax is the same).

Checkpoint format (safetensors)
-------------------------------
One of two forms per layer ``i`` (0 = the input layer):

* latent (written by :func:`train_digits`): ``layers.{i}.weight`` (N, K) float32, the
  latent float weights, ternarized on load with ``numerics.absmean_ternarize``;
* trits (written by :func:`save_trit_checkpoint`): ``layers.{i}.trits`` (N, K) int8 in
  {-1, 0, +1} and ``layers.{i}.gamma`` scalar float32, stored already quantized;

and in both forms ``layers.{i}.act_scale``, a scalar float32: the real value of one LSB of
layer ``i``'s int8 input. Metadata (strings): ``dims`` (JSON list), ``seed``, ``epochs``,
``split``, ``input_scale``, ``float_test_accuracy``, ``int_test_accuracy``.

Sources: Ma et al. 2024 ("The Era of 1-bit LLMs", BitNet b1.58) for absmean BitLinear and
its straight-through training; Jacob et al. 2018 (sec. 2.2, 3) for static activation
ranges calibrated by an exponential moving average during training and for dyadic
requantization; Bengio et al. 2013 for the straight-through estimator.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import numerics
from .errors import CheckpointImportError
from .digits_data import (INPUT_SCALE, N_CLASSES, N_FEATURES, SPLIT_DESCRIPTION,
                          dequantize_pixels, load_split, quantize_pixels)

__all__ = [
    "DIGITS_DIMS", "DEFAULT_EPOCHS", "DEFAULT_CHECKPOINT", "COMMITTED_RECIPE", "SEED_MAX",
    "BitLinear", "TernaryMLP", "ste_ternary", "fake_quant_act",
    "TernaryLayer", "Checkpoint", "load_checkpoint", "save_trit_checkpoint",
    "IntBitLinear", "int_layers_from_trits", "int_layers_from_checkpoint", "mlp_graph",
    "int_forward", "float_forward", "load_float_model", "predict", "evaluate", "train_digits",
]

#: Layer widths of the digits model: 64 pixels -> 128 -> 64 -> 10 logits.
DIGITS_DIMS = (N_FEATURES, 128, 64, N_CLASSES)
#: Epochs of the committed checkpoint.
DEFAULT_EPOCHS = 60
#: The committed checkpoint of the digits model.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "digits.safetensors"

#: What the committed checkpoint is a function of, besides the recipe's code: seed 0, 60
#: epochs, one CPU thread, torch 2.13.0+cpu with ATen's AVX512 kernels (measured
#: 2026-12-01 on this machine: the recipe reproduces it bit for bit, 0.9694). ATen's CPU
#: kernels add floats in an order that depends on their vector width, so the same code
#: and seed train another model on other kernels: ATEN_CPU_CAPABILITY=avx2 gives 0.9667
#: (the figure issue 12 saw), =default 0.9722, both measured here with torch 2.13.0.
#: Checkpoints written from now on record their torch, kernels and threads in metadata.
COMMITTED_RECIPE = {"seed": 0, "epochs": 60, "threads": 1, "torch": "2.13.0+cpu",
                    "cpu_capability": "AVX512", "int_accuracy": "0.9694"}
#: The largest seed: torch.manual_seed takes 64 bits, but the CPU generator (mt19937)
#: keeps the low 32 (torch 2.13: seeds 0, 2^32 and 2^63 draw the same numbers) and a
#: negative seed is mapped onto 2^64 + seed, so 0 .. 2^32 - 1 are the distinct seeds.
SEED_MAX = (1 << 32) - 1

# Training hyper-parameters of train_digits (fixed: the checkpoint is a function of seed
# and epochs only, on one torch build and CPU kernel set: COMMITTED_RECIPE).
_LR = 1e-2
_BATCH = 32
_EMA_MOMENTUM = 0.9
#: Fraction of the epochs during which hidden activation scales follow the EMA; for the
#: rest they are frozen, so the weights adapt to the scales that are exported.
_CALIBRATE_FRACTION = 0.75


# ---------------------------------------------------------------------------------------
# Float QAT model
# ---------------------------------------------------------------------------------------

def ste_ternary(w: torch.Tensor) -> torch.Tensor:
    """Absmean-ternarized weights ``gamma * t`` in the forward pass, identity gradient.

    ``(t, gamma) = numerics.absmean_ternarize(w)``; returns ``gamma * t + (w - w.detach())``,
    so the forward value is exactly ``gamma * t`` (the added term is exactly 0; the usual
    ``w + (q - w).detach()`` is off by float rounding) and ``d out / d w = 1``
    (straight-through, as in BitNet b1.58; gamma is not differentiated).
    """
    t, gamma = numerics.absmean_ternarize(w)
    return t.to(w.dtype) * gamma + (w - w.detach())


def fake_quant_act(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Int8 fake quantization ``numerics.quantize_act(x, scale) * scale`` with a clipped STE.

    The forward value is exactly the dequantized int8 activation. The gradient passes
    straight through ``round`` and is zero where ``clamp`` saturates (``|x| > 127 * scale``).
    """
    lim = numerics.ACT_MAX * scale
    xc = torch.clamp(x, -lim, lim)
    q = numerics.quantize_act(x.detach(), scale).to(x.dtype) * scale
    return q + (xc - xc.detach())


class BitLinear(nn.Linear):
    """Bias-free linear layer with ternary weights and a static int8 input quantizer.

    Parameters
    ----------
    in_features, out_features : int
        fan-in K and outputs N; ``weight`` is (N, K) float32 (latent).
    act_scale : float or None
        Fixed real value of one LSB of the int8 input (the network input layer uses the
        input quantizer's scale). ``None``: calibrated while training, as an exponential
        moving average (momentum 0.9 a batch) of ``absmax(x) / 127``, until
        :meth:`freeze` is called.

    Buffers
    -------
    act_scale : () float32, the static input scale exported to the checkpoint.

    Forward: ``x (..., K) float -> (..., N) float``,
    ``fake_quant_act(x, act_scale) @ ste_ternary(weight).T``.
    """

    def __init__(self, in_features: int, out_features: int, *, act_scale: float | None = None):
        super().__init__(in_features, out_features, bias=False)
        if act_scale is not None and not (act_scale > 0 and math.isfinite(act_scale)):
            raise ValueError(f"act_scale must be positive and finite, not {act_scale!r}")
        self.register_buffer("act_scale", torch.tensor(0.0 if act_scale is None else float(act_scale),
                                                        dtype=torch.float32))
        self.calibrating = act_scale is None

    def freeze(self) -> None:
        """Stop updating the activation scale (it becomes the exported static scale)."""
        self.calibrating = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.calibrating:
            with torch.no_grad():
                amax = max(float(x.detach().abs().max()), 1e-6) / numerics.ACT_MAX
                if float(self.act_scale) == 0.0:
                    self.act_scale.fill_(amax)
                else:
                    self.act_scale.mul_(_EMA_MOMENTUM).add_((1 - _EMA_MOMENTUM) * amax)
        scale = float(self.act_scale)
        if not scale > 0:
            raise RuntimeError("BitLinear input scale is not calibrated: train it first or pass act_scale")
        return F.linear(fake_quant_act(x, scale), ste_ternary(self.weight))


class TernaryMLP(nn.Module):
    """A stack of :class:`BitLinear` layers with ReLU between them; the last gives logits.

    Parameters
    ----------
    dims : sequence of int, ``(K0, N0, N1, ..., N_last)``; default (64, 128, 64, 10).
    input_scale : float, real value of one LSB of the int8 network input (the first
        layer's fixed ``act_scale``); default ``digits_data.INPUT_SCALE`` = 16/127.

    Forward: ``x (B, K0) float`` (dequantized int8 input) ``-> (B, N_last) float`` logits.
    """

    def __init__(self, dims: Sequence[int] = DIGITS_DIMS, *, input_scale: float = INPUT_SCALE):
        super().__init__()
        dims = tuple(int(d) for d in dims)
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"dims must be at least two positive widths, not {dims!r}")
        self.dims = dims
        self.layers = nn.ModuleList(
            BitLinear(k, n, act_scale=input_scale if i == 0 else None)
            for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])))

    def freeze_scales(self) -> None:
        for layer in self.layers:
            layer.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TernaryLayer:
    """One quantized layer as a checkpoint defines it.

    trits : (N, K) int8 in {-1, 0, +1}; gamma : float, absmean scale (real weight =
    gamma * trit); act_scale : float, real value of one LSB of the layer's int8 input.
    """
    trits: torch.Tensor
    gamma: float
    act_scale: float


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded, validated checkpoint.

    layers : quantized layers, input layer first; latent : the latent float weights
    (N, K) float32 a layer, or ``None`` for a checkpoint stored as trits; metadata : str
    -> str; source : where it came from (for messages).
    """
    layers: tuple[TernaryLayer, ...]
    latent: tuple[torch.Tensor, ...] | None
    metadata: dict[str, str]
    source: str

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.layers[0].trits.shape[1],) + tuple(l.trits.shape[0] for l in self.layers)


def _scalar(tensors: dict[str, torch.Tensor], key: str, where: str) -> float:
    v = tensors[key]
    if v.numel() != 1 or v.dim() > 1:
        raise CheckpointImportError(f"checkpoint {where}: tensor {key!r} must be a scalar, not shape {tuple(v.shape)}")
    if not v.is_floating_point():
        raise CheckpointImportError(f"checkpoint {where}: tensor {key!r} must be floating point, not {v.dtype}")
    f = float(v.reshape(()))
    if not (math.isfinite(f) and f > 0):
        raise CheckpointImportError(f"checkpoint {where}: tensor {key!r} must be positive and finite, not {f!r}")
    return f


def _parse_checkpoint(tensors: dict[str, torch.Tensor], metadata: dict[str, str],
                      where: str) -> Checkpoint:
    """Validate checkpoint tensors and quantize them; see the module docstring for the form."""
    indices: set[int] = set()
    for key in tensors:
        parts = key.split(".")
        if (len(parts) != 3 or parts[0] != "layers" or not parts[1].isdigit()
                or parts[2] not in ("weight", "trits", "gamma", "act_scale")):
            raise CheckpointImportError(f"checkpoint {where}: unexpected tensor {key!r} (expected "
                             f"layers.<i>.weight or layers.<i>.trits/gamma, and layers.<i>.act_scale)")
        indices.add(int(parts[1]))
    if not indices:
        raise CheckpointImportError(f"checkpoint {where} holds no layers.<i>.* tensors")
    n_layers = max(indices) + 1
    layers, latent = [], []
    for i in range(n_layers):
        p = f"layers.{i}."
        if p + "act_scale" not in tensors:
            raise CheckpointImportError(f"checkpoint {where} is missing tensor {p + 'act_scale'!r}")
        act_scale = _scalar(tensors, p + "act_scale", where)
        if p + "weight" in tensors:
            if p + "trits" in tensors or p + "gamma" in tensors:
                raise CheckpointImportError(f"checkpoint {where}: layer {i} has both latent weights and trits")
            w = tensors[p + "weight"]
            if w.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
                raise CheckpointImportError(f"checkpoint {where}: tensor {p + 'weight'!r} must be floating point "
                                            f"(float16, bfloat16, float32 or float64), not {w.dtype}")
            if w.dim() != 2:
                raise CheckpointImportError(f"checkpoint {where}: tensor {p + 'weight'!r} must be 2-D (N, K), "
                                 f"not shape {tuple(w.shape)}")
            if not bool(torch.isfinite(w).all()):
                raise CheckpointImportError(f"checkpoint {where}: tensor {p + 'weight'!r} holds NaN or infinite values")
            w = w.to(torch.float32)
            trits, gamma = numerics.absmean_ternarize(w)
            latent.append(w)
        elif p + "trits" in tensors:
            if p + "gamma" not in tensors:
                raise CheckpointImportError(f"checkpoint {where} is missing tensor {p + 'gamma'!r}")
            t = tensors[p + "trits"]
            if t.dim() != 2:
                raise CheckpointImportError(f"checkpoint {where}: tensor {p + 'trits'!r} must be 2-D (N, K), "
                                 f"not shape {tuple(t.shape)}")
            try:
                trits = numerics.check_ternary(t, f"checkpoint tensor {p + 'trits'!r} in {where}")
            except ValueError as e:
                raise CheckpointImportError(str(e)) from None
            gamma = _scalar(tensors, p + "gamma", where)
            latent = None
        else:
            raise CheckpointImportError(f"checkpoint {where} is missing tensor {p + 'weight'!r} (or {p + 'trits'!r})")
        if layers and trits.shape[1] != layers[-1].trits.shape[0]:
            raise CheckpointImportError(f"checkpoint {where}: layer {i} has fan-in {trits.shape[1]} but layer "
                             f"{i - 1} has {layers[-1].trits.shape[0]} outputs")
        layers.append(TernaryLayer(trits=trits, gamma=float(gamma), act_scale=act_scale))
    kinds = {("weight" if f"layers.{i}.weight" in tensors else "trits") for i in range(n_layers)}
    if len(kinds) > 1:
        raise CheckpointImportError(f"checkpoint {where} mixes latent-weight and trit layers")
    ckpt = Checkpoint(layers=tuple(layers), latent=tuple(latent) if latent else None,
                      metadata=dict(metadata), source=where)
    if "dims" in metadata:
        try:
            dims = tuple(int(d) for d in json.loads(metadata["dims"]))
        except (ValueError, TypeError, OverflowError):
            raise CheckpointImportError(f"checkpoint {where}: metadata dims {metadata['dims']!r} is not a JSON "
                             f"list of integers") from None
        if dims != ckpt.dims:
            raise CheckpointImportError(f"checkpoint {where}: metadata dims {list(dims)} do not match the "
                             f"tensor shapes {list(ckpt.dims)}")
    return ckpt


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a safetensors checkpoint (latent or trit form).

    Raises
    ------
    CheckpointImportError (a ValueError), one sentence naming the file, if it does not exist, is not a readable
    safetensors file (corrupt or truncated), misses a tensor, has a tensor of the wrong
    shape or dtype, holds NaN/infinite values or non-positive scales, has trits that are
    not ternary, has layer shapes that do not chain, or says (``model`` metadata) it is
    another model's.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise CheckpointImportError(f"checkpoint {str(p)!r} does not exist")
    if not p.is_file():
        raise CheckpointImportError(f"checkpoint {str(p)!r} is not a file")
    try:
        with safe_open(str(p), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            # copies: a tensor safetensors maps from the file dies (SIGBUS) if the file is
            # later rewritten in place
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types (and OSError) here
        raise CheckpointImportError(f"checkpoint {str(p)!r} is not a readable safetensors file "
                         f"(corrupt or truncated): {' '.join(str(e).split())}") from None
    kind = metadata.get("model") or metadata.get("format")   # the LM's and the ViT's say
    if kind is not None and kind != "TernaryMLP":
        raise CheckpointImportError(f"checkpoint {str(p)!r} is a {kind} checkpoint, not one of the "
                         f"digits MLP (TernaryMLP)")
    return _parse_checkpoint(tensors, metadata, str(p))


def save_trit_checkpoint(path: str | Path, layers: Sequence[TernaryLayer],
                         metadata: dict[str, str] | None = None) -> None:
    """Write a checkpoint in trit form (``layers.{i}.trits`` int8, ``.gamma``, ``.act_scale``).

    Raises
    ------
    ValueError if a layer's trits are not ternary.
    """
    from safetensors.torch import save_file

    tensors = {}
    for i, l in enumerate(layers):
        tensors[f"layers.{i}.trits"] = numerics.check_ternary(l.trits, f"layer {i} trits").contiguous()
        tensors[f"layers.{i}.gamma"] = torch.tensor(float(l.gamma), dtype=torch.float32)
        tensors[f"layers.{i}.act_scale"] = torch.tensor(float(l.act_scale), dtype=torch.float32)
    md = dict(metadata or {})
    md["dims"] = json.dumps([int(layers[0].trits.shape[1])] + [int(l.trits.shape[0]) for l in layers])
    save_file(tensors, str(path), metadata=md)


# ---------------------------------------------------------------------------------------
# Integer golden model
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IntBitLinear:
    """One layer of the integer golden model.

    ``acc = numerics.ternary_matvec(trits, x)`` (exact, ``numerics.acc_width(K)`` bits);
    then, unless ``raw``, ``y = numerics.requantize(acc, m, s)`` (int8) and ``relu`` if set.
    With ``raw`` (the last layer) the int64 accumulators are the output and ``m``, ``s``
    are unused (0).

    Raises
    ------
    ValueError on construction if ``trits`` is not a 2-D ternary tensor or ``m``/``s`` do
    not fit ``numerics.M_BITS``/``numerics.S_BITS``.
    """
    trits: torch.Tensor   # (N, K) int8 in {-1,0,1}
    m: int                # dyadic multiplier (0 <= m < 2**M_BITS)
    s: int                # dyadic shift
    relu: bool            # ReLU after requant
    raw: bool             # last layer: output raw int accumulators (the logits), no requant

    def __post_init__(self):
        if not isinstance(self.trits, torch.Tensor) or self.trits.dim() != 2:
            raise ValueError(f"IntBitLinear trits must be a 2-D tensor (N, K), not {self.trits!r}")
        object.__setattr__(self, "trits", numerics.check_ternary(self.trits, "IntBitLinear trits"))
        if not 0 <= self.m < (1 << numerics.M_BITS):
            raise ValueError(f"dyadic multiplier m={self.m!r} does not fit {numerics.M_BITS} unsigned bits")
        if not 0 <= self.s <= numerics.S_MAX:
            raise ValueError(f"dyadic shift s={self.s!r} is outside [0, {numerics.S_MAX}]")


def int_layers_from_trits(trits: Sequence[torch.Tensor], gammas: Sequence[float],
                          act_scales: Sequence[float]) -> list[IntBitLinear]:
    """Build the integer golden model from quantized layers.

    Parameters
    ----------
    trits : per layer, (N_l, K_l) trits, K_{l+1} = N_l
    gammas : per layer, the absmean scale gamma_l (> 0)
    act_scales : per layer, a_l, the real value of one LSB of layer l's int8 input (> 0)

    Returns
    -------
    list of :class:`IntBitLinear`: every layer but the last requantizes with
    ``(m, s) = numerics.dyadic(gamma_l * a_l / a_{l+1})`` and applies ReLU; the last is raw.

    Raises
    ------
    ValueError if the lists differ in length or are empty, a tensor is not ternary, the
    shapes do not chain, or a requantization scale cannot be represented.
    """
    if not (len(trits) == len(gammas) == len(act_scales)) or not trits:
        raise ValueError(f"need one gamma and one act_scale a layer: got {len(trits)} trit tensors, "
                         f"{len(gammas)} gammas, {len(act_scales)} act_scales")
    out = []
    for l, t in enumerate(trits):
        if l and t.shape[1] != trits[l - 1].shape[0]:
            raise ValueError(f"layer {l} has fan-in {t.shape[1]} but layer {l - 1} has "
                             f"{trits[l - 1].shape[0]} outputs")
        if l == len(trits) - 1:
            out.append(IntBitLinear(trits=t, m=0, s=0, relu=False, raw=True))
        else:
            m, s = numerics.dyadic(float(gammas[l]) * float(act_scales[l]) / float(act_scales[l + 1]))
            out.append(IntBitLinear(trits=t, m=m, s=s, relu=True, raw=False))
    return out


def _int_layers(ckpt: Checkpoint) -> list[IntBitLinear]:
    return int_layers_from_trits([l.trits for l in ckpt.layers], [l.gamma for l in ckpt.layers],
                                 [l.act_scale for l in ckpt.layers])


def int_layers_from_checkpoint(path: str | Path) -> list[IntBitLinear]:
    """Load a checkpoint (latent or trit form) and build its integer golden model.

    Latent weights are ternarized with ``numerics.absmean_ternarize``; see
    :func:`int_layers_from_trits` for the requantization. Raises ``ValueError`` as
    :func:`load_checkpoint` does.
    """
    return _int_layers(load_checkpoint(path))


def int_forward(layers: Sequence[IntBitLinear], x_int8: torch.Tensor) -> torch.Tensor:
    """Run the integer golden model.

    Parameters
    ----------
    layers : from :func:`int_layers_from_checkpoint`; only the last may be ``raw``
    x_int8 : (B, K0) integer tensor, values in [-127, 127] (int8 activations)

    Returns
    -------
    (B, N_last) int64: the raw accumulators of the last layer (the logits), each within
    ``numerics.acc_width(K_last)`` signed bits.

    Raises
    ------
    ValueError if the input is not integer, out of the int8 range or of the wrong width,
    or a raw layer is not the last.
    """
    if x_int8.is_floating_point() or x_int8.dtype == torch.bool:
        raise ValueError(f"int_forward takes integer activations, not {x_int8.dtype}")
    if x_int8.dim() != 2 or x_int8.shape[1] != layers[0].trits.shape[1]:
        raise ValueError(f"int_forward input must be (B, {layers[0].trits.shape[1]}), "
                         f"not shape {tuple(x_int8.shape)}")
    if x_int8.numel() and (int(x_int8.min()) < numerics.ACT_MIN or int(x_int8.max()) > numerics.ACT_MAX):
        raise ValueError(f"int_forward input must lie in [{numerics.ACT_MIN}, {numerics.ACT_MAX}]")
    for l, layer in enumerate(layers[:-1]):
        if layer.raw:
            raise ValueError(f"layer {l} is raw but is not the last layer")
    g = mlp_graph(layers)
    env = g.evaluate({"x": x_int8.to(torch.int64)})
    return env[g.outputs[0]]


def mlp_graph(layers: Sequence[IntBitLinear], names: Sequence[str] | None = None,
              gammas: Sequence[float] | None = None,
              act_scales: Sequence[float] | None = None):
    """The integer MLP as a model graph (:mod:`ternac.golden.graph`).

    ``x`` (K0,) int8 input; per layer ``l`` a MATVEC over weight ``layers.l`` (or
    ``names[l]``): int8 (RELU where the layer has it) for every layer but the last, RAW int32
    accumulators ``logits`` for the last; then ARGMAX over the logits (the result register is
    the class). Evaluating it is :func:`int_forward`.

    Raises
    ------
    ValueError (GraphError) if the shapes do not chain.
    """
    from .graph import Graph, Vec
    from .isa import Flag, Op

    g = Graph(name="mlp")
    layers = list(layers)
    x = g.input("x", int(layers[0].trits.shape[1]), bits=8)
    last = len(layers) - 1
    for l, layer in enumerate(layers):
        nm = names[l] if names is not None else f"layers.{l}"
        w = g.weight(nm, layer.trits, gamma=gammas[l] if gammas is not None else 0.0,
                     act_scale=act_scales[l] if act_scales is not None else 0.0)
        n = int(layer.trits.shape[0])
        if l == last and layer.raw:
            out = g.add(Op.MATVEC, Vec("logits", n, 32), x, weight=w, flags=int(Flag.RAW))
        else:
            flags = int(Flag.RELU) if layer.relu else 0
            out = g.add(Op.MATVEC, Vec(f"h{l}", n, 8), x, weight=w, m=int(layer.m),
                        s=int(layer.s), flags=flags)
        x = out
    if layers[last].raw:
        g.add(Op.ARGMAX, None, x)
    g.outputs = [x]
    return g


# ---------------------------------------------------------------------------------------
# Float evaluation
# ---------------------------------------------------------------------------------------

def _as_checkpoint(ckpt: Checkpoint | str | Path) -> Checkpoint:
    return ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt)


def float_forward(ckpt: Checkpoint | str | Path, x_int8: torch.Tensor) -> torch.Tensor:
    """The float model of a checkpoint on int8 input: (B, K0) integer -> (B, N_last) float32.

    Layer l computes ``fake_quant_act(x, a_l) @ (gamma_l * t_l).T`` in float32 with ReLU
    between layers, which is exactly :class:`TernaryMLP` in eval mode; the input is
    dequantized as ``x_int8 * a_0``.
    """
    ckpt = _as_checkpoint(ckpt)
    x = x_int8.to(torch.float32) * ckpt.layers[0].act_scale
    with torch.no_grad():
        for i, l in enumerate(ckpt.layers):
            x = F.linear(fake_quant_act(x, l.act_scale), l.trits.to(torch.float32) * l.gamma)
            if i < len(ckpt.layers) - 1:
                x = F.relu(x)
    return x


def load_float_model(ckpt: Checkpoint | str | Path) -> TernaryMLP:
    """Rebuild the :class:`TernaryMLP` (eval mode, scales frozen) from a latent checkpoint.

    Raises
    ------
    ValueError if the checkpoint is stored as trits (it has no latent weights) or as
    :func:`load_checkpoint` raises.
    """
    ckpt = _as_checkpoint(ckpt)
    if ckpt.latent is None:
        raise ValueError(f"checkpoint {ckpt.source} holds trits, not the latent weights a float model needs")
    model = TernaryMLP(ckpt.dims, input_scale=ckpt.layers[0].act_scale)
    with torch.no_grad():
        for layer, w, q in zip(model.layers, ckpt.latent, ckpt.layers):
            layer.weight.copy_(w)
            layer.act_scale.fill_(q.act_scale)
    model.freeze_scales()
    return model.eval()


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class of each row: the smallest index of the largest logit (the ISA's ARGMAX,
    :func:`ternac.golden.vecops.argmax`)."""
    from .vecops import argmax

    return argmax(logits)


def _accuracies(ckpt: Checkpoint, x_test: torch.Tensor, y_test: torch.Tensor) -> dict:
    if ckpt.dims[0] != N_FEATURES or ckpt.dims[-1] != N_CLASSES:
        raise ValueError(f"checkpoint {ckpt.source} has dims {list(ckpt.dims)}, but a digits model "
                         f"takes {N_FEATURES} inputs and gives {N_CLASSES} logits")
    if not math.isclose(ckpt.layers[0].act_scale, INPUT_SCALE, rel_tol=1e-6):
        raise ValueError(f"checkpoint {ckpt.source} has input scale {ckpt.layers[0].act_scale!r}, "
                         f"but the digits input quantizer uses {INPUT_SCALE!r} (16/127)")
    xq = quantize_pixels(x_test)
    f_pred = predict(float_forward(ckpt, xq))
    i_pred = predict(int_forward(_int_layers(ckpt), xq))
    n = int(y_test.numel())
    return {
        "float_accuracy": int((f_pred == y_test).sum()) / n,
        "int_accuracy": int((i_pred == y_test).sum()) / n,
        "float_int_agreement": int((f_pred == i_pred).sum()) / n,
        "n_test": n,
    }


def evaluate(path: str | Path = DEFAULT_CHECKPOINT) -> dict:
    """Test accuracy of a digits checkpoint, float model and integer golden model.

    Returns
    -------
    dict: ``float_accuracy``, ``int_accuracy`` (fractions of the 360 test images),
    ``float_int_agreement`` (fraction of equal predictions), ``n_test``.

    Raises
    ------
    ValueError as :func:`load_checkpoint`, or if the checkpoint is not a 64 -> ... -> 10
    model with input scale 16/127.
    """
    _, _, x_te, y_te = load_split()
    return _accuracies(load_checkpoint(path), x_te, y_te)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

def train_digits(seed: int = 0, epochs: int = DEFAULT_EPOCHS, out: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Train the digits :class:`TernaryMLP` (quantization-aware) and save its checkpoint.

    Deterministic: initialisation from ``torch.manual_seed(seed)``, batch order from a
    ``torch.Generator`` seeded with ``seed``, one CPU thread; bit for bit on one torch
    build and one set of ATen CPU kernels (:data:`COMMITTED_RECIPE`: other kernels train
    another model). Adam (lr 1e-2, cosine decay),
    batch 32, cross-entropy. Hidden activation scales follow an EMA of absmax for the first
    75% of the epochs and are frozen for the rest. About 0.1 s an epoch on one core.

    Parameters
    ----------
    seed : int, 0 .. SEED_MAX
    epochs : int, >= 1
    out : path of the safetensors checkpoint to write (latent form), or None to write none;
        written atomically (an existing file is replaced only by the complete new one)
    progress : show a tqdm progress bar

    Returns
    -------
    dict: ``float_accuracy``, ``int_accuracy`` (test split), ``train_accuracy`` (float),
    ``float_int_agreement``, ``n_test``, ``seed`` (the seed used), ``epochs``, ``seconds``,
    ``out``, ``torch`` (version), ``cpu_capability`` (ATen's kernels), ``threads`` (1).

    Raises
    ------
    ValueError for epochs < 1 or a seed outside 0 .. SEED_MAX.
    """
    from tqdm import tqdm

    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs!r}")
    if not (isinstance(seed, int) and 0 <= seed <= SEED_MAX):
        raise ValueError(f"the seed must be an integer from 0 to 2^32 - 1 (torch's CPU "
                         f"generator keeps 32 bits), not {seed!r}")
    capability = torch.backends.cpu.get_cpu_capability()
    epochs = int(epochs)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x_tr, y_tr, x_te, y_te = load_split()
        x_in = dequantize_pixels(quantize_pixels(x_tr))
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = TernaryMLP(DIGITS_DIMS)
        opt = torch.optim.Adam(model.parameters(), lr=_LR)
        steps_per_epoch = math.ceil(x_in.shape[0] / _BATCH)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        freeze_at = max(1, round(epochs * _CALIBRATE_FRACTION))
        bar = tqdm(range(epochs), desc="train digits", unit="epoch", disable=not progress)
        for epoch in bar:
            if epoch == freeze_at:
                model.freeze_scales()
            model.train()
            perm = torch.randperm(x_in.shape[0], generator=gen)
            total = 0.0
            for b in range(steps_per_epoch):
                idx = perm[b * _BATCH:(b + 1) * _BATCH]
                loss = F.cross_entropy(model(x_in[idx]), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * idx.numel()
            bar.set_postfix(loss=f"{total / x_in.shape[0]:.4f}")
        model.freeze_scales()
        model.eval()
        with torch.no_grad():
            train_acc = int((predict(model(x_in)) == y_tr).sum()) / y_tr.numel()
        tensors = {}
        for i, layer in enumerate(model.layers):
            tensors[f"layers.{i}.weight"] = layer.weight.detach().to(torch.float32).contiguous().clone()
            tensors[f"layers.{i}.act_scale"] = layer.act_scale.detach().to(torch.float32).clone()
        metadata = {"model": "TernaryMLP", "dims": json.dumps(list(DIGITS_DIMS)), "seed": str(seed),
                    "epochs": str(epochs), "split": SPLIT_DESCRIPTION, "input_scale": repr(INPUT_SCALE),
                    "torch": torch.__version__, "cpu_capability": capability, "threads": "1"}
        ckpt = _parse_checkpoint(tensors, metadata, "<in memory>")
        result = _accuracies(ckpt, x_te, y_te)
        # The float model of the checkpoint must be the trained model itself.
        with torch.no_grad():
            model_pred = predict(model(dequantize_pixels(quantize_pixels(x_te))))
        assert int((model_pred == y_te).sum()) / y_te.numel() == result["float_accuracy"]
        if out is not None:
            from safetensors.torch import save

            from .fileio import atomic_write
            metadata["float_test_accuracy"] = f"{result['float_accuracy']:.4f}"
            metadata["int_test_accuracy"] = f"{result['int_accuracy']:.4f}"
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, save(tensors, metadata=metadata))
    finally:
        torch.set_num_threads(threads)
    result.update(train_accuracy=train_acc, seed=seed, epochs=epochs,
                  seconds=time.perf_counter() - t0, out=None if out is None else str(out),
                  torch=torch.__version__, cpu_capability=capability, threads=1)
    return result
