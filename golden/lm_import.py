"""Import ternary language-model checkpoints in the Hugging Face layout, never guessing.

Two layouts, each a folder with ``config.json`` and ``model.safetensors`` (or shards listed
in ``model.safetensors.index.json``). Every ``config.json`` key is either honoured, known
not to change the logits (and said so below), or refused; every tensor is either imported
by a rule stated here with its source, or refused. A refusal is one sentence, a
:class:`CheckpointImportError` (a ValueError; the CLI reports it and exits 2).

MatMul-free LM (``model_type`` ``hgrn_bit``, :func:`load_hf_checkpoint`)
---------------------------------------------------------------------------
The reference is github ridgerchu/matmulfreellm, master since commit 9e6fd30 (the forward
files ``mmfreelm/ops/fusedbitnet.py``, ``mmfreelm/layers/hgrn_bit.py``,
``mmfreelm/modules/{layernorm,fused_norm_gate,activations}.py`` are unchanged from 9e6fd30
to a016f72; line numbers below are at 9e6fd30). It builds a :class:`golden.lm.MatMulFreeLM`
with ``conventions="matmulfreellm@9e6fd30"`` (:data:`golden.lm.CONVENTIONS`): absmean scale
``max(mean|W|, 1e-5)`` (fusedbitnet.py:43), BitLinear RMSNorm eps 1e-6 (fusedbitnet.py:520,
FusedBitLinear.forward :602-610), per-token int8 with ties away from zero (:125-128), unless
``config.json`` names other conventions in ``ternac_conventions`` (a folder ternac wrote).

Config keys (``HGRNBitConfig``, configuration_hgrn_bit.py):

* honoured: ``vocab_size``, ``hidden_size``, ``num_hidden_layers``, ``expand_ratio``,
  ``intermediate_size`` / ``hidden_ratio`` (null: ``256 * ceil(int(d * ratio * 2/3) / 256)``,
  modeling_hgrn_bit.py), ``use_lower_bound`` (modeling_hgrn_bit.py:235-241, applied from
  layer 1 on, hgrn_bit.py:115-116), ``rms_norm_eps`` (block norms :70, :82, :173 and g_norm
  via ``layernorm_eps`` :79), ``tie_word_embeddings`` (true: ``lm_head.weight`` is the
  embedding, ``_tied_weights_keys`` :285), ``ternac_conventions``;
* accepted, no effect on the logits: ``hidden_act`` (any transformers ACT2FN name: the
  reference builds ``act_fn`` at modeling_hgrn_bit.py:56 but its forward is
  ``down_proj(swiglu(gate, y))`` at :61, SiLU(gate) * y whatever ``hidden_act`` says, so
  ``gelu`` gives exactly the logits of ``swish``), ``num_heads`` (the recurrence is
  elementwise; hgrn_bit.py:121 only reshapes; must divide hidden_size, :54), ``conv_size``
  and ``share_conv_kernel`` (read only with short convolutions, hgrn_bit.py:60),
  ``max_position_embeddings``, ``use_cache``, ``pad_token_id`` (the embedding's
  ``padding_idx`` only zeroes that row at initialisation), ``initializer_range``,
  ``fuse_cross_entropy`` (the loss), the generic ``PretrainedConfig`` keys in
  :data:`INERT_CONFIG_KEYS`, ``torch_dtype`` (the tensors are converted to float32 and the
  model computes in float32; the reference's kernels compute in float32 too);
* refused: ``attn_mode`` other than ``fused_recurrent`` (the reference asserts it,
  hgrn_bit.py:53), ``use_short_conv`` true, ``use_lower_bound`` with ``expand_ratio`` != 1
  (the reference's ``lower_bounds`` is (L, hidden_size), modeling_hgrn_bit.py:171, and
  cannot gate D != hidden_size channels), a ``quantization_config`` (a transformers
  quantizer would replace the BitLinears), non-empty ``pruned_heads``, any other key.

Tensors: the reference's names (``model.layers.0.attn.i_proj.weight``, ...), float; the
ternac static scales (``act_scale``, ``h_scale``, ...) only with ``ternac_conventions``.

BitNet b1.58 (``model_type`` ``bitnet`` or ``llama``, :func:`load_bitnet_trits`)
---------------------------------------------------------------------------------
The reference is transformers 5.23.0 (PyPI wheel; git tag v5.23.0):
``src/transformers/integrations/bitnet.py``, ``utils/quantization_config.py``
(``BitNetQuantConfig``), ``models/bitnet/modeling_bitnet.py``; the layout of the packed
weights is unchanged since the commit 8b493cee of that file. A BitNet model is a
transformer: its ``self_attn.{q,k,v,o}_proj`` need attention, which ternac's accelerator
does not run, so such a model is **refused** in one sentence naming those layers, unless
``allow_unsupported=True`` asks only to inspect its trits (then ``TritImport.runnable`` is
False and ``unsupported`` names them).

``quantization_config`` is required (without it the weights are a plain nn.Linear's and
nothing says whether or how they are ternary): ``quant_method`` "bitnet", ``linear_class``
(default "bitlinear") and ``quantization_mode`` (default "offline"), both checked as
``BitNetQuantConfig.__init__`` does (quantization_config.py:1600-1603). Per projection, with
``W = gamma * t``:

======================  ====================================  =================================
linear_class / mode     stored weight                          gamma
======================  ====================================  =================================
bitlinear / either      uint8 (N/4, K) packed, N % 4 == 0      ``1 / weight_scale``: BitLinear
                        (BitLinear ignores the mode,           divides, ``y / (input_scale *
                        bitnet.py:319-329)                     weight_scale)`` bitnet.py:182, :194
autobitlinear/offline   uint8 (N/4, K) packed (unpacked on     ``weight_scale``: AutoBitLinear
                        load, BitNetDeserialize :358-359), or  multiplies, ``output *
                        (N, K) of any dtype holding trits      weight_scale`` bitnet.py:280-281
autobitlinear/online    float (N, K) latent, no weight_scale   ``max(mean|W|, 1e-5)`` in float32,
                        (none is registered, bitnet.py:266)    ``t = round(W / gamma)``
                                                               (WeightQuant bitnet.py:210-215)
======================  ====================================  =================================

Packed layout (``unpack_weights``, bitnet.py:116-122): trit ``i * (N/4) + r`` of a column
is bits ``[2i+1:2i]`` of packed row ``r``, stored as ``value + 1``. ``weight_scale`` must be
one positive finite number. A ``modules_to_not_convert`` entry that matches a projection
(as a substring, the rule of older transformers, or as ``should_convert_module`` of 5.23.0
matches, quantizers_utils.py:26-37) leaves it a full-precision nn.Linear, and is refused.
``use_rms_norm`` / ``rms_norm_eps`` (an RMSNorm inside each BitLinear, bitnet.py:151-154),
``hidden_act`` (relu2 or silu, modeling_bitnet.py:72-76; any ACT2FN name), ``rms_norm_eps``
and ``tie_word_embeddings`` (``lm_head.weight`` = ``model.embed_tokens.weight``,
modeling_bitnet.py:405) are read and reported in ``TritImport.math``.

Both layouts check the size against a board (:func:`check_fits`) from the tensor shapes
*before* reading any weight, so a model too big fails fast with one sentence giving its
size in trits and the board's capacity.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import torch

from . import numerics
from .errors import CheckpointImportError
from .lm import (HF_ACTIVATIONS, REFERENCE_CONVENTIONS, LMConfig, MatMulFreeLM, check_state,
                 expected_shapes, load_state, ternarize_clamped)

__all__ = ["BOARD_CAPACITY_TRITS", "CheckpointImportError", "INERT_CONFIG_KEYS", "MAX_LAYERS", "check_fits",
           "read_config", "load_hf_checkpoint", "TritImport", "load_bitnet_trits", "hgrn_trits",
           "inspect_checkpoint", "unpack_hf_bitnet"]

#: Trits of weight memory a board offers, and what that is (derived from the datasheets).
BOARD_CAPACITY_TRITS: dict[str, tuple[int, str]] = {
    "up5k": (524_288, "iCE40 UP5K SPRAM, 4 x 256 Kbit at I2 (2 bits a trit)"),
    "up5k-t3": (655_360, "iCE40 UP5K SPRAM, 4 x 256 Kbit at T3 (5 trits a byte)"),
    "ecp5-85f": (1_703_936, "ECP5-85F EBR, 208 x 16 Kbit (x16 ports) at I2"),
}




# Tensors ternac adds to a MatMul-free checkpoint; a reference checkpoint has none of them.
_TERNAC_BUFFERS = ("act_scale", "in_absmax", "out_absmax", "h_scale", "residual_scale",
                   "embeddings.scale")

#: ``config.json`` keys of transformers' ``PretrainedConfig`` (and the files it writes) that
#: do not change a causal LM's logits: names, token ids, generation defaults, output flags.
INERT_CONFIG_KEYS = frozenset({
    "architectures", "model_type", "_name_or_path", "transformers_version", "auto_map",
    "_commit_hash", "_attn_implementation", "_attn_implementation_autoset", "torch_dtype", "dtype",
    "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder", "finetuning_task",
    "id2label", "label2id", "tokenizer_class", "prefix", "bos_token_id", "pad_token_id",
    "eos_token_id", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    "problem_type", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
    "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
    "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
    "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "use_cache",
    "max_position_embeddings", "initializer_range"})

# HGRNBitConfig keys (configuration_hgrn_bit.py at 9e6fd30) with no effect on the logits of
# the configuration ternac runs (see the module docstring for why each).
_HGRN_INERT = frozenset({"hidden_act", "num_heads", "conv_size", "share_conv_kernel",
                         "fuse_cross_entropy"})
# HGRNBitConfig keys whose values are checked and honoured.
_HGRN_MATH = frozenset({"vocab_size", "hidden_size", "num_hidden_layers", "attn_mode",
                        "expand_ratio", "use_short_conv", "use_lower_bound", "hidden_ratio",
                        "intermediate_size", "rms_norm_eps", "tie_word_embeddings",
                        "ternac_conventions", "pruned_heads"})


def _fail(msg: str):
    raise CheckpointImportError(msg)


def check_fits(n_trits: int, board: str = "up5k") -> None:
    """Raise unless ``n_trits`` ternary weights fit ``board``'s weight memory.

    Parameters
    ----------
    n_trits : int, the model's ternary weights
    board : a key of :data:`BOARD_CAPACITY_TRITS` (``"up5k"``: 524,288 trits of SPRAM at I2)

    Raises
    ------
    CheckpointImportError (a ValueError) for an unknown board, or when the model does not
    fit; the message gives the model's size in trits and the board's capacity.
    """
    if board not in BOARD_CAPACITY_TRITS:
        _fail(f"unknown board {board!r}; known boards: {', '.join(sorted(BOARD_CAPACITY_TRITS))}")
    cap, what = BOARD_CAPACITY_TRITS[board]
    if int(n_trits) > cap:
        _fail(f"the model has {int(n_trits):,} ternary weights (trits), more than the "
              f"{cap:,} trits board {board!r} holds ({what})")


def read_config(folder: str | Path) -> dict:
    """Read ``folder/config.json``. Raises CheckpointImportError if it is missing or not a
    JSON object."""
    p = Path(folder) / "config.json"
    if not p.is_file():
        _fail(f"checkpoint folder {str(folder)!r} has no config.json")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(f"{str(p)!r} is not valid JSON: {e}")
    if not isinstance(cfg, dict):
        _fail(f"{str(p)!r} must hold a JSON object, not {type(cfg).__name__}")
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
            _fail(f"{str(index)!r} is not a valid safetensors index: {e}")
        for f in files:
            if not f.is_file():
                _fail(f"{str(index)!r} lists {f.name!r}, which does not exist")
        return files
    _fail(f"checkpoint folder {str(folder)!r} has no model.safetensors "
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
                _fail(f"{str(f)!r} is not a readable safetensors file (corrupt or truncated): "
                      f"{' '.join(str(e).split())}")
            self._handles.append(h)
            for k in keys:
                self._where[k] = (h, f)

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, k: str) -> bool:
        return k in self._where

    def shape(self, k: str) -> tuple[int, ...]:
        return tuple(self._where[k][0].get_slice(k).get_shape())

    def dtype(self, k: str) -> str:
        return str(self._where[k][0].get_slice(k).get_dtype())

    def get(self, k: str) -> torch.Tensor:
        h, f = self._where[k]
        try:
            return h.get_tensor(k)
        except Exception as e:
            _fail(f"{str(f)!r}: tensor {k!r} cannot be read (corrupt file): {' '.join(str(e).split())}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------
# MatMul-free LM (HGRN-Bit)
# ---------------------------------------------------------------------------------------

def _hgrn_config(cfg: dict, where: str) -> LMConfig:
    """Check every key of a reference ``config.json`` and build the LMConfig (see module doc)."""
    mt = cfg.get("model_type")
    if mt != "hgrn_bit":
        _fail(f"{where}: config.json model_type {mt!r} is not 'hgrn_bit' (the MatMul-free LM)")
    if "quantization_config" in cfg:
        _fail(f"{where}: config.json has a quantization_config, with which a transformers quantizer "
              f"would replace the reference's BitLinears by other layers")
    for k in cfg:
        if k not in _HGRN_MATH and k not in _HGRN_INERT and k not in INERT_CONFIG_KEYS:
            _fail(f"{where}: config.json key {k!r} is not one ternac knows the meaning of for an "
                  f"hgrn_bit model, so the model it describes cannot be imported without guessing")
    mode = cfg.get("attn_mode", "fused_recurrent")
    if mode != "fused_recurrent":
        _fail(f"{where}: config.json attn_mode {mode!r} is not 'fused_recurrent', the only mode the "
              f"reference builds (mmfreelm/layers/hgrn_bit.py:53 at 9e6fd30)")
    for k, default in (("use_short_conv", False), ("use_lower_bound", True),
                       ("tie_word_embeddings", False)):
        if not isinstance(cfg.get(k, default), bool):
            _fail(f"{where}: config.json {k} must be true or false, not {cfg[k]!r}")
    if cfg.get("use_short_conv", False):
        _fail(f"{where}: config.json sets use_short_conv, a short convolution ternac's MLGRU does "
              f"not have")
    if cfg.get("pruned_heads"):
        _fail(f"{where}: config.json has pruned_heads {cfg['pruned_heads']!r}, which an hgrn_bit "
              f"model cannot have")
    heads, d = cfg.get("num_heads") or 1, cfg.get("hidden_size")
    if not (_is_int(heads) and heads >= 1 and _is_int(d) and d >= 1 and d % heads == 0):
        _fail(f"{where}: config.json num_heads {heads!r} must be a positive integer dividing "
              f"hidden_size {d!r} (mmfreelm/layers/hgrn_bit.py:54)")
    expand = cfg.get("expand_ratio") or 1
    if cfg.get("use_lower_bound", True) and expand != 1:
        _fail(f"{where}: config.json sets use_lower_bound with expand_ratio {expand!r}, which the "
              f"reference cannot run (its lower_bounds is (layers, hidden_size), "
              f"modeling_hgrn_bit.py:171 at 9e6fd30)")
    act = cfg.get("hidden_act", "swish")
    if not (isinstance(act, str) and act in HF_ACTIVATIONS):
        _fail(f"{where}: config.json hidden_act {act!r} is not an activation transformers knows, so "
              f"the reference cannot build the model (its forward ignores hidden_act)")
    try:
        return LMConfig.from_hf(cfg, default_conventions=REFERENCE_CONVENTIONS)
    except (ValueError, TypeError) as e:
        _fail(f"{where}: bad config.json: {e}")


def load_hf_checkpoint(folder: str | Path, board: str | None = "up5k") -> MatMulFreeLM:
    """Load a MatMul-free LM in the reference's Hugging Face layout into :class:`MatMulFreeLM`.

    Parameters
    ----------
    folder : holds ``config.json`` (``HGRNBitConfig`` keys) and ``model.safetensors``
    board : check the size with :func:`check_fits` first (None: no check)

    Returns
    -------
    The model in eval mode and per-token quantization, float32 (bf16/fp16 tensors are
    converted), ``config.conventions == "matmulfreellm@9e6fd30"`` unless config.json names
    others. ternac's static scales are loaded when present (a folder ternac wrote, whose
    config names its conventions), otherwise left at 0 (call :func:`golden.lm.calibrate`).

    Raises
    ------
    CheckpointImportError (a ValueError, one sentence) for a missing/corrupt config or weight
    file, a config key that is unknown or refused (module docstring), a missing, unexpected,
    misshapen, non-float or non-finite tensor, no ``lm_head.weight`` without
    ``tie_word_embeddings``, a tied ``lm_head.weight`` that differs from the embedding,
    ternac scale tensors without ``ternac_conventions``, or a model too big for ``board``.
    """
    folder = Path(folder)
    where = str(folder)
    cfg = read_config(folder)
    config = _hgrn_config(cfg, where)
    if board is not None:
        check_fits(config.n_ternary, board)
    reader = _Reader(folder)
    keys = reader.keys()
    ours = [k for k in keys if k.endswith(_TERNAC_BUFFERS)]
    if ours and "ternac_conventions" not in cfg:
        _fail(f"checkpoint {where} holds ternac's static-scale tensors (e.g. {ours[0]!r}) but its "
              f"config.json has no ternac_conventions, so the conventions it was trained under are "
              f"unknown")
    # names and shapes on the meta device: a config.json declaring huge sizes allocates
    # nothing before the file's tensors are compared with it
    expected = expected_shapes(config, where, max_tensors=len(keys))
    for k in keys:
        if k in expected and reader.shape(k) != expected[k]:
            _fail(f"checkpoint {where}: tensor {k!r} has shape {reader.shape(k)}, expected "
                  f"{expected[k]} from config.json")
    tensors = {k: reader.get(k) for k in keys}
    if cfg.get("tie_word_embeddings", False):
        emb = tensors.get("model.embeddings.weight")
        if emb is None:
            _fail(f"checkpoint {where} is missing tensor 'model.embeddings.weight'")
        if "lm_head.weight" in tensors and not torch.equal(
                tensors["lm_head.weight"].to(torch.float32), emb.to(torch.float32)):
            _fail(f"checkpoint {where} sets tie_word_embeddings but its lm_head.weight differs from "
                  f"model.embeddings.weight, so which one the model uses is ambiguous")
        tensors["lm_head.weight"] = emb
    elif "lm_head.weight" not in tensors:
        _fail(f"checkpoint {where} has no 'lm_head.weight' and config.json does not set "
              f"tie_word_embeddings")
    check_state(expected, tensors, where, allow_missing=_TERNAC_BUFFERS)
    model = MatMulFreeLM(config)
    load_state(model, tensors, where, allow_missing=_TERNAC_BUFFERS)
    return model.set_quant("per_token").eval()


def hgrn_trits(model: MatMulFreeLM) -> dict[str, tuple[torch.Tensor, float]]:
    """The trits of every BitLinear of a MatMul-free LM by its conventions:
    ``{module name: (t int8, gamma)}`` (:func:`golden.lm.ternary_layers`)."""
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
    BitNet), counted, not imported; runnable : whether ternac can run the model (False for
    every BitNet transformer: attention); unsupported : the layers that keep it from running;
    math : the rules and config values the import followed (conventions, linear_class,
    quantization_mode, hidden_act, ...).
    """
    kind: str
    config: dict
    layers: dict[str, tuple[torch.Tensor, float]]
    n_trits: int
    other_params: int
    runnable: bool = True
    unsupported: tuple[str, ...] = ()
    math: dict = dataclasses.field(default_factory=dict)


