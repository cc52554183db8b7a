"""The program interpreter: executes a ternac program in PyTorch, exactly as the ISA defines it.

It is the fourth level of the numerics contract (../shared/DESIGN.md): run on a compiled
program and weight image, it must equal the integer golden model bit for bit, and the RTL
must equal it bit for bit. It therefore computes nothing of its own: trits come from
decoding the lane-tiled I2 or T3 weight words (:func:`golden.image.words_to_trits`), and the
arithmetic is :func:`golden.numerics.ternary_matvec`, :func:`golden.numerics.requantize`
and :func:`golden.numerics.relu`, the functions the integer golden model uses. The
semantics of every opcode are those of the :mod:`golden.isa` docstring.

Batched: the machine state carries a leading batch dimension B, and every sample runs the
same program independently (the host runs one inference at a time; batching only makes
the interpreter fast). No cycle model here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

from .image import Format, format_word_bits, words_to_trits
from .isa import (CHAIN_SECOND, PRO_MIN_K, Flag, Instr, Op, chain_refusal, chain_three_overlap,
                  chain_three_refusal, decode_program, encode, expand_program, prologue_pair)
from .numerics import ACT_MAX, ACT_MIN, matvec_op
from .ops import epilogue_ops, spec, vector_ops
from .sampler import join_state, sample_index, split_state
from .vecops import argmax, vector_op
from .widths import SCRATCH_BITS

__all__ = ["SCRATCH_BITS", "OUT_BITS", "MachineError", "MachineState", "run_program"]

#: Width of an output-buffer word (signed); a scratchpad word's is golden.widths.SCRATCH_BITS.
OUT_BITS = 32


#: ``weight_format`` names (AccelConfig.weight_format) -> golden.image.Format.
_FORMATS = {"i2": Format.I2_TILED, "t3": Format.T3}


class MachineError(ValueError):
    """A program that does something the ISA does not define (out-of-range address, ...)."""


@dataclasses.dataclass
class MachineState:
    """State of the machine after :func:`run_program`.

    Attributes
    ----------
    scratch : (B, scratch_depth) int64 tensor, values in the signed 16-bit range
    out : (B, out_depth) int64 tensor, values in the signed 32-bit range
    result : (B,) int64 tensor, the ARGMAX register (0 if no ARGMAX ran)
    executed : int, instructions executed including the HALT (a REPEAT's body once an
        iteration, the REPEAT itself once)
    """
    scratch: torch.Tensor
    out: torch.Tensor
    result: torch.Tensor
    executed: int


def _fits(x: torch.Tensor, bits: int) -> bool:
    return bool(((x >= -(1 << (bits - 1))) & (x < (1 << (bits - 1)))).all())


def _span(what: str, base: int, length: int, depth: int, pc: int, ins: Instr) -> None:
    if base + length > depth:
        raise MachineError(f"instruction {pc} ({ins}) {what} words {base}..{base + length - 1}, "
                           f"past the end of a {depth}-word memory")


def run_program(program: Sequence[Instr] | Sequence[int], weights: Sequence[int], *,
                lanes: int, scratch_depth: int, out_depth: int,
                weight_depth: int | None = None,
                scratch_init: Mapping[int, object] | torch.Tensor | None = None,
                batch: int | None = None, weight_format: str = "i2") -> MachineState:
    """Execute a program on a fresh machine until HALT.

    Parameters
    ----------
    program : list of :class:`golden.isa.Instr`, or of 128-bit instruction words
    weights : list of int, the weight memory from address 0, words of ``2 * lanes`` bits
        (lane-tiled I2, see :func:`golden.packing.tile_lanes`) or, with
        ``weight_format="t3"``, of ``8 * lanes / 5`` bits (lane-tiled T3,
        :func:`golden.packing.tile_lanes_t3`); EMBED rows are raw bytes either way, a word
        holding ``word_bits / 8`` of them
    lanes : int, L
    scratch_depth, out_depth : int, depths of the scratchpad (16-bit words) and of the output
        buffer (32-bit words)
    weight_depth : int, optional; depth of the weight memory (default ``len(weights)``)
    scratch_init : optional initial scratchpad contents, either a (B, scratch_depth) or
        (scratch_depth,) integer tensor, or a mapping ``{address: values}`` where values is a
        (len,) or (B, len) integer tensor or a list; the rest is zero. Values must fit 16
        signed bits.
    batch : int, optional; B when ``scratch_init`` does not fix it (default 1)
    weight_format : ``"i2"`` (default) or ``"t3"``: how MATVEC decodes weight words
        (``AccelConfig.weight_format``; :func:`golden.image.words_to_trits`)

    Returns
    -------
    MachineState

    Raises
    ------
    MachineError (a ValueError) if an instruction has a field that does not fit its width
    (:func:`golden.isa.encode`), the program runs past its end without HALT, reads or
    writes outside a memory, uses an undefined flag, holds a REPEAT the ISA refuses
    (golden.isa.expand_program), or an initial value does not fit;
    ValueError from :func:`golden.isa.decode` on an unknown opcode or from
    :func:`golden.image.words_to_trits` on an invalid weight word.
    """
    fmt = _FORMATS.get(weight_format)
    if fmt is None:
        raise ValueError(f"weight_format must be one of {', '.join(_FORMATS)}, not "
                         f"{weight_format!r}")
    prog = list(program)
    if prog and not isinstance(prog[0], Instr):
        prog = decode_program([int(w) for w in prog])
    if weight_depth is None:
        weight_depth = len(weights)
    if len(weights) > weight_depth:
        raise MachineError(f"{len(weights)} weight words do not fit a {weight_depth}-word "
                           f"weight memory")
    # Trits are decoded per MATVEC range (the weight memory may also hold raw int8
    # embedding rows, which are not trits), memoised across calls.
    wtrits = _TritView(list(weights), lanes, fmt)

    scratch = _initial_scratch(scratch_init, scratch_depth, batch)
    b = scratch.shape[0]
    out = torch.zeros(b, out_depth, dtype=torch.int64)
    result = torch.zeros(b, dtype=torch.int64)

    # REPEAT (golden/isa.py) runs its body as the unrolled stream of expand_program; ``pc``
    # below counts that stream (the instruction index of a program without REPEAT).
    # An instruction is what a program word can hold: a field outside its width (a
    # negative n, an aux past 12 bits) has no encoding, so no RTL runs it (encode's rule).
    for i, ins in enumerate(prog):
        try:
            encode(ins)
        except ValueError as exc:
            raise MachineError(f"instruction {i}: {exc}") from None
    try:
        stream = expand_program(prog)
    except ValueError as exc:
        raise MachineError(str(exc)) from None
    n_prog = len(prog)
    stop = stream[-1][0] if stream else -1
    executed = sum(1 for i in prog[:stop + 1] if i.op == Op.REPEAT)
    prog = [i for _, i in stream]
    pc = 0
    vec_ops = vector_ops()
    last_norm = None          # ((n, flags), a) of the last RMSNORM: what ``reuse`` reuses
    tee_pc = None             # a tee (golden/isa.py) whose RMSNORM has not run yet
    while True:
        if pc >= len(prog):
            raise MachineError(f"the program ran past its last instruction ({n_prog}) "
                               f"without a HALT")
        ins = prog[pc]
        executed += 1
        if ins.op == Op.HALT:
            if ins.chain:
                raise MachineError(f"instruction {pc} ({ins}) sets chain, which only a "
                                   f"SIGMOID, a SILU or a GELU may (golden/isa.py)")
            if tee_pc is not None:
                raise MachineError(f"the program halts at {pc} with the tee of instruction "
                                   f"{tee_pc} not followed by its RMSNORM")
            break
        if ins.tee or ins.tee8:
            if ins.op not in (Op.ADD, Op.MUL) or not ins.tee:
                raise MachineError(f"instruction {pc} ({ins}) sets tee/tee8, which only an ADD "
                                   f"or MUL (tee) may (golden/isa.py)")
            if tee_pc is not None:
                raise MachineError(f"instruction {pc} ({ins}) tees while the tee of "
                                   f"instruction {tee_pc} still waits for its RMSNORM")
        if tee_pc is not None and ins.op in vec_ops and spec(ins.op).unit == "norm" and not (
                ins.op == Op.RMSNORM and ins.reuse):
            raise MachineError(f"instruction {pc} ({ins}) uses the Norm unit after the tee of "
                               f"instruction {tee_pc}, but is not an RMSNORM reusing it")
        if ins.pro:
            # A prologue RMSNORM and its MATVEC (golden/isa.py): run one after the other.
            nxt = prog[pc + 1] if pc + 1 < len(prog) else None
            if not prologue_pair(ins, nxt):
                raise MachineError(f"instruction {pc} ({ins}) sets pro, which only a reuse "
                                   f"RMSNORM with OUT8 followed by a MATVEC of src = its dst, "
                                   f"k = its n >= {PRO_MIN_K} and n >= 1 may (golden/isa.py)")
        if ins.chain:
            why = chain_refusal(ins, prog[pc + 1] if pc + 1 < len(prog) else None)
            if ins.op in CHAIN_SECOND:      # a middle outside a chain of three
                why = chain_three_refusal(ins, None, lanes)
            if why:
                raise MachineError(f"instruction {pc} ({ins}) {why} (golden/isa.py)")
        if ins.reuse and ins.op not in vec_ops:     # (a vector op's: checked as it runs)
            raise MachineError(f"instruction {pc} ({ins}) sets reuse, which only an op that "
                               f"reuses the Norm unit's statistics (RMSNORM) may "
                               f"(golden/isa.py)")
        if ins.epi and ins.op != Op.MATVEC:
            raise MachineError(f"instruction {pc} ({ins}) sets epi, which only a MATVEC may "
                               f"(golden/isa.py)")
        if ins.wb and ins.op != Op.MUL:
            raise MachineError(f"instruction {pc} ({ins}) sets wb, which only a MUL may "
                               f"(golden/isa.py)")
        if ins.pair:
            # Only as a MATVEC's epilogue, checked (and run) with its MATVEC below.
            raise MachineError(f"instruction {pc} ({ins}) sets pair, which only a SIGMOID "
                               f"epilogue of a MATVEC may (golden/isa.py)")
        if ins.op == Op.MATVEC and ins.epi:
            # A MATVEC and its epilogue (golden/isa.py): one operation, two instructions.
            nxt = prog[pc + 1] if pc + 1 < len(prog) else None
            if nxt is not None and (nxt.reuse or nxt.pro or nxt.epi):
                # (the epilogue word is not visited as an instruction of its own)
                raise MachineError(f"instruction {pc + 1} ({nxt}) is a MATVEC's epilogue "
                                   f"with reuse, pro or epi, which an epilogue may not set "
                                   f"(golden/isa.py)")
            if nxt is not None and nxt.wb:
                raise MachineError(f"instruction {pc + 1} ({nxt}) is a MATVEC's epilogue with "
                                   f"wb; only a standalone MUL reads b from the weight memory "
                                   f"(the MATVEC streams its weights then)")
            if nxt is None or nxt.op not in epilogue_ops() or nxt.n != ins.n:
                raise MachineError(f"instruction {pc} ({ins}) is a MATVEC with an epilogue, "
                                   f"but the next instruction ({nxt}) is not an elementwise "
                                   f"epilogue op of n={ins.n}")
            if ins.flags & Flag.RAW:
                raise MachineError(f"instruction {pc} ({ins}) is a RAW MATVEC with an "
                                   f"epilogue; an epilogue takes requantized rows")
            y = _matvec(ins, pc, wtrits, weight_depth, lanes, scratch, out, write=False)
            if not nxt.chain and nxt.dst < ins.src + ins.k and ins.src < nxt.dst + ins.n:
                raise MachineError(f"instruction {pc + 1} ({nxt}) writes scratch words "
                                   f"{nxt.dst}..{nxt.dst + nxt.n - 1} over its MATVEC's input "
                                   f"{ins.src}..{ins.src + ins.k - 1}, which the ISA does not "
                                   f"define")
            if nxt.pair:
                if (nxt.op != Op.SIGMOID or nxt.flags & Flag.NEG
                        or (ins.k < 2 * lanes + 4 and ins.n > lanes)):
                    raise MachineError(f"instruction {pc + 1} ({nxt}) sets pair, which only a "
                                       f"SIGMOID without NEG may, as the epilogue of a MATVEC "
                                       f"with k >= 2 * lanes + 4 = {2 * lanes + 4} or n <= lanes "
                                       f"(golden/isa.py)")
                if nxt.chain and ins.n > lanes:
                    raise MachineError(f"instruction {pc + 1} ({nxt}) is a pair with chain, "
                                       f"which only the epilogue of a MATVEC of one tile (n <= "
                                       f"lanes = {lanes}) may be (golden/isa.py)")
                spans = [(ins.src, ins.src + ins.k, "its MATVEC's input")]
                if not nxt.chain:       # (a chained pair's first results are not written)
                    spans.append((nxt.dst, nxt.dst + ins.n, "its first result"))
                for lo, hi, what in spans:
                    if nxt.aux < hi and lo < nxt.aux + ins.n:
                        raise MachineError(f"instruction {pc + 1} ({nxt}) writes its pair's "
                                           f"second result {nxt.aux}..{nxt.aux + ins.n - 1} "
                                           f"over {what} {lo}..{hi - 1}, which the ISA does "
                                           f"not define")
                twin = dataclasses.replace(nxt, flags=nxt.flags | int(Flag.NEG), dst=nxt.aux,
                                           pair=0)
                _vector(twin, pc + 1, scratch, a=y)
            last = pc + 1        # the instruction that writes (a chain's second)
            if nxt.chain and nxt.op in CHAIN_SECOND:    # an epilogue ADD/MUL: no middle
                raise MachineError(f"instruction {pc + 1} ({nxt}) "
                                   f"{chain_three_refusal(ins, None, lanes)} (golden/isa.py)")
            if nxt.chain:
                # MATVEC, epilogue, chained ADD/MUL (golden/isa.py chain): one operation.
                sec = _chain_second(nxt, pc + 1, prog)
                if nxt.pair:        # (a middle's result is not written)
                    for what, base in ([] if sec.chain else [("writes", sec.dst)]) + [
                            ("reads b at", sec.aux)]:
                        if base < nxt.aux + ins.n and nxt.aux < base + sec.n:
                            raise MachineError(
                                f"instruction {pc + 2} ({sec}) {what} scratch words "
                                f"{base}..{base + sec.n - 1}, over the pair's second results "
                                f"{nxt.aux}..{nxt.aux + ins.n - 1} written meanwhile, which "
                                f"the ISA does not define")
                a2 = _vector(nxt, pc + 1, scratch, a=y, write=False)
                if sec.chain:
                    # A chain of three (golden/isa.py): the middle's result streams on too.
                    why = chain_three_refusal(nxt, ins, lanes)
                    if why:
                        raise MachineError(f"instruction {pc + 2} ({sec}) {why} "
                                           f"(golden/isa.py)")
                    third = _chain_second(sec, pc + 2, prog)
                    why = chain_three_overlap(ins, nxt, sec, third)
                    if why:
                        raise MachineError(f"instruction {pc + 3} ({third}) {why}")
                    a2 = _vector(sec, pc + 2, scratch, a=a2, write=False)
                    sec = third
                    executed += 1
                    last += 1
                last += 1
                if sec.dst < ins.src + ins.k and ins.src < sec.dst + sec.n:
                    raise MachineError(f"instruction {last} ({sec}) writes scratch words "
                                       f"{sec.dst}..{sec.dst + sec.n - 1} over its MATVEC's "
                                       f"input {ins.src}..{ins.src + ins.k - 1}, which the ISA "
                                       f"does not define")
                _vector(sec, last, scratch, a=a2)
                nxt = sec
                executed += 1
            else:
                _vector(nxt, pc + 1, scratch, a=y)
            if (nxt.tee or nxt.tee8) and (nxt.op not in (Op.ADD, Op.MUL) or not nxt.tee
                                          or tee_pc is not None):
                raise MachineError(f"instruction {last} ({nxt}) sets tee/tee8 on an op other "
                                   f"than ADD or MUL, tee8 without tee, or tees while the tee "
                                   f"of instruction {tee_pc} still waits for its RMSNORM")
            if nxt.tee:
                last_norm = ((nxt.n, int(Flag.OUT8) if nxt.tee8 else 0),
                             scratch[:, nxt.dst:nxt.dst + nxt.n].clone())
                tee_pc = last
            executed += 1
            pc = last
        elif ins.op == Op.MATVEC:
            _matvec(ins, pc, wtrits, weight_depth, lanes, scratch, out)
        elif ins.op == Op.ARGMAX:
            if ins.n < 1:
                raise MachineError(f"instruction {pc} ({ins}) is an ARGMAX over 0 elements")
            _span("reads out", ins.src, ins.n, out_depth, pc, ins)
            result = argmax(out[:, ins.src:ins.src + ins.n])
        elif ins.op in vec_ops:
            if ins.reuse:
                # The unit's statistics are the previous RMSNORM's: its a must be this a.
                a = scratch[:, ins.src:ins.src + ins.n]
                if (not spec(ins.op).reuse or last_norm is None or last_norm[0] != (ins.n, ins.flags)
                        or not torch.equal(last_norm[1], a)):
                    raise MachineError(f"instruction {pc} ({ins}) reuses the statistics of the "
                                       f"previous RMSNORM, which did not normalize the same "
                                       f"{ins.n} values with the same flags")
            a_in = scratch[:, ins.src:ins.src + ins.n].clone()
            wb = (_wb_operand(ins, pc, list(weights), format_word_bits(fmt, lanes) // 8,
                              weight_depth, scratch.shape[0]) if ins.wb else None)
            if ins.chain:
                # A standalone chain (golden/isa.py): the first op's results are the second
                # one's a, never written; the second's result may be the first's input
                # words or disjoint from them.
                sec = _chain_second(ins, pc, prog)
                if sec.chain:       # a chain of three: an epilogue's only
                    raise MachineError(f"instruction {pc + 1} ({sec}) "
                                       f"{chain_three_refusal(ins, None, lanes)} "
                                       f"(golden/isa.py)")
                if (sec.dst != ins.src and sec.dst < ins.src + ins.n
                        and ins.src < sec.dst + sec.n):
                    raise MachineError(f"instruction {pc + 1} ({sec}) writes scratch words "
                                       f"{sec.dst}..{sec.dst + sec.n - 1} over part of the "
                                       f"input {ins.src}..{ins.src + ins.n - 1} of the "
                                       f"instruction chained into it, which the ISA does not "
                                       f"define")
                if sec.tee and tee_pc is not None:
                    raise MachineError(f"instruction {pc + 1} ({sec}) tees while the tee of "
                                       f"instruction {tee_pc} still waits for its RMSNORM")
                _vector(sec, pc + 1, scratch, a=_vector(ins, pc, scratch, write=False))
                executed += 1
                pc += 1
                ins = sec
            else:
                _vector(ins, pc, scratch, b=wb)
            if spec(ins.op).unit == "norm":
                last_norm = ((ins.n, ins.flags), a_in) if ins.op == Op.RMSNORM else None
                tee_pc = None
            elif ins.tee:
                # The tee's statistics: those of the RMSNORM that reuses them (OUT8 if tee8).
                last_norm = ((ins.n, int(Flag.OUT8) if ins.tee8 else 0),
                             scratch[:, ins.dst:ins.dst + ins.n].clone())
                tee_pc = pc
        elif ins.op == Op.SAMPLE:
            result = _sample(ins, pc, scratch)
        elif ins.op == Op.EMBED:
            _embed(ins, pc, list(weights), format_word_bits(fmt, lanes) // 8, weight_depth,
                   scratch)
        else:  # pragma: no cover - decode() rejects unknown opcodes
            raise MachineError(f"instruction {pc} has unknown opcode {ins.op!r}")
        pc += 1
    return MachineState(scratch=scratch, out=out, result=result, executed=executed)


class _TritView:
    """Decoded trits (I2 or T3 words) of ranges of the weight memory, memoised by content."""

    _memo: dict = {}

    def __init__(self, words: list, lanes: int, fmt: Format = Format.I2_TILED):
        self.words, self.lanes, self.fmt = words, lanes, fmt

    def __len__(self):
        return len(self.words)

    def get(self, base: int, count: int) -> torch.Tensor:
        chunk = tuple(self.words[base:base + count])
        key = (self.lanes, int(self.fmt), hash(chunk), chunk)
        t = self._memo.get(key)
        if t is None:
            if len(self._memo) > 256:
                self._memo.clear()
            t = self._memo[key] = words_to_trits(list(chunk), self.lanes, self.fmt)
        return t


def _initial_scratch(init, depth: int, batch: int | None) -> torch.Tensor:
    if isinstance(init, torch.Tensor):
        s = init.to(torch.int64)
        if s.dim() == 1:
            s = s.unsqueeze(0)
        if s.dim() != 2 or s.shape[1] != depth:
            raise MachineError(f"scratch_init has shape {tuple(init.shape)}, expected "
                               f"(B, {depth}) or ({depth},)")
        s = s.clone()
        if batch is not None and s.shape[0] != batch:
            s = s.expand(batch, depth).clone()
    else:
        items = [(int(a), torch.as_tensor(v).to(torch.int64)) for a, v in (init or {}).items()]
        b = batch
        for _, v in items:
            if v.dim() == 2:
                if b is not None and v.shape[0] != b and b != 1:
                    raise MachineError(f"scratch_init holds batches of {v.shape[0]} and {b}")
                b = v.shape[0]
        s = torch.zeros(b or 1, depth, dtype=torch.int64)
        for addr, v in items:
            n = v.shape[-1]
            if addr < 0 or addr + n > depth:
                raise MachineError(f"scratch_init writes words {addr}..{addr + n - 1}, outside "
                                   f"the {depth}-word scratchpad")
            s[:, addr:addr + n] = v
    if not _fits(s, SCRATCH_BITS):
        raise MachineError(f"scratch_init holds values outside the signed {SCRATCH_BITS}-bit "
                           f"range of a scratchpad word")
    return s


def _matvec(ins: Instr, pc: int, wtrits: torch.Tensor, weight_depth: int, lanes: int,
            scratch: torch.Tensor, out: torch.Tensor, write: bool = True):
    """MATVEC; with ``write=False`` (an epilogue's MATVEC) the requantized rows are
    returned, (B, n) int64, instead of written."""
    defined = int(Flag.RELU | Flag.RAW | Flag.WIDE)
    flags = Flag(ins.flags & defined)
    if ins.flags != int(flags):
        raise MachineError(f"instruction {pc} ({ins}) has undefined flag bits "
                           f"{ins.flags & ~defined:#x}")
    if Flag.RAW in flags and Flag.RELU in flags:
        raise MachineError(f"instruction {pc} ({ins}) sets both RAW and RELU, which the ISA "
                           f"does not define")
    n, k = ins.n, ins.k
    if n < 1 or k < 1:
        raise MachineError(f"instruction {pc} ({ins}) is a MATVEC of {n}x{k}; both must be >= 1")
    tiles = -(-n // lanes)
    _span("reads weight", ins.wbase, tiles * k, weight_depth, pc, ins)
    if ins.wbase + tiles * k > len(wtrits):
        raise MachineError(f"instruction {pc} ({ins}) reads weight words "
                           f"{ins.wbase}..{ins.wbase + tiles * k - 1}, but only "
                           f"{len(wtrits)} were loaded")
    _span("reads scratch", ins.src, k, scratch.shape[1], pc, ins)
    dst_mem = out if Flag.RAW in flags else scratch
    if write:
        _span("writes " + ("out" if Flag.RAW in flags else "scratch"), ins.dst, n,
              dst_mem.shape[1], pc, ins)
    if write and Flag.RAW not in flags and ins.dst < ins.src + k and ins.src < ins.dst + n:
        # The engine may write a tile's results while later tiles still read the input.
        raise MachineError(f"instruction {pc} ({ins}) writes scratch words "
                           f"{ins.dst}..{ins.dst + n - 1} over its own input "
                           f"{ins.src}..{ins.src + k - 1}, which the ISA does not define")
    # ISA: word wbase + jt*k + i holds t[jt*lanes + l, i] in lane l.
    w = wtrits.get(ins.wbase, tiles * k).view(tiles, k, lanes).permute(0, 2, 1)
    t = w.reshape(tiles * lanes, k)[:n]
    x = scratch[:, ins.src:ins.src + k]
    if bool(((x < ACT_MIN) | (x > ACT_MAX)).any()):
        raise MachineError(f"instruction {pc} ({ins}) reads scratch words outside the int8 "
                           f"activation range [{ACT_MIN}, {ACT_MAX}]; a MATVEC input must be int8")
    y = matvec_op(t, x, ins.m, ins.s, int(flags))
    if not write:
        return y
    if Flag.RAW in flags:
        if not _fits(y, OUT_BITS):  # pragma: no cover - needs K * 2^15 >= 2^31
            raise MachineError(f"instruction {pc} ({ins}) produced an accumulator outside "
                               f"{OUT_BITS} signed bits")
        out[:, ins.dst:ins.dst + n] = y
    else:
        scratch[:, ins.dst:ins.dst + n] = y


def _wb_operand(ins: Instr, pc: int, weights: list, bpw: int, weight_depth: int,
               batch: int) -> torch.Tensor:
    """The ``b`` operand of a MUL with ``wb`` (golden/isa.py): (batch, n) int64, the signed
    little-endian halfword ``j`` of the row of ``ceil(n / H)`` words at ``wbase`` (``H = bpw /
    2`` halfwords a word). Raises MachineError for odd bytes a word, ``aux`` != 0, or a row
    outside the weight memory or past the words loaded."""
    if bpw % 2:
        raise MachineError(f"instruction {pc} ({ins}) reads 16-bit halfwords from words of "
                           f"{bpw} bytes, which is odd")
    if ins.aux:
        raise MachineError(f"instruction {pc} ({ins}) sets wb with aux = {ins.aux}; aux must "
                           f"be 0 (not read, golden/isa.py)")
    n, h = ins.n, bpw // 2
    words = -(-n // h)
    _span("reads weight", ins.wbase, words, weight_depth, pc, ins)
    if ins.wbase + words > len(weights):
        raise MachineError(f"instruction {pc} ({ins}) reads weight words {ins.wbase}.."
                           f"{ins.wbase + words - 1}, but only {len(weights)} were loaded")
    row = b"".join(int(weights[ins.wbase + w]).to_bytes(bpw, "little") for w in range(words))
    vals = torch.tensor([int.from_bytes(row[2 * j:2 * j + 2], "little", signed=True)
                         for j in range(n)], dtype=torch.int64)
    return vals.expand(batch, n)


def _chain_second(ins: Instr, pc: int, prog: list) -> Instr:
    """The instruction a ``chain`` instruction at ``pc`` streams into (golden/isa.py), after
    :func:`golden.isa.chain_refusal`'s check (MachineError with its sentence)."""
    nxt = prog[pc + 1] if pc + 1 < len(prog) else None
    why = chain_refusal(ins, nxt)
    if why:
        raise MachineError(f"instruction {pc} ({ins}) {why} (golden/isa.py)")
    return nxt


def _vector(ins: Instr, pc: int, scratch: torch.Tensor, a: torch.Tensor | None = None,
            b: torch.Tensor | None = None, write: bool = True) -> torch.Tensor | None:
    """A vector op (golden.vecops.vector_op) on scratch[src:src+la] and scratch[aux:aux+lb],
    writing scratch[dst:dst+rows], with the lengths of the op registry (``in_len``,
    ``b_len``, ``out_rows``; all ``n`` for elementwise ops). An epilogue passes ``a``, its
    MATVEC's rows (B, n), instead (``src`` is then not read); a MUL with ``wb`` passes ``b``,
    its weight-memory row (B, n; ``aux`` is then not read). With ``write=False`` (the first
    op of a chain) the result (B, rows) int64 is returned, not written (``dst`` unused)."""
    s = spec(ins.op)
    n, k = ins.n, ins.k
    la, lb, rows = s.in_len(n, k), s.b_len(n, k), s.out_rows(n, k)
    if n < 1 or la < 1:
        raise MachineError(f"instruction {pc} ({ins}) is a vector op over 0 elements")
    if a is None:
        _span("reads scratch", ins.src, la, scratch.shape[1], pc, ins)
    if b is None:
        _span("reads scratch", ins.aux, lb, scratch.shape[1], pc, ins)
    if write:
        _span("writes scratch", ins.dst, rows, scratch.shape[1], pc, ins)
    if write and not la == lb == rows:
        # The unit reads its operands while earlier results are written back.
        for what, base, ln in (("a", ins.src, la), ("b", ins.aux, lb)):
            if ins.dst < base + ln and base < ins.dst + rows:
                raise MachineError(f"instruction {pc} ({ins}) writes scratch words "
                                   f"{ins.dst}..{ins.dst + rows - 1} over its operand {what} "
                                   f"{base}..{base + ln - 1}, which the ISA does not define")
    if a is None:
        a = scratch[:, ins.src:ins.src + la]
    elif (write and s.operands == 2 and ins.dst != ins.aux and ins.dst < ins.aux + lb
          and ins.aux < ins.dst + rows):
        raise MachineError(f"instruction {pc} ({ins}) is an epilogue writing scratch words "
                           f"{ins.dst}..{ins.dst + rows - 1} over part of its operand b "
                           f"{ins.aux}..{ins.aux + lb - 1}, which the ISA does not define")
    y = vector_op(ins, a, scratch[:, ins.aux:ins.aux + lb] if b is None else b)
    if not write:
        return y
    scratch[:, ins.dst:ins.dst + rows] = y
    return None


def _embed(ins: Instr, pc: int, weights: list, bpw: int, weight_depth: int,
           scratch: torch.Tensor) -> None:
    """EMBED: scratch[dst + j] = sign-extended byte j of the row at word wbase + token * k
    (``bpw`` bytes a word, little-endian); with WIDE the signed little-endian 16-bit
    halfword j (bytes 2j, 2j + 1; ``bpw`` must be even)."""
    n, k = ins.n, ins.k
    if ins.flags & ~int(Flag.WIDE):
        raise MachineError(f"instruction {pc} ({ins}) has undefined flag bits "
                           f"{ins.flags & ~int(Flag.WIDE):#x}")
    wide = bool(ins.flags & Flag.WIDE)
    if wide and bpw % 2:
        raise MachineError(f"instruction {pc} ({ins}) embeds 16-bit halfwords from words of "
                           f"{bpw} bytes, which is odd")
    size = 2 if wide else 1
    if n < 1 or k * bpw < n * size:
        raise MachineError(f"instruction {pc} ({ins}) embeds {n} {'halfwords' if wide else 'bytes'} "
                           f"from rows of {k} words ({k * bpw} bytes)")
    _span("reads scratch", ins.src, 1, scratch.shape[1], pc, ins)
    _span("writes scratch", ins.dst, n, scratch.shape[1], pc, ins)
    for bi in range(scratch.shape[0]):
        tok = int(scratch[bi, ins.src])
        if tok < 0:
            raise MachineError(f"instruction {pc} ({ins}) reads a negative token id {tok}")
        base = ins.wbase + tok * k
        _span("reads weight", base, k, weight_depth, pc, ins)
        if base + k > len(weights):
            raise MachineError(f"instruction {pc} ({ins}) reads embedding words "
                               f"{base}..{base + k - 1}, but only {len(weights)} were loaded")
        row = b"".join(int(weights[base + w]).to_bytes(bpw, "little") for w in range(k))
        if wide:
            vals = torch.tensor([int.from_bytes(row[2 * j:2 * j + 2], "little", signed=True)
                                 for j in range(n)], dtype=torch.int64)
            scratch[bi, ins.dst:ins.dst + n] = vals
        else:
            vals = torch.tensor(list(row[:n]), dtype=torch.int64)
            scratch[bi, ins.dst:ins.dst + n] = torch.where(vals >= 128, vals - 256, vals)


def _sample(ins: Instr, pc: int, scratch: torch.Tensor) -> torch.Tensor:
    """SAMPLE: draw from scratch[src:src+n] with the LFSR state at scratch[aux], [aux+1]."""
    if ins.n < 1:
        raise MachineError(f"instruction {pc} ({ins}) samples from 0 elements")
    _span("reads scratch", ins.src, ins.n, scratch.shape[1], pc, ins)
    _span("reads and writes scratch", ins.aux, 2, scratch.shape[1], pc, ins)
    out = []
    for bi in range(scratch.shape[0]):
        st = join_state(scratch[bi, ins.aux], scratch[bi, ins.aux + 1])
        idx, st = sample_index(scratch[bi, ins.src:ins.src + ins.n].tolist(), st)
        scratch[bi, ins.aux], scratch[bi, ins.aux + 1] = split_state(st)
        out.append(idx)
    return torch.tensor(out, dtype=torch.int64)
