"""Import ternary language-model checkpoints in the Hugging Face layout, and size checks.

Two layouts, each a folder with ``config.json`` and ``model.safetensors`` (or shards listed
in ``model.safetensors.index.json``):

* **MatMul-free LM** (``model_type`` ``hgrn_bit``, the reference ridgerchu/matmulfreellm
  ``HGRNBitForCausalLM``): config keys of ``HGRNBitConfig`` (``hidden_size``,
  ``num_hidden_layers``, ``intermediate_size`` or ``hidden_ratio``, ``vocab_size``,
  ``expand_ratio``, ``num_heads``, ``use_lower_bound``, ``rms_norm_eps``, ...) and tensor
  names such as ``model.layers.0.attn.i_proj.weight``, ``model.layers.0.attn.i_proj.norm.weight``.
  :func:`load_hf_checkpoint` builds a :class:`golden.lm.MatMulFreeLM` (per-token mode; its
  static scales are not in such a checkpoint, :func:`golden.lm.calibrate` sets them).
* **BitNet b1.58** (Llama layout, ``model_type`` ``bitnet`` or ``llama``): the BitLinear
  weights ``model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`` and
  ``model.layers.{i}.mlp.{gate,up,down}_proj.weight``. Each is imported as trits and a
  scale: float (master) weights are ternarized with ``numerics.absmean_ternarize``; weights
  already packed as by ``transformers.integrations.bitnet`` (uint8 of shape (N/4, K), trit
  ``i`` of row block ``i`` in bits ``[2i+1:2i]`` as ``value + 1``, with ``weight_scale`` =
  1 / gamma) are unpacked; int8 trits are taken as they are. :func:`load_bitnet_trits`
  returns the trits; the embedding, norms and lm_head (not BitLinear) are only counted.

Both check the size against a board (:func:`check_fits`) from the tensor shapes *before*
reading any weight, so a model too big fails fast with one sentence giving its size in
trits and the board's capacity.

Errors a user can cause (a missing or corrupt file, a bad config, missing tensors, wrong
shapes, a model too big) raise ``ValueError`` with one sentence.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from . import numerics
from .lm import LMConfig, MatMulFreeLM, load_state

__all__ = ["BOARD_CAPACITY_TRITS", "check_fits", "read_config", "load_hf_checkpoint",
           "TritImport", "load_bitnet_trits", "hgrn_trits", "inspect_checkpoint",
           "unpack_hf_bitnet"]

#: Trits of weight memory a board offers, and what that is (derived from the datasheets).
BOARD_CAPACITY_TRITS: dict[str, tuple[int, str]] = {
    "up5k": (524_288, "iCE40 UP5K SPRAM, 4 x 256 Kbit at I2 (2 bits a trit)"),
    "up5k-t3": (655_360, "iCE40 UP5K SPRAM, 4 x 256 Kbit at T3 (5 trits a byte)"),
    "ecp5-85f": (1_703_936, "ECP5-85F EBR, 208 x 16 Kbit (x16 ports) at I2"),
}

# Tensors ternac adds to a MatMul-free checkpoint; a reference checkpoint has none of them.
_TERNAC_BUFFERS = ("act_scale", "in_absmax", "out_absmax", "h_scale", "residual_scale",
                   "embeddings.scale")


def check_fits(n_trits: int, board: str = "up5k") -> None:
    """Raise unless ``n_trits`` ternary weights fit ``board``'s weight memory.

    Parameters
    ----------
    n_trits : int, the model's ternary weights
    board : a key of :data:`BOARD_CAPACITY_TRITS` (``"up5k"``: 524,288 trits of SPRAM at I2)

    Raises
    ------
    ValueError for an unknown board, or when the model does not fit; the message gives the
    model's size in trits and the board's capacity.
    """
    if board not in BOARD_CAPACITY_TRITS:
        raise ValueError(f"unknown board {board!r}; known boards: {', '.join(sorted(BOARD_CAPACITY_TRITS))}")
    cap, what = BOARD_CAPACITY_TRITS[board]
    if int(n_trits) > cap:
        raise ValueError(f"the model has {int(n_trits):,} ternary weights (trits), more than the "
                         f"{cap:,} trits board {board!r} holds ({what})")


def read_config(folder: str | Path) -> dict:
    """Read ``folder/config.json``. Raises ValueError if it is missing or not a JSON object."""
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise ValueError(f"checkpoint folder {str(folder)!r} has no config.json")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(p)!r} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{str(p)!r} must hold a JSON object, not {type(cfg).__name__}")
    return cfg


def _weight_files(folder: Path) -> list[Path]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            wm = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted({folder / f for f in wm.values()})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{str(index)!r} is not a valid safetensors index: {e}") from None
        for f in files:
            if not f.is_file():
                raise ValueError(f"{str(index)!r} lists {f.name!r}, which does not exist")
        return files
    raise ValueError(f"checkpoint folder {str(folder)!r} has no model.safetensors "
                     f"(nor model.safetensors.index.json)")


class _Reader:
    """Lazy access to the tensors of one or more safetensors files (shapes without reading)."""

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        self._handles, self._where = [], {}
        for f in _weight_files(self.folder):
            try:
                h = safe_open(str(f), framework="pt")
                keys = list(h.keys())
            except Exception as e:  # safetensors raises its own error types
                raise ValueError(f"{str(f)!r} is not a readable safetensors file (corrupt or "
                                 f"truncated): {e}") from None
            self._handles.append(h)
            for k in keys:
                self._where[k] = (h, f)

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, k: str) -> bool:
        return k in self._where

    def shape(self, k: str) -> tuple[int, ...]:
        return tuple(self._where[k][0].get_slice(k).get_shape())

    def get(self, k: str) -> torch.Tensor:
        h, f = self._where[k]
        try:
            return h.get_tensor(k)
        except Exception as e:
            raise ValueError(f"{str(f)!r}: tensor {k!r} cannot be read (corrupt file): {e}") from None


# ---------------------------------------------------------------------------------------
# MatMul-free LM (HGRN-Bit)
# ---------------------------------------------------------------------------------------

def _hgrn_config(cfg: dict, where: str) -> LMConfig:
    mt = cfg.get("model_type", "hgrn_bit")
    if mt != "hgrn_bit":
        raise ValueError(f"{where}: model_type {mt!r} is not a MatMul-free LM (hgrn_bit)")
    try:
        return LMConfig.from_hf(cfg)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: bad config: {e}") from None


def load_hf_checkpoint(folder: str | Path, board: str | None = "up5k") -> MatMulFreeLM:
    """Load a MatMul-free LM in the reference's Hugging Face layout into :class:`MatMulFreeLM`.

    Parameters
    ----------
    folder : holds ``config.json`` (``HGRNBitConfig`` keys) and ``model.safetensors``
    board : check the size with :func:`check_fits` first (None: no check)

    Returns
    -------
    The model in eval mode and per-token quantization, float32 (bf16/fp16 tensors are
    converted). ternac's static scales are loaded when present (a checkpoint ternac wrote
    in this layout), otherwise left at 0 (call :func:`golden.lm.calibrate`).

    Raises
    ------
    ValueError for a missing/corrupt config or weight file, an unsupported config
    (short convolutions, another activation), a missing, unexpected or misshapen tensor,
    tied embeddings without an ``lm_head.weight``, or a model too big for ``board``.
    """
    folder = Path(folder)
    where = str(folder)
    config = _hgrn_config(read_config(folder), where)
    if board is not None:
        check_fits(config.n_ternary, board)
    reader = _Reader(folder)
    if "lm_head.weight" not in reader:
        raise ValueError(f"checkpoint {where} has no 'lm_head.weight' (a tied lm_head is not a "
                         f"ternary BitLinear; ternac needs its own)")
    model = MatMulFreeLM(config)
    expected = model.state_dict()
    for k in reader.keys():
        if k in expected and reader.shape(k) != tuple(expected[k].shape):
            raise ValueError(f"checkpoint {where}: tensor {k!r} has shape {reader.shape(k)}, "
                             f"expected {tuple(expected[k].shape)} from config.json")
    tensors = {k: reader.get(k) for k in reader.keys()}
    load_state(model, tensors, where, allow_missing=_TERNAC_BUFFERS)
    return model.set_quant("per_token").eval()


def hgrn_trits(model: MatMulFreeLM) -> dict[str, tuple[torch.Tensor, float]]:
    """The trits of every BitLinear of a MatMul-free LM: ``{module name: (t int8, gamma)}``."""
    from .lm import ternary_layers

    return ternary_layers(model)


# ---------------------------------------------------------------------------------------
# BitNet b1.58 (Llama layout)
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TritImport:
    """Ternary layers imported from a checkpoint.

    kind : "hgrn_bit" or "bitnet"; config : the config.json dict; layers : ``{weight name:
    (t (N, K) int8 in {-1, 0, +1}, gamma)}``, real weight ``gamma * t``; n_trits : total
    trits; other_params : parameters that are not ternary (embeddings, norms, lm_head of
    BitNet), counted, not imported.
    """
    kind: str
    config: dict
    layers: dict[str, tuple[torch.Tensor, float]]
    n_trits: int
    other_params: int


_BITNET_PROJ = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"),
                ("self_attn", "o_proj"), ("mlp", "gate_proj"), ("mlp", "up_proj"),
                ("mlp", "down_proj"))


def _bitnet_shapes(cfg: dict, where: str) -> dict[str, tuple[int, int]]:
    def need(k):
        v = cfg.get(k)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{where}: config {k!r} must be a positive integer, not {v!r}")
        return v

    d, inter, n_layers, heads = (need("hidden_size"), need("intermediate_size"),
                                 need("num_hidden_layers"), need("num_attention_heads"))
    kv = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or d // heads
    shapes = {}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        shapes[p + "self_attn.q_proj.weight"] = (heads * hd, d)
        shapes[p + "self_attn.k_proj.weight"] = (kv * hd, d)
        shapes[p + "self_attn.v_proj.weight"] = (kv * hd, d)
        shapes[p + "self_attn.o_proj.weight"] = (d, heads * hd)
        shapes[p + "mlp.gate_proj.weight"] = (inter, d)
        shapes[p + "mlp.up_proj.weight"] = (inter, d)
        shapes[p + "mlp.down_proj.weight"] = (d, inter)
    return shapes


def unpack_hf_bitnet(packed: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Unpack ``transformers.integrations.bitnet`` 2-bit weights: uint8 (N/4, K) -> int8 (N, K).

    Row ``i * (N/4) + r`` of the result is field ``i`` (bits ``[2i+1:2i]``) of packed row
    ``r``, minus 1. Raises ValueError for a field of 3 (not a trit) or a wrong shape.
    """
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"packed BitNet weights must be 2-D uint8, not {packed.dtype} {tuple(packed.shape)}")
    rows = packed.shape[0]
    if rows * 4 < n_rows or (rows - 1) * 4 >= n_rows:
        raise ValueError(f"packed weights of {rows} rows cannot hold {n_rows} rows of trits")
    fields = [((packed >> (2 * i)) & 3) for i in range(4)]
    u = torch.cat(fields, 0)[:n_rows]
    if bool((u == 3).any()):
        raise ValueError("packed BitNet weights hold the 2-bit value 3, which is not a trit")
    return (u.to(torch.int8) - 1)


