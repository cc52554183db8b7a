"""Accelerator configuration shared by the compiler, the RTL generator and the simulators.

One :class:`AccelConfig` fixes every size the compiler must respect and the RTL is built
with. The compiler rejects a model that does not fit; the RTL sizes its memories and
accumulators from the same numbers.
"""
from __future__ import annotations

import dataclasses

from ternac.golden.cycles import WEIGHT_FORMATS, weight_word_bits
from ternac.golden.widths import M_BITS, S_BITS, acc_width
from ternac.protocol import Space

__all__ = ["AccelConfig", "HostSpace", "LM_CONFIG", "LM_SAMPLE_CONFIG", "LM_T3_CONFIG",
           "LM_ULX3S_CONFIG", "LM_CONFIGS", "LM_OPS", "LM_SAMPLE_OPS", "UP5K_SPRAM_WORDS",
           "VIT_CONFIG", "VIT_OPS"]

#: The host port's address spaces: defined by the host-link protocol (the name is kept for
#: existing callers).
HostSpace = Space


@dataclasses.dataclass(frozen=True)
class AccelConfig:
    """Sizes of one accelerator build.

    Parameters
    ----------
    lanes : int
        L, output rows computed in parallel (one trit-MAC a lane a cycle). I2: a multiple
        of 4 from 4 to 128 (words of 8 to 256 bits; 128 lanes: the ULX3S LM,
        :data:`LM_ULX3S_CONFIG`); T3: a multiple of 5 from 5 to 80.
    weight_depth : int
        Weight memory depth in words (each :attr:`word_bits` bits).
    scratch_depth : int
        Scratchpad depth in 16-bit words.
    out_depth : int
        Output buffer depth in 32-bit words.
    prog_depth : int
        Program memory depth in 128-bit instructions.
    max_fan_in : int
        Largest fan-in K supported; sizes the accumulators (``acc_width(max_fan_in)`` bits).
    vector : tuple of str
        Vector units to build: names of ``ternac.golden.ops.VECTOR_UNITS`` (the op
        registry's units: "activation" for SIGMOID/SILU/GELU, "norm" for RMSNORM/LAYERNORM,
        "eltwise" for ADD/MUL, "shiftmax", "dot"; ``ops.units_of`` gives a program's).
        The digits MLP needs none.
    max_vector : int
        Longest vector a norm or Shiftmax unit takes (sizes its sums).
    weight_format : str
        How trits are packed in the weight memory and decoded by the streamer
        (golden.image.Format): ``"i2"`` (default; 2 bits a trit, words of ``2 * lanes``
        bits, golden.packing.tile_lanes) or ``"t3"`` (5 trits a byte, words of
        ``8 * lanes / 5`` bits, golden.packing.tile_lanes_t3; decoded by a ROM a byte in
        EBR): 40 lanes of T3 read the 64-bit word that feeds 32 lanes of I2.
    ops : tuple of str or None
        The operations the sequencer is built with: names of ``golden.isa.Op`` (stored in
        opcode order), or None (default) for every one. A board build for one model takes
        the ops of the programs it runs (:data:`LM_OPS`, :data:`VIT_OPS`), so the sequencer
        carries no logic for the others (hw/sequencer.py): on such a build an absent opcode
        halts with ``error`` as an unknown one does, and ternac.lower.check_program refuses
        a program that uses one. A vector op also needs its unit in ``vector``.
    scratch_a_depth : int or None
        The *window* of the scratchpad's port a, ``[0, scratch_a_depth)`` in 16-bit words
        (None, the default: ``scratch_depth``, the whole scratchpad). The scratchpad is two
        copies, one a read port (iCE40/ECP5 block RAM has one read port a block): port a
        (the operand fetcher's ``a``: a vector op's ``src`` operand, MATVEC's activations,
        EMBED's index, SAMPLE's probabilities and first LFSR word) reads a copy that holds
        only the window; port b (the ``b`` operand: ``aux``, the epilogue's ``b``, RMSNORM's
        weight, SAMPLE's second LFSR word) and the host port read the full copy. Every write
        goes to both copies where the window covers it. The compiler places whatever port
        a reads inside the window and ternac.lower.check_program refuses a program that
        reads outside it; the ISA's semantics do not change.
    out_bits : int
        Bits of an output-buffer word, 16 to 32 (default 32): a RAW MATVEC's accumulators,
        stored in the low ``out_bits`` bits and read back sign-extended, so exact for
        fan-ins with ``golden.widths.acc_width(k) <= out_bits`` (check_program refuses
        others); 16 halves the buffer's block RAM.
    mv_chain : bool
        MATVEC chaining (default False): a MATVEC right after a MATVEC (and its epilogue)
        starts streaming as soon as the first one's reads and weight commands are issued,
        while its last tile drains; its rows wait in the engine until the first one's last
        row is written (hw/sequencer.py MV_SWAP; golden/cycles.py chained_matvec_cycles).
        The program must have the second read none of the first one's results (the compiler's
        check_program refuses it, with the other limits of the chain). On for
        :data:`LM_ULX3S_CONFIG` only (its gate -> y projections; about 60 LUT and 25 FF more
        in the sequencer, not wanted on the UP5K).
    op_chain : bool
        Chains (default False; golden/isa.py ``chain``): a SIGMOID, SILU or GELU (standalone
        or a MATVEC's epilogue) streams its results straight into the Eltwise unit as the
        ``a`` of the ADD or MUL after it, which the lowering then emits where the first
        op's result has no other reader (ternac.lower ``_chains``): one pass over the
        vector instead of two (hw/sequencer.py CH_WAIT / CH_DEC). Behind a MATVEC of one
        tile a SIGMOID pair may chain, and the ADD/MUL may chain on into a third on a
        second Eltwise unit (a chain of three, CH3_WAIT / CH3_DEC). The units then run at
        once, beside the requantizer in an epilogue, so the multiplier pool needs their
        slots side by side (15 for the LM at 128 lanes, not 8: more than the UP5K's
        SB_MAC16s). On for :data:`LM_ULX3S_CONFIG` only.
    norm_steps : int
        Bits a cycle of the Norm unit's between-pass work (hw/norm.py ``work_steps``): 1
        (default) or 2, which halves its products, normalization, isqrt and division
        (about 22 cycles fewer an RMSNORM at n = 128: golden.cycles.norm_work_cycles) for
        a second adder or subtractor in each. On for :data:`LM_ULX3S_CONFIG` only.
    prog_compact : bool
        Store in the program memory only the instruction bits this build can use
        (:attr:`prog_stored`; default False: all ``INSTR_BITS``). The bits it drops read back
        as 0, and :meth:`prog_refusal` (the compiler's check_program, the host driver's
        load_program, hw.top.Accelerator) refuses a program that sets one. The LM's 112 of
        128 bits (golden/isa.py FIELDS; at most 112) fit 7 iCE40 blocks of
        256 x 16 instead of 8 (written through the block's per-bit write mask, hw/top.py).

    Raises
    ------
    ValueError for a lane count or depth outside the accepted range, an unknown weight
    format, or ``ops`` naming an unknown operation or leaving out HALT or MATVEC.
    """
    lanes: int = 8
    weight_depth: int = 4096
    scratch_depth: int = 1024
    out_depth: int = 256
    prog_depth: int = 64
    max_fan_in: int = 1024
    vector: tuple = ()
    max_vector: int = 256
    weight_format: str = "i2"
    ops: tuple | None = None
    scratch_a_depth: int | None = None
    out_bits: int = 32
    prog_compact: bool = False
    mv_chain: bool = False
    op_chain: bool = False
    norm_steps: int = 1

    def __post_init__(self):
        object.__setattr__(self, "vector", tuple(self.vector))
        if self.ops is not None:
            from ternac.golden.isa import Op
            if isinstance(self.ops, str) or not all(isinstance(o, str) for o in self.ops):
                raise ValueError(f"ops must be None or a tuple of operation names, not "
                                 f"{self.ops!r}")
            bad = [o for o in self.ops if o not in Op.__members__]
            if bad:
                raise ValueError(f"unknown operation {bad[0]!r} in ops; choose from "
                                 f"{', '.join(Op.__members__)}")
            missing = [o for o in ("HALT", "MATVEC") if o not in self.ops]
            if missing:
                raise ValueError(f"ops must include {' and '.join(missing)} (every program "
                                 f"ends with HALT; the sequencer is built around MATVEC)")
            object.__setattr__(self, "ops", tuple(sorted(set(self.ops),
                                                         key=lambda o: Op[o].value)))
        from ternac.golden.ops import VECTOR_UNITS as known

        for name in self.vector:
            if name not in known:
                raise ValueError(f"unknown vector unit {name!r}; choose from {', '.join(known)}")
        if self.weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight_format must be one of {', '.join(WEIGHT_FORMATS)}, not "
                             f"{self.weight_format!r}")
        if self.weight_format == "t3":
            if not (isinstance(self.lanes, int) and 5 <= self.lanes <= 80
                    and self.lanes % 5 == 0):
                raise ValueError(f"T3 lanes must be a multiple of 5 from 5 to 80, not "
                                 f"{self.lanes!r}")
        elif not (isinstance(self.lanes, int) and 4 <= self.lanes <= 128
                  and self.lanes % 4 == 0):
            raise ValueError(f"lanes must be a multiple of 4 from 4 to 128, not {self.lanes!r}")
        for name in ("weight_depth", "scratch_depth", "out_depth", "prog_depth", "max_fan_in",
                     "max_vector"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= (1 << 20)):
                raise ValueError(f"{name} must be an integer from 1 to 2**20, not {v!r}")
        a = self.scratch_a_depth
        if a is not None and not (isinstance(a, int) and not isinstance(a, bool)
                                  and 1 <= a <= self.scratch_depth):
            raise ValueError(f"scratch_a_depth must be None or an integer from 1 to "
                             f"scratch_depth ({self.scratch_depth}), not {a!r}")
        if not (isinstance(self.out_bits, int) and 16 <= self.out_bits <= 32):
            raise ValueError(f"out_bits must be an integer from 16 to 32, not {self.out_bits!r}")
        if not isinstance(self.prog_compact, bool):
            raise ValueError(f"prog_compact must be True or False, not {self.prog_compact!r}")
        if not isinstance(self.mv_chain, bool):
            raise ValueError(f"mv_chain must be True or False, not {self.mv_chain!r}")
        if self.norm_steps not in (1, 2) or isinstance(self.norm_steps, bool):
            raise ValueError(f"norm_steps must be 1 or 2, not {self.norm_steps!r}")
        if not isinstance(self.op_chain, bool):
            raise ValueError(f"op_chain must be True or False, not {self.op_chain!r}")
        if self.op_chain and not {"activation", "eltwise"} <= set(self.vector):
            raise ValueError("op_chain needs the 'activation' and 'eltwise' vector units "
                             "(an Activation op's results stream into the Eltwise unit)")

    @property
    def word_bits(self) -> int:
        """Bits of a weight word: ``2 * lanes`` (I2, one trit a lane) or ``8 * lanes / 5``
        (T3, five lanes a byte)."""
        return weight_word_bits(self.lanes, self.weight_format)

    @property
    def word_bytes(self) -> int:
        """Bytes of a weight word (an EMBED row takes this many bytes a word)."""
        return self.word_bits // 8

    @property
    def acc_bits(self) -> int:
        """Accumulator width in bits, exact for ``max_fan_in`` (golden.numerics.acc_width)."""
        return acc_width(self.max_fan_in)

    @property
    def weight_slices(self) -> int:
        """32-bit host slices a weight word."""
        return -(-self.word_bits // 32)

    @property
    def scratch_a_window(self) -> int:
        """Words of port a's scratch window, ``[0, scratch_a_window)``: ``scratch_a_depth``,
        or ``scratch_depth`` when that is None."""
        return self.scratch_depth if self.scratch_a_depth is None else self.scratch_a_depth

    @property
    def op_set(self) -> frozenset:
        """The operations built, as a frozenset of ``golden.isa.Op`` (all of them when
        ``ops`` is None)."""
        from ternac.golden.isa import Op
        return frozenset(Op) if self.ops is None else frozenset(Op[o] for o in self.ops)

    @property
    def prog_stored(self) -> tuple[tuple[int, int, str], ...]:
        """The bit ranges of an instruction word (golden.isa.FIELDS) the program memory
        stores: ``((lo, bits, field), ...)`` in bit order. All of every field unless
        ``prog_compact``; then ``chain`` is dropped on a build without ``op_chain``, ``rsel``
        on one without REPEAT
        (every other op refuses a non-zero one), ``wbase`` keeps the bits of a weight-memory
        address or the 16 of a vector op's ``m2`` (golden/isa.py), whichever is more, and
        ``k`` those of the largest of ``max_fan_in`` (a MATVEC's fan-in), ``max_vector``
        and, with REPEAT, ``prog_depth`` (a body's length), at least the 6 of a vector
        op's ``s2``. A program that needs more (an EMBED row of more words than that) is
        refused (:meth:`prog_refusal`). The LM (:data:`LM_CONFIG`): 112 bits (111 before
        ``pair``), 7 blocks of 256 x 16 on the iCE40 (113, with ``op_chain``, take 8)."""
        from ternac.golden.isa import FIELDS
        out, lo = [], 0
        for name, bits in FIELDS:
            keep = bits
            if self.prog_compact:
                from ternac.golden.isa import Op
                if (name == "rsel" and Op.REPEAT not in self.op_set) or (
                        name == "chain" and not self.op_chain):
                    keep = 0
                elif name == "wbase":
                    keep = min(bits, max(M_BITS, (self.weight_depth - 1).bit_length()))
                elif name == "k":
                    top = max(self.max_fan_in, self.max_vector,
                              self.prog_depth if Op.REPEAT in self.op_set else 0)
                    keep = min(bits, max(S_BITS, top.bit_length()))
            if keep:
                out.append((lo, keep, name))
            lo += bits
        return tuple(out)

    @property
    def prog_word_bits(self) -> int:
        """Bits of a program-memory word: the sum of :attr:`prog_stored` (``INSTR_BITS``
        unless ``prog_compact``)."""
        return sum(b for _, b, _ in self.prog_stored)

    @property
    def prog_stored_mask(self) -> int:
        """The 128-bit mask of the instruction bits the program memory stores."""
        return sum(((1 << b) - 1) << lo for lo, b, _ in self.prog_stored)

    def prog_refusal(self, words) -> str | None:
        """Why this build cannot hold the program ``words`` (128-bit instruction words,
        ints), one sentence, or None: a word that sets a bit the program memory does not
        store (:attr:`prog_stored`, it would read back as 0). The one rule the compiler
        (ternac.lower.check_program), the host driver (HostDriver.load_program) and
        hw.top.Accelerator apply."""
        from ternac.golden.isa import FIELDS, INSTR_BITS
        mask = self.prog_stored_mask
        for idx, w in enumerate(words):
            w = int(w)
            extra = w & ~mask & ((1 << INSTR_BITS) - 1)
            if not extra:
                continue
            bit = (extra & -extra).bit_length() - 1
            lo = 0
            for name, bits in FIELDS:
                if lo <= bit < lo + bits:
                    break
                lo += bits
            return (f"instruction {idx} sets bit {bit - lo} of its {name} field, which this "
                    f"build's program memory does not store (AccelConfig.prog_compact keeps "
                    f"{self.prog_word_bits} of the {INSTR_BITS} bits: "
                    f"{dict((n, b) for _, b, n in self.prog_stored).get(name, 0)} of {name}'s)")
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: 64-bit words in the four SB_SPRAM256KA of the iCE40 UP5K (4 x 256 Kbit).
UP5K_SPRAM_WORDS = 4 * 256 * 1024 // 64

#: The operations of the LM's greedy program (ternac.lower.compile_lm on LM_CONFIG, the
#: same at 40 lanes T3 and 128 lanes; tests/test_ops_config.py checks they are exactly the
#: program's): no SAMPLE, SHIFTMAX, REPEAT, GELU, LAYERNORM, DOT, DOTT.
LM_OPS = ("HALT", "MATVEC", "ARGMAX", "SIGMOID", "SILU", "RMSNORM", "ADD", "MUL", "EMBED")
#: The operations of the LM's sampling program (SHIFTMAX and SAMPLE for ARGMAX), with ARGMAX
#: kept so the sampling accelerator also runs the greedy program.
LM_SAMPLE_OPS = LM_OPS + ("SHIFTMAX", "SAMPLE")
#: The operations of the digits ViT's program (ternac.lower.lower of golden/vit.py's graph on
#: VIT_CONFIG; checked as :data:`LM_OPS`): no SAMPLE, SIGMOID, SILU, RMSNORM, MUL.
VIT_OPS = ("HALT", "MATVEC", "ARGMAX", "GELU", "LAYERNORM", "SHIFTMAX", "ADD", "EMBED", "DOT",
           "DOTT", "REPEAT")

#: The accelerator the flagship shakespeare model (d=128, 3 layers, GLU 192, 65 symbols)
#: is compiled for: 32 lanes fed by the UP5K's four 16-bit SPRAM ports (64-bit words),
#: the whole SPRAM as weight memory, fan-in up to 256 (17-bit accumulators). Its memories
#: fit the UP5K's 30 EBR (boards/resources.py memories(), in 256 x 16 blocks): a 3,840-word
#: scratchpad (15 EBR; 11 of the norm weights are staged from the weight memory, 3 more
#: than at 4,096 words) whose port a reads a copy of only its first 1,280 words (5 EBR;
#: scratch_a_depth: the token, the zero word, the 384 words of state and the 768 of work
#: vectors port a reads), 16-bit output words (1 EBR: the logits' fan-in of 128 needs 15
#: bits), the 256-word program (7 EBR: ``prog_compact`` stores 112 of the 128 bits an
#: instruction has, 16 of wbase's 20, 9 of k's 12, no rsel or chain; 128 take 8 blocks), the
#: host link's frame buffer (1) and the Activation unit's delay line of x (1, hw/activation.py
#: ``x_delay="ram"``): 30.
LM_CONFIG = AccelConfig(lanes=32, weight_depth=UP5K_SPRAM_WORDS, scratch_depth=3840,
                        scratch_a_depth=1280, out_bits=16,
                        out_depth=128, prog_depth=256, max_fan_in=256,
                        vector=("activation", "norm", "eltwise"), max_vector=256, ops=LM_OPS,
                        prog_compact=True)
#: :data:`LM_CONFIG` with the Shiftmax unit and SAMPLE: the accelerator of the sampling
#: program.
LM_SAMPLE_CONFIG = dataclasses.replace(LM_CONFIG, vector=LM_CONFIG.vector + ("shiftmax",),
                                       ops=LM_SAMPLE_OPS)
#: :data:`LM_CONFIG` with T3 weights: 40 lanes from the same four 16-bit SPRAM ports
#: (64-bit words of 8 T3 bytes), the issue-9 L=40 T3 configuration.
LM_T3_CONFIG = dataclasses.replace(LM_CONFIG, lanes=40, weight_format="t3")
#: :data:`LM_CONFIG` at 128 lanes with the weights in the ECP5-85F's EBR (the issue-9 ULX3S
#: configuration): 256-bit words, 4,608 of them (the LM takes 4,360: 3,776 of trits, its
#: 192- and 65-row matrices padded to whole 128-row tiles, 520 of the int16 embedding
#: table, 64 of staged constants), 9 x 512 words deep in DP16KD blocks of 512 x 36 bits
#: (72 EBR, derived). The scratchpad is the ISA's whole 4,096 words (12-bit addresses; 4
#: DP16KD blocks, as 3,840 take): 2 norm weights staged from the weight memory, not 4 (142
#: cycles a token fewer, modelled). MATVEC chaining on (``mv_chain``: the gate -> y
#: projections), and chains (``op_chain``: each MLGRU's SILU -> MUL pairs, its f gate's
#: pair into f * h, its state update as a chain of three; 113 program bits), and the Norm
#: unit's between-pass work two bits a cycle (``norm_steps``).
LM_ULX3S_CONFIG = dataclasses.replace(LM_CONFIG, lanes=128, weight_depth=4608,
                                      scratch_depth=4096, mv_chain=True, op_chain=True,
                                      norm_steps=2)
#: The LM's board configurations by lane count (``ternac build --model shakespeare --lanes L``
#: and ``ternac bench lm``): 32 I2 and 40 T3 for the iCEBreaker's SPRAM, 128 for the ULX3S.
LM_CONFIGS = {32: LM_CONFIG, 40: LM_T3_CONFIG, 128: LM_ULX3S_CONFIG}

#: The accelerator of the digits ViT (golden/vit.py): 8 lanes, the vector units attention
#: needs (LayerNorm, GELU, ADD, Shiftmax, DOT/DOTT), its program with REPEAT loops over
#: heads and tokens (99 instructions for the committed d=48 model, 726 unrolled, in its
#: head-major schedule; ternac.lower.compress_program) in a 256-word program memory (8 EBR
#: of 256 x 16 on the UP5K, its fewest for 128-bit words), a 2,304-word scratchpad (9 EBR
#: a copy, 18 for the two read ports; the schedule's live peak is 2,289 words), 5,378
#: weight words (one SPRAM), vectors up to 64 elements: 29 of the UP5K's 30 EBR with the
#: output buffer (2) and the host link's (1).
VIT_CONFIG = AccelConfig(lanes=8, weight_depth=8192, scratch_depth=2304, out_depth=16,
                         prog_depth=256, max_fan_in=128,
                         vector=("activation", "norm", "eltwise", "shiftmax", "dot"),
                         max_vector=64, ops=VIT_OPS)