_BITNET_PROJ = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"),
                ("self_attn", "o_proj"), ("mlp", "gate_proj"), ("mlp", "up_proj"),
                ("mlp", "down_proj"))

# BitNetQuantConfig (transformers 5.23.0, utils/quantization_config.py:1590-1610).
_LINEAR_CLASSES = ("bitlinear", "autobitlinear")
_QUANT_MODES = ("offline", "online")


def _bitnet_shapes(cfg: dict, where: str) -> dict[str, tuple[int, int]]:
    def need(k):
        v = cfg.get(k)
        if not (_is_int(v) and v >= 1):
            _fail(f"{where}: config.json {k!r} must be a positive integer, not {v!r}")
        return v

    d, inter, n_layers, heads = (need("hidden_size"), need("intermediate_size"),
                                 need("num_hidden_layers"), need("num_attention_heads"))
    if n_layers > MAX_LAYERS:
        _fail(f"{where}: config.json num_hidden_layers {n_layers} is more than the {MAX_LAYERS} "
              f"layers ternac imports")
    kv = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or d // heads
    if not (_is_int(kv) and kv >= 1 and _is_int(hd) and hd >= 1):
        _fail(f"{where}: config.json num_key_value_heads {kv!r} / head_dim {hd!r} must be positive "
              f"integers")
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