def load_bitnet_trits(folder: str | Path, board: str | None = "up5k") -> TritImport:
    """Import the BitLinear layers of a BitNet b1.58 checkpoint (Llama layout) as trits.

    Parameters
    ----------
    folder : holds ``config.json`` (``hidden_size``, ``intermediate_size``,
        ``num_hidden_layers``, ``num_attention_heads``, optional ``num_key_value_heads``,
        ``head_dim``) and the safetensors weights
    board : check the size with :func:`check_fits` before reading weights (None: no check)

    Returns
    -------
    :class:`TritImport` with the 7 projections of every layer (see the module docstring
    for the three weight forms accepted).

    Raises
    ------
    ValueError for a missing/corrupt file, a config without the sizes, a missing
    projection, a shape that disagrees with the config, non-finite weights, int8 weights
    that are not ternary, or a model too big for ``board``.
    """
    folder = Path(folder)
    where = str(folder)
    cfg = read_config(folder)
    mt = cfg.get("model_type", "bitnet")
    if mt not in ("bitnet", "llama"):
        raise ValueError(f"{where}: model_type {mt!r} is not a BitNet b1.58 (Llama-layout) model")
    shapes = _bitnet_shapes(cfg, where)
    n_trits = sum(n * k for n, k in shapes.values())
    if board is not None:
        check_fits(n_trits, board)
    reader = _Reader(folder)
    layers = {}
    for name, (n, k) in shapes.items():
        if name not in reader:
            raise ValueError(f"checkpoint {where} is missing tensor {name!r}")
        w = reader.get(name)
        scale_name = name[:-len("weight")] + "weight_scale"
        if w.dtype == torch.uint8:
            if tuple(w.shape) != (math.ceil(n / 4), k):
                raise ValueError(f"checkpoint {where}: packed tensor {name!r} has shape "
                                 f"{tuple(w.shape)}, expected {(math.ceil(n / 4), k)}")
            try:
                t = unpack_hf_bitnet(w, n)
            except ValueError as e:
                raise ValueError(f"checkpoint {where}: tensor {name!r}: {e}") from None
            gamma = _inverse_scale(reader, scale_name, where)
        else:
            if tuple(w.shape) != (n, k):
                raise ValueError(f"checkpoint {where}: tensor {name!r} has shape {tuple(w.shape)}, "
                                 f"expected {(n, k)} from config.json")
            if w.is_floating_point():
                if not bool(torch.isfinite(w).all()):
                    raise ValueError(f"checkpoint {where}: tensor {name!r} holds NaN or infinite values")
                t, gamma = numerics.absmean_ternarize(w)
            else:
                t = numerics.check_ternary(w, f"checkpoint tensor {name!r} in {where}")
                gamma = _inverse_scale(reader, scale_name, where) if scale_name in reader else 1.0
        layers[name] = (t, float(gamma))
    proj = set(shapes) | {s[:-len("weight")] + "weight_scale" for s in shapes}
    other = sum(math.prod(reader.shape(k)) for k in reader.keys() if k not in proj)
    return TritImport(kind="bitnet", config=cfg, layers=layers, n_trits=n_trits, other_params=other)


