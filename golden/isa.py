"""The ternac instruction set: one definition shared by the compiler, the interpreter and the RTL.

Pure Python (no torch, no Amaranth), so ``hw/`` may import it to size its decoder.

An instruction is a 128-bit word; its fields, least significant first, are listed in
:data:`FIELDS`. The sequencer fetches one word a instruction from the program memory.

Memory spaces seen by a program
-------------------------------
* ``scratch``: the activation scratchpad, signed 16-bit words (int8 activations are stored
  sign-extended; int16 residual/state values use the full width).
* ``out``: the output buffer, signed 32-bit words (raw accumulators such as logits).
* ``weights``: the packed weight memory, words of ``2 * lanes`` bits, I2 trits
  (see :mod:`golden.packing`), laid out lane-tiled by the compiler.
* ``result``: a single 32-bit register written by ARGMAX and read by the host.

Operations
----------
``MATVEC``  out[j] = sum_i t[j, i] * scratch[src + i] for j < n, i < k, with trits from the
            weight memory at ``wbase`` (tile ``jt`` of ``lanes`` rows starts at word
            ``wbase + jt * k``; word ``wbase + jt*k + i`` holds trits t[jt*lanes + l, i] for
            lanes l). Then, unless ``RAW``, ``scratch[dst + j] = requantize(acc, m, s)``
            (and ReLU if ``RELU``); with ``RAW``, ``out[dst + j] = acc`` (no rounding).
``ARGMAX``  result = the smallest index j < n maximising out[src + j].
``HALT``    stop; the sequencer raises ``done``.
"""
from __future__ import annotations

import dataclasses
import enum

__all__ = ["INSTR_BITS", "FIELDS", "Op", "Flag", "Instr", "encode", "decode",
           "encode_program", "decode_program"]

INSTR_BITS = 128

#: (name, width in bits), least significant first.
FIELDS: tuple[tuple[str, int], ...] = (
    ("op", 5),
    ("flags", 5),
    ("src", 12),     # scratch/out word address of the operand vector
    ("dst", 12),     # scratch/out word address of the result vector
    ("aux", 12),     # second operand address / table index (elementwise and LM ops)
    ("n", 12),       # output length (rows of a matvec, length of a vector op)
    ("k", 12),       # fan-in of a matvec
    ("wbase", 20),   # weight memory word address
    ("m", 16),       # dyadic multiplier (golden.numerics.M_BITS)
    ("s", 6),        # dyadic shift (golden.numerics.S_BITS)
    ("rsvd", 16),
)
assert sum(w for _, w in FIELDS) == INSTR_BITS


class Op(enum.IntEnum):
    """Opcodes (5 bits)."""
    HALT = 0
    MATVEC = 1
    ARGMAX = 2


class Flag(enum.IntFlag):
    """MATVEC flags (5 bits)."""
    NONE = 0
    RELU = 1   # ReLU after requantization
    RAW = 2    # write the raw accumulators to ``out`` instead of requantizing to ``scratch``


@dataclasses.dataclass(frozen=True)
class Instr:
    """One instruction; field ranges are checked by :func:`encode`."""
    op: Op
    flags: int = 0
    src: int = 0
    dst: int = 0
    aux: int = 0
    n: int = 0
    k: int = 0
    wbase: int = 0
    m: int = 0
    s: int = 0
    rsvd: int = 0

    def __str__(self) -> str:
        parts = [f"{f}={getattr(self, f)}" for f, _ in FIELDS[1:] if getattr(self, f)]
        return f"{Op(self.op).name:<7} " + " ".join(parts)


def encode(ins: Instr) -> int:
    """Pack an instruction into a 128-bit integer.

    Raises
    ------
    ValueError naming the field whose value does not fit its width.
    """
    word, pos = 0, 0
    for name, width in FIELDS:
        v = int(getattr(ins, name))
        if not 0 <= v < (1 << width):
            raise ValueError(f"instruction field {name}={v!r} does not fit {width} bits "
                             f"(in {Op(ins.op).name})")
        word |= v << pos
        pos += width
    return word


def decode(word: int) -> Instr:
    """Unpack a 128-bit integer into an :class:`Instr`.

    Raises
    ------
    ValueError if the opcode is unknown.
    """
    vals, pos = {}, 0
    for name, width in FIELDS:
        vals[name] = (word >> pos) & ((1 << width) - 1)
        pos += width
    try:
        vals["op"] = Op(vals["op"])
    except ValueError:
        raise ValueError(f"unknown opcode {vals['op']!r} in instruction word {word:#034x}") from None
    return Instr(**vals)


def encode_program(prog: list[Instr]) -> list[int]:
    """Encode a list of instructions into 128-bit words."""
    return [encode(i) for i in prog]


def decode_program(words: list[int]) -> list[Instr]:
    """Decode 128-bit words into instructions."""
    return [decode(w) for w in words]