#: The most layers a BitNet config.json may declare (the largest published BitNet has 30; a
#: bound, so that a corrupt config cannot make the importer list billions of tensors).
MAX_LAYERS = 4096


def _matches(pattern: str, module: str) -> bool:
    """Whether a modules_to_not_convert entry skips ``module`` in any transformers version:
    a substring of its path (older ``_replace_with_bitnet_linear``) or
    ``should_convert_module``'s rule (5.23.0, quantizers_utils.py:26-37)."""
    if pattern in module or module.endswith(pattern):
        return True
    try:
        return re.match(rf"(?:{pattern})(?:(?<=\.)|(?=\.|$))", module) is not None
    except re.error:
        return True  # transformers would raise; treat as matching, so it is refused


def _bitnet_quant(cfg: dict, where: str, names: list[str]) -> dict:
    """Check quantization_config (module docstring); returns the rules it sets."""
    qc = cfg.get("quantization_config")
    if qc is None:
        _fail(f"{where}: config.json has no quantization_config, so whether and how its weights "
              f"are ternary is not stated (a BitNet checkpoint says quant_method 'bitnet')")
    if not isinstance(qc, dict):
        _fail(f"{where}: config.json quantization_config must be an object, not {qc!r}")
    if qc.get("quant_method") != "bitnet":
        _fail(f"{where}: config.json quantization_config.quant_method {qc.get('quant_method')!r} is "
              f"not 'bitnet', the only quantization ternac imports")
    lc = qc.get("linear_class", "bitlinear")
    if lc not in _LINEAR_CLASSES:
        _fail(f"{where}: config.json quantization_config.linear_class {lc!r} is not one ternac "
              f"knows ('bitlinear' or 'autobitlinear')")
    qm = qc.get("quantization_mode", "offline")
    if qm not in _QUANT_MODES:
        _fail(f"{where}: config.json quantization_config.quantization_mode {qm!r} is not one ternac "
              f"knows ('offline' or 'online')")
    use_norm = qc.get("use_rms_norm", False)
    if not isinstance(use_norm, bool):
        _fail(f"{where}: config.json quantization_config.use_rms_norm must be true or false, not "
              f"{use_norm!r}")
    eps = qc.get("rms_norm_eps", 1e-6)
    if use_norm and not (isinstance(eps, (int, float)) and not isinstance(eps, bool)
                         and math.isfinite(eps) and eps > 0):
        _fail(f"{where}: config.json quantization_config.rms_norm_eps must be positive and finite, "
              f"not {eps!r}")
    skip = qc.get("modules_to_not_convert")
    if skip is not None:
        if not (isinstance(skip, list) and all(isinstance(s, str) for s in skip)):
            _fail(f"{where}: config.json quantization_config.modules_to_not_convert must be a list "
                  f"of names, not {skip!r}")
        for s in skip:
            hit = next((n for n in names if _matches(s, n[:-len(".weight")])), None)
            if hit is not None:
                _fail(f"{where}: config.json quantization_config.modules_to_not_convert entry {s!r} "
                      f"leaves {hit[:-len('.weight')]!r} a full-precision nn.Linear, which is not "
                      f"ternary")
    gamma_rule = {("bitlinear", "offline"): "1 / weight_scale", ("bitlinear", "online"): "1 / weight_scale",
                  ("autobitlinear", "offline"): "weight_scale",
                  ("autobitlinear", "online"): "max(mean|W|, 1e-5) in float32"}[(lc, qm)]
    return {"linear_class": lc, "quantization_mode": qm, "gamma": gamma_rule,
            "use_rms_norm": use_norm, "bitlinear_rms_norm_eps": eps if use_norm else None}