def _inverse_scale(reader: _Reader, name: str, where: str) -> float:
    if name not in reader:
        raise ValueError(f"checkpoint {where} is missing tensor {name!r} (the scale of packed weights)")
    v = reader.get(name).to(torch.float64).flatten()
    if v.numel() != 1 or not (math.isfinite(float(v[0])) and float(v[0]) > 0):
        raise ValueError(f"checkpoint {where}: {name!r} must be one positive finite number")
    return 1.0 / float(v[0])  # transformers: y = acc / (input_scale * weight_scale)


def inspect_checkpoint(folder: str | Path, board: str | None = "up5k") -> TritImport:
    """Import any supported checkpoint as trits, choosing the layout from ``model_type``.

    ``hgrn_bit``: MatMul-free LM via :func:`load_hf_checkpoint`; ``bitnet``/``llama``: :func:`load_bitnet_trits`.
    Raises ValueError as those do, or for an unknown model_type.
    """
    cfg = read_config(folder)
    mt = cfg.get("model_type")
    if mt == "hgrn_bit":
        model = load_hf_checkpoint(folder, board)
        layers = hgrn_trits(model)
        other = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("proj.weight")
                    and n != "lm_head.weight")
        return TritImport(kind="hgrn_bit", config=cfg, layers=layers, n_trits=model.n_ternary,
                          other_params=other)
    if mt in ("bitnet", "llama"):
        return load_bitnet_trits(folder, board)
    raise ValueError(f"{str(folder)!r}: model_type {mt!r} is neither hgrn_bit (MatMul-free LM) "
                     f"nor bitnet/llama (BitNet b1.58)")
