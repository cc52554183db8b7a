"""The compiler: a ternary MLP -> a weight image + a program for one accelerator configuration.

Input: the integer golden model's layers (:class:`golden.mlp.IntBitLinear`: trits (N, K)
int8, dyadic ``m``, ``s``, ``relu``, ``raw``). Output: a :class:`Compiled` holding the
lane-tiled weight image (:mod:`golden.image`), the instruction list (:mod:`golden.isa`)
and the addresses the host uses.

Memory plan
-----------
* weights: layer ``l`` at word ``wbase_l``, back to back from 0; ``ceil(N_l / L) * K_l``
  words a layer (:func:`golden.packing.tile_lanes`).
* scratch: two regions, ping-pong. Region 0 is ``[0, R0)`` and holds the input vector at
  address 0; region 1 is ``[R0, R0 + R1)``. Layer ``l`` reads region ``l % 2`` and writes
  region ``(l + 1) % 2``, so no instruction writes over its own input. ``R0`` is the
  widest of the input and the layers writing region 0, ``R1`` the widest writing region 1.
* out: the last layer writes its raw accumulators (the logits) to ``out[0:N_last]``.

Program::

    MATVEC  src=region(l)  dst=region(l+1)  n=N_l k=K_l wbase=wbase_l m=m_l s=s_l flags=RELU
    ...                                                    (every layer but the last)
    MATVEC  src=region(L-1) dst=0 n=N_last k=K_last wbase=... flags=RAW
    ARGMAX  src=0 n=N_last
    HALT

Every check raises :class:`ternac.errors.CompileError` with one sentence and the numbers.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from ternac.golden.image import WeightImage, image_from_layers, untile_lanes
from ternac.golden.isa import FIELDS, Flag, Instr, Op, encode, encode_program
from ternac.golden.numerics import M_BITS, S_MAX
from ternac.config import AccelConfig
from ternac.errors import CheckpointError, CompileError

__all__ = ["CompileError", "Compiled", "compile_mlp", "load_model", "compile_checkpoint",
           "compile_image", "layers_from_image", "write_compiled", "useful_macs"]

_FIELD_BITS = dict(FIELDS)


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A compiled model.

    Attributes
    ----------
    image : WeightImage, loaded at weight-memory word 0
    program : list[Instr], straight-line, ending in HALT
    input_addr, input_len : scratch address and length of the int8 input vector
    logits_addr, n_logits : out address and length of the raw logits
    cfg : AccelConfig it was compiled for
    scratch_words : scratch words the program uses (``R0 + R1``)
    """
    image: WeightImage
    program: list[Instr]
    input_addr: int
    input_len: int
    logits_addr: int
    n_logits: int
    cfg: AccelConfig
    scratch_words: int = 0

    @property
    def program_words(self) -> list[int]:
        """The program as 128-bit instruction words (golden.isa.encode)."""
        return encode_program(self.program)

    @property
    def weight_words(self) -> list[int]:
        """The weight memory contents from word 0, ``2 * lanes`` bits a word."""
        return list(self.image.words)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(N, K) of each layer, in order."""
        return [(e.n, e.k) for e in self.image.tensors]


def useful_macs(shapes: Sequence[tuple[int, int]]) -> int:
    """Useful trit-MACs of one inference: ``sum N * K`` over the layers."""
    return sum(n * k for n, k in shapes)


def _field(value: int, name: str, what: str) -> None:
    bits = _FIELD_BITS[name]
    if not 0 <= value < (1 << bits):
        raise CompileError(f"{what}: ISA field {name} = {value} does not fit its {bits} bits "
                           f"(at most {(1 << bits) - 1})")


def compile_mlp(layers: Sequence, cfg: AccelConfig, input_len: int | None = None, *,
                names: Sequence[str] | None = None, gammas: Sequence[float] | None = None
                ) -> Compiled:
    """Compile an MLP of ternary BitLinear layers for one accelerator configuration.

    Parameters
    ----------
    layers : sequence of ``golden.mlp.IntBitLinear`` (trits (N, K) int8, m, s, relu, raw);
        every layer but the last requantizes (``raw`` False), the last is ``raw``
    cfg : AccelConfig
    input_len : int, length of the input vector; must equal the first layer's fan-in
        (default: that fan-in)
    names, gammas : optional per-layer tensor names and absmean scales for the image table

    Returns
    -------
    Compiled

    Raises
    ------
    CompileError, one sentence with the numbers, if: there are no layers; the input length
    or the layer shapes do not chain; a raw layer is not last or the last is not raw; a
    fan-in exceeds ``cfg.max_fan_in``; the scratch plan exceeds ``cfg.scratch_depth``; the
    logits exceed ``cfg.out_depth``; the weights exceed ``cfg.weight_depth`` words; the
    program exceeds ``cfg.prog_depth``; m or s are out of range; a value does not fit its
    ISA field; a weight is not ternary.
    """
    layers = list(layers)
    if not layers:
        raise CompileError("the model has no layers, so there is nothing to compile")
    shapes = []
    for i, layer in enumerate(layers):
        t = layer.trits
        if getattr(t, "dim", lambda: 0)() != 2:
            raise CompileError(f"layer {i} weights must be a 2-D (N, K) tensor, not shape "
                               f"{tuple(getattr(t, 'shape', ()))}")
        shapes.append((int(t.shape[0]), int(t.shape[1])))
    k0 = shapes[0][1]
    if input_len is None:
        input_len = k0
    if input_len != k0:
        raise CompileError(f"the input vector has {input_len} elements but layer 0 has fan-in {k0}")
    for i in range(1, len(shapes)):
        if shapes[i][1] != shapes[i - 1][0]:
            raise CompileError(f"layer {i} has fan-in {shapes[i][1]} but layer {i - 1} has "
                               f"{shapes[i - 1][0]} outputs")
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        n, k = shapes[i]
        if i < last and layer.raw:
            raise CompileError(f"layer {i} of {len(layers)} is raw (no requantization), but "
                               f"only the last layer may be")
        if i == last and not layer.raw:
            raise CompileError(f"the last layer ({i}) must output raw accumulators (logits), "
                               f"but it requantizes")
        if k > cfg.max_fan_in:
            raise CompileError(f"layer {i} has fan-in {k}, more than the {cfg.max_fan_in} the "
                               f"accelerator's accumulators are sized for (max_fan_in)")
        if not layer.raw:
            if not 0 <= int(layer.m) < (1 << M_BITS) or not 0 <= int(layer.s) <= S_MAX:
                raise CompileError(f"layer {i} has requantization m={layer.m}, s={layer.s}, "
                                   f"outside m < 2**{M_BITS}, s <= {S_MAX}")

    # Scratch plan: ping-pong regions.
    widths = [[input_len], []]
    for i in range(last):
        widths[(i + 1) % 2].append(shapes[i][0])
    r0, r1 = max(widths[0]), max(widths[1], default=0)
    base = [0, r0]
    if r0 + r1 > cfg.scratch_depth:
        hidden = [shapes[j][0] for j in range(last)]
        detail = f"input {input_len}" + (f", widest hidden layer {max(hidden)}" if hidden else "")
        raise CompileError(f"the activations need {r0 + r1} scratch words ({detail}, "
                           f"ping-pong regions of {r0} + {r1}), but the scratchpad holds "
                           f"{cfg.scratch_depth} (scratch_depth)")
    n_logits = shapes[last][0]
    if n_logits > cfg.out_depth:
        raise CompileError(f"the last layer ({last}) is {n_logits} outputs wide, more than the "
                           f"{cfg.out_depth}-word output buffer (out_depth)")

    # Weights.
    words_needed = sum(-(-n // cfg.lanes) * k for n, k in shapes)
    if words_needed > cfg.weight_depth:
        raise CompileError(f"the weights need {words_needed} words of {cfg.word_bits} bits at "
                           f"{cfg.lanes} lanes, but the weight memory holds {cfg.weight_depth} "
                           f"(weight_depth)")
    try:
        image = image_from_layers(layers, cfg.lanes, names=names)
    except ValueError as exc:
        raise CompileError(f"cannot pack the weights: {exc}") from None
    if gammas is not None:
        image.tensors = [dataclasses.replace(e, gamma=float(g))
                         for e, g in zip(image.tensors, gammas)]

    # Program.
    prog: list[Instr] = []
    for i, layer in enumerate(layers):
        n, k = shapes[i]
        e = image.tensors[i]
        src = base[i % 2]
        if i < last:
            flags = Flag.RELU if layer.relu else Flag.NONE
            ins = Instr(Op.MATVEC, flags=int(flags), src=src, dst=base[(i + 1) % 2], n=n, k=k,
                        wbase=e.offset, m=int(layer.m), s=int(layer.s))
        else:
            ins = Instr(Op.MATVEC, flags=int(Flag.RAW), src=src, dst=0, n=n, k=k,
                        wbase=e.offset)
        for name in ("src", "dst", "n", "k", "wbase", "m", "s"):
            _field(getattr(ins, name), name, f"layer {i} ({n}x{k})")
        prog.append(ins)
    prog.append(Instr(Op.ARGMAX, src=0, n=n_logits))
    prog.append(Instr(Op.HALT))
    if len(prog) > cfg.prog_depth:
        raise CompileError(f"the program has {len(prog)} instructions, more than the "
                           f"{cfg.prog_depth} the program memory holds (prog_depth)")
    for i, ins in enumerate(prog):
        try:
            encode(ins)
        except ValueError as exc:  # pragma: no cover - every field is checked above
            raise CompileError(f"instruction {i}: {exc}") from None
    return Compiled(image=image, program=prog, input_addr=0, input_len=input_len,
                    logits_addr=0, n_logits=n_logits, cfg=cfg, scratch_words=r0 + r1)


def load_model(path: str | os.PathLike):
    """Load a safetensors checkpoint and build its integer golden model (golden.mlp).

    Returns
    -------
    (checkpoint, layers) : (golden.mlp.Checkpoint, list of golden.mlp.IntBitLinear)

    Raises
    ------
    CheckpointError (a ValueError), one sentence naming the file: missing, not a readable
    safetensors file, a tensor that is not ternary, shapes that do not chain, a scale that
    the dyadic requantization cannot represent.
    """
    from ternac.golden import mlp

    try:
        ckpt = mlp.load_checkpoint(path)
        layers = mlp.int_layers_from_trits([l.trits for l in ckpt.layers],
                                           [l.gamma for l in ckpt.layers],
                                           [l.act_scale for l in ckpt.layers])
    except ValueError as exc:
        msg = str(exc)
        if os.fspath(path) not in msg:
            msg = f"checkpoint {os.fspath(path)!r}: {msg}"
        raise CheckpointError(msg) from None
    return ckpt, layers


def compile_checkpoint(path: str | os.PathLike, cfg: AccelConfig) -> Compiled:
    """Load a safetensors checkpoint (golden.mlp) and compile it for ``cfg``.

    Raises
    ------
    CheckpointError as :func:`load_model`; CompileError as :func:`compile_mlp`.
    """
    ckpt, layers = load_model(path)
    return compile_mlp(layers, cfg, names=[f"layers.{i}" for i in range(len(layers))],
                       gammas=[l.gamma for l in ckpt.layers])


def layers_from_image(image: WeightImage) -> list:
    """The ``golden.mlp.IntBitLinear`` layers a weight image describes (trits, m, s, flags).

    Raises
    ------
    ValueError if a tensor does not decode (read_image has already checked this).
    """
    from ternac.golden.mlp import IntBitLinear

    out = []
    for e in image.tensors:
        t = untile_lanes(image.words[e.offset:e.offset + e.count], e.n, e.k, image.lanes)
        out.append(IntBitLinear(trits=t, m=e.m, s=e.s, relu=bool(e.flags & Flag.RELU),
                                raw=bool(e.flags & Flag.RAW)))
    return out


def compile_image(image: WeightImage, cfg: AccelConfig) -> Compiled:
    """Rebuild the program of a weight image (its tensor table is the layer list, in order).

    The image is self-describing: shapes, m, s and flags are in its table, so the program is
    a function of the image and ``cfg``. The result's image is the given one, word for word.

    Raises
    ------
    CompileError if the image was packed for a different lane count than ``cfg.lanes`` or
    does not fit ``cfg`` (as :func:`compile_mlp`).
    """
    if image.lanes != cfg.lanes:
        raise CompileError(f"the weight image is packed for {image.lanes} lanes, but the "
                           f"accelerator has {cfg.lanes}")
    c = compile_mlp(layers_from_image(image), cfg, names=[e.name for e in image.tensors],
                    gammas=[e.gamma for e in image.tensors])
    if c.image.words != image.words or [dataclasses.replace(e, gamma=0.0) for e in c.image.tensors] \
            != [dataclasses.replace(e, gamma=0.0) for e in image.tensors]:
        raise CompileError("the weight image's tensors are not laid out back to back from word "
                           "0 in table order, as this compiler lays them out")
    return dataclasses.replace(c, image=image)


def write_compiled(c: Compiled, out_dir: str | os.PathLike) -> list[str]:
    """Write ``weights.tnac`` (golden.image), ``program.txt`` (one instruction a line, with
    the memory plan as comments) and ``program.hex`` (one 32-hex-digit word a line, for
    ``$readmemh``) into ``out_dir``. Each file is written to a temporary file and renamed.

    Returns
    -------
    list of the paths written.
    """
    from ternac.golden.image import write_image

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    wpath = os.path.join(out_dir, "weights.tnac")
    write_image(c.image, wpath)
    paths.append(wpath)
    lines = [f"# ternac program: lanes={c.cfg.lanes} input scratch[{c.input_addr}:"
             f"{c.input_addr + c.input_len}] logits out[{c.logits_addr}:"
             f"{c.logits_addr + c.n_logits}] scratch words used {c.scratch_words}"]
    lines += [str(ins) for ins in c.program]
    text = "\n".join(lines) + "\n"
    hexs = "".join(f"{w:032x}\n" for w in c.program_words)
    for name, data in (("program.txt", text), ("program.hex", hexs)):
        p = os.path.join(out_dir, name)
        tmp = p + ".tmp"
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, p)
        paths.append(p)
    return paths