def _scale(reader: _Reader, name: str, where: str, why: str) -> float:
    if name not in reader:
        _fail(f"checkpoint {where} is missing tensor {name!r} ({why})")
    v = reader.get(name)
    if not v.is_floating_point():
        _fail(f"checkpoint {where}: {name!r} must be a floating-point number, not {v.dtype}")
    v = v.to(torch.float64).flatten()
    if v.numel() != 1 or not (math.isfinite(float(v[0])) and float(v[0]) > 0):
        _fail(f"checkpoint {where}: {name!r} must be one positive finite number, not "
              f"{v.numel()} value(s) {v[:4].tolist()}")
    return float(v[0])


def unpack_hf_bitnet(packed: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Unpack ``transformers.integrations.bitnet`` 2-bit weights: uint8 (N/4, K) -> int8 (N, K).

    Row ``i * (N/4) + r`` of the result is field ``i`` (bits ``[2i+1:2i]``) of packed row
    ``r``, minus 1 (``unpack_weights``, src/transformers/integrations/bitnet.py:116-122 of
    transformers 5.23.0). ``n_rows`` must be ``4 * rows`` (transformers' buffers hold
    ``N // 4`` rows, bitnet.py:140-141, and BitNetDeserialize unpacks only when
    ``rows * 4 == N``, :358).

    Raises
    ------
    CheckpointImportError (a ValueError) for a field of 3 (not a trit) or a wrong shape.
    """
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        _fail(f"packed BitNet weights must be 2-D uint8, not {packed.dtype} {tuple(packed.shape)}")
    rows = packed.shape[0]
    if rows * 4 != n_rows:
        _fail(f"packed weights of {rows} rows hold {rows * 4} rows of trits, not {n_rows} (transformers "
              f"packs 4 rows a byte and needs a row count divisible by 4)")
    fields = [((packed >> (2 * i)) & 3) for i in range(4)]
    u = torch.cat(fields, 0)
    if bool((u == 3).any()):
        _fail("packed BitNet weights hold the 2-bit value 3, which is not a trit")
    return (u.to(torch.int8) - 1)


def _bitnet_layer(reader: _Reader, name: str, n: int, k: int, rules: dict, where: str
                  ) -> tuple[torch.Tensor, float]:
    """One projection's (trits, gamma) by the rules of quantization_config (module doc)."""
    lc, qm = rules["linear_class"], rules["quantization_mode"]
    scale_name = name[:-len("weight")] + "weight_scale"
    if name not in reader:
        _fail(f"checkpoint {where} is missing tensor {name!r}")
    shape, dt = reader.shape(name), reader.dtype(name)
    packed = dt.upper() == "U8"
    if packed and (n % 4 or shape != (n // 4, k)):
        _fail(f"checkpoint {where}: packed tensor {name!r} has shape {shape}, but {n} rows of trits "
              f"pack into ({n / 4:g}, {k}) (transformers needs the rows divisible by 4)")
    if not packed and shape != (n, k):
        _fail(f"checkpoint {where}: tensor {name!r} has shape {shape}, expected {(n, k)} from "
              f"config.json")
    if lc == "bitlinear":
        if not packed:
            _fail(f"checkpoint {where}: linear_class 'bitlinear' stores packed uint8 weights, but "
                  f"{name!r} is {dt} {shape} (transformers' BitLinear cannot load it)")
        t = unpack_hf_bitnet(reader.get(name), n)
        return t, 1.0 / _scale(reader, scale_name, where, "BitLinear divides by it")
    if qm == "offline":
        if packed:
            t = unpack_hf_bitnet(reader.get(name), n)
        else:
            w = reader.get(name)
            try:
                t = numerics.check_ternary(w, f"tensor {name!r} of checkpoint {where}")
            except ValueError as e:
                _fail(f"{e} (autobitlinear offline uses the stored weight as it is, so it must "
                      f"hold trits)")
        return t, _scale(reader, scale_name, where, "AutoBitLinear multiplies by it")
    # autobitlinear online: latent float weights, WeightQuant at every forward
    if packed or scale_name in reader:
        _fail(f"checkpoint {where}: quantization_mode 'online' ternarizes float weights on the fly "
              f"and has no weight_scale, but {name!r} is {dt}"
              + (f" and {scale_name!r} exists" if scale_name in reader else ""))
    w = reader.get(name)
    if not w.is_floating_point():
        _fail(f"checkpoint {where}: tensor {name!r} must be floating point for quantization_mode "
              f"'online', not {w.dtype}")
    w = w.to(torch.float32)       # exact for every float dtype (torch has no float8 isfinite)
    if not bool(torch.isfinite(w).all()):
        _fail(f"checkpoint {where}: tensor {name!r} holds NaN or infinite values")
    t, inv = ternarize_clamped(w)
    return t.to(torch.int8), 1.0 / float(inv)


def load_bitnet_trits(folder: str | Path, board: str | None = "up5k", *,
                      allow_unsupported: bool = False) -> TritImport:
    """Import the BitLinear layers of a BitNet b1.58 checkpoint (Llama layout) as trits.

    Parameters
    ----------
    folder : holds ``config.json`` (``hidden_size``, ``intermediate_size``,
        ``num_hidden_layers``, ``num_attention_heads``, optional ``num_key_value_heads``,
        ``head_dim``; ``quantization_config``) and the safetensors weights
    board : check the size with :func:`check_fits` before reading weights (None: no check)
    allow_unsupported : inspect the trits of a model ternac cannot run (its attention);
        without it such a model (every BitNet transformer) is refused

    Returns
    -------
    :class:`TritImport` with the 7 projections of every layer, ``runnable=False`` and
    ``unsupported`` naming the attention projections (see the module docstring for the
    weight forms and the scale of each linear_class / quantization_mode).

    Raises
    ------
    CheckpointImportError (a ValueError, one sentence) for attention layers (unless
    ``allow_unsupported``), a missing/corrupt file, a config without the sizes, without a
    bitnet quantization_config or with a value of it ternac does not know, a projection left
    unquantized, a missing projection or weight_scale, a weight form its linear_class cannot
    load, a shape that disagrees with the config, non-finite or non-ternary weights, or a
    model too big for ``board``.
    """
    folder = Path(folder)
    where = str(folder)
    cfg = read_config(folder)
    mt = cfg.get("model_type")
    if mt not in ("bitnet", "llama"):
        _fail(f"{where}: config.json model_type {mt!r} is not a BitNet b1.58 (Llama-layout) model")
    shapes = _bitnet_shapes(cfg, where)
    rules = _bitnet_quant(cfg, where, list(shapes))
    act = cfg.get("hidden_act", "relu2" if mt == "bitnet" else "silu")
    if not (isinstance(act, str) and act in HF_ACTIVATIONS):
        _fail(f"{where}: config.json hidden_act {act!r} is not an activation transformers knows")
    n_trits = sum(n * k for n, k in shapes.values())
    attn = [s for s in shapes if ".self_attn." in s]
    n_layers = cfg["num_hidden_layers"]
    if not allow_unsupported:
        n_attn = sum(math.prod(shapes[s]) for s in attn)
        _fail(f"checkpoint {where} is a BitNet transformer whose attention projections "
              f"(self_attn.q_proj, k_proj, v_proj and o_proj of each of its {n_layers} layers: "
              f"{n_attn:,} of its {n_trits:,} trits) need attention, which ternac's accelerator "
              f"does not run yet, so it is refused (allow_unsupported=True only inspects its trits)")
    if board is not None:
        check_fits(n_trits, board)
    reader = _Reader(folder)
    layers = {name: _bitnet_layer(reader, name, n, k, rules, where) for name, (n, k) in shapes.items()}
    proj = set(shapes) | {s[:-len("weight")] + "weight_scale" for s in shapes}
    other = sum(math.prod(reader.shape(k)) for k in reader.keys() if k not in proj)
    rules.update(hidden_act=act, rms_norm_eps=cfg.get("rms_norm_eps"),
                 tie_word_embeddings=cfg.get("tie_word_embeddings", False),
                 source="transformers 5.23.0 src/transformers/integrations/bitnet.py")
    return TritImport(kind="bitnet", config=cfg, layers=layers, n_trits=n_trits, other_params=other,
                      runnable=False, unsupported=tuple(s[:-len(".weight")] for s in attn),
                      math=rules)


def inspect_checkpoint(folder: str | Path, board: str | None = "up5k", *,
                       allow_unsupported: bool = False) -> TritImport:
    """Import any supported checkpoint as trits, choosing the layout from ``model_type``.

    ``hgrn_bit``: MatMul-free LM via :func:`load_hf_checkpoint` (``math`` holds its
    conventions); ``bitnet``/``llama``: :func:`load_bitnet_trits` (refused unless
    ``allow_unsupported``). Raises CheckpointImportError as those do, or for an unknown
    model_type.
    """
    cfg = read_config(folder)
    mt = cfg.get("model_type")
    if mt == "hgrn_bit":
        model = load_hf_checkpoint(folder, board)
        layers = hgrn_trits(model)
        other = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("proj.weight")
                    and n != "lm_head.weight")
        return TritImport(kind="hgrn_bit", config=cfg, layers=layers, n_trits=model.n_ternary,
                          other_params=other,
                          math={"conventions": model.config.conventions,
                                "source": model.config.rules.source})
    if mt in ("bitnet", "llama"):
        return load_bitnet_trits(folder, board, allow_unsupported=allow_unsupported)
    _fail(f"{str(folder)!r}: config.json model_type {mt!r} is neither hgrn_bit (MatMul-free LM) "
          f"nor bitnet/llama (BitNet b1.58)")
