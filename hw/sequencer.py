"""Sequencer: fetches the compiled program and drives the streamer, the engine and the
vector units. Executes exactly the semantics of golden/isa.py (the interpreter's spec)."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.isa import CHAIN_FIRST, FIELDS, INSTR_BITS, RSEL_FIELDS, Flag, Op
from ternac.golden.ops import spec as op_spec
from ternac.golden.sampler import U_BITS as SAMPLE_U_BITS, lfsr_leap
from ternac.golden.tritcode import t3_word_bits
from ternac.golden.widths import SCRATCH_BITS
from .eltwise import EltMode, Eltwise
from .engine import TernaryEngine, engine_in_layout
from .mulpool import MulPool
from .requant import Requantizer
from .streamer import PackedWeightStreamer

__all__ = ["Sequencer", "instr_layout", "FETCH_DEPTH"]

#: The instruction word as an Amaranth struct, built from golden.isa.FIELDS (one definition).
instr_layout = data.StructLayout({name: width for name, width in FIELDS})

#: Entries of the operand fetcher's skid buffer (reads in flight included). Three, so a
#: read is issued on the buffer's registered occupancy alone (no same-cycle credit from the
#: consumer's handshake) and the consumer still gets one word a cycle.
FETCH_DEPTH = 3

#: Width of the sequencer's element, row and address counters (ISA fields are 12 bits).
_CNT = 13


def _xor_tree(bits):
    """XOR of a list of 1-bit values (0 for none)."""
    bits = list(bits)
    if not bits:
        return Const(0, 1)
    while len(bits) > 1:
        bits = [bits[i] ^ bits[i + 1] if i + 1 < len(bits) else bits[i]
                for i in range(0, len(bits), 2)]
    return bits[0]


def _lt(v, c: int):
    """``v < c`` for an unsigned Value ``v`` and an integer constant ``c``, as gates: some bit
    ``i`` of ``c`` is 1 where ``v`` has a 0 and the bits above agree. (Yosys builds ``<``,
    ``>`` and their kin on an iCE40 carry chain even against a constant, and a chain whose
    sums go unused takes a logic cell a bit; these gates take a few LUT4s. From 2528511's
    hw/hostlink.py, checked there exhaustively for widths 1-5 against every constant.)"""
    n = len(v)
    if c <= 0:
        return Const(0, 1)
    if c >= 1 << n:
        return Const(1, 1)
    terms = [~v[i] & ((v[i + 1:] == (c >> (i + 1))) if i + 1 < n else Const(1, 1))
             for i in range(n) if (c >> i) & 1]
    return Cat(*terms).any()


def _flag(ins, flag: Flag):
    return ins.flags[flag.bit_length() - 1]


class Sequencer(wiring.Component):
    """Program sequencer with its datapath (PackedWeightStreamer -> TernaryEngine ->
    Requantizer) and the memory ports of the accelerator.

    Operations (see golden/isa.py for the exact semantics; golden/cycles.py gives the exact
    cycle count of each):

    * ``MATVEC``: per tile of ``lanes`` rows one streamer command of ``k`` words; the
      activations ``scratch[src + i]`` arrive through the operand fetcher, so one beat
      (``lanes`` trit-MACs) issues every cycle. Results drain through the requantizer into
      the scratchpad (or, with ``RAW``, into the output buffer) while the next tile
      accumulates. With an epilogue (``epi``, golden/isa.py) the requantizer's output
      streams into the next instruction's vector unit instead (state EPI_DEC registers
      that instruction in the MATVEC's first cycle, while the first weight command
      issues; its ``b`` is read at ``aux + j`` through the second scratch port as row ``j``
      enters the requantizer and delayed to meet it), whose results go to its ``dst``.
      An epilogue ``pair`` (a SIGMOID, golden/isa.py): the requantizer holds each row on
      its output two cycles (``o.ready`` low in the first, ``pr_v`` in the second; the
      stall reaches the engine's drain), the unit takes it in both, the second with
      ``neg``; the results alternate between ``dst`` (``ep_waddr``) and ``aux``
      (``ep_raddr``, which reads nothing for a SIGMOID).
    * Prologue (``pro`` on a reuse RMSNORM, golden/isa.py): the RMSNORM and the MATVEC
      after it as one operation. DECODE and EXEC start the RMSNORM's reads as for VEC;
      state PRO_DEC registers the MATVEC (the word at pc) while the Norm unit keeps the
      RMSNORM's configuration (``vins``); in state PRO the Norm unit's results are tile 0's
      activations (one beat each, in the cycle a result leaves the unit) and are written
      to the RMSNORM's ``dst`` (``ep_waddr``), which the fetcher reads back for tiles 1..
      (its pattern is the MATVEC's from its first wrap on); then EPI_DEC (an epilogue) or
      MATVEC.
    * MUL with ``wb`` (golden/isa.py): ``b`` is a row of int16 halfwords in the weight
      memory at ``wbase``. The operand fetcher's reads address it too (``emb_addr``, loaded
      with ``wbase`` in DECODE, steps past a word with the read of its last halfword), and
      each arriving word's halfword ``emb_b`` (arrivals mod ``word_bits / 16``) takes the
      second scratch port's place in the skid buffer: same cycles as a MUL from scratch.
    * ``ARGMAX``: ``n + 2`` cycles over the output buffer; ties go to the smaller index.
    * ``EMBED``: the row of raw bytes at ``wbase + token * k`` read from the weight memory
      directly (not through the streamer, so it is the same in I2 and T3), one word at a
      time, ``word_bits / 8`` bytes a word, one byte written a cycle (with ``WIDE``, where
      a word holds an even number of bytes: one 16-bit halfword a cycle).
    * ``SAMPLE``: steps the LFSR held in two scratch words, sums the probabilities (pass 1),
      scales the draw, and scans the cumulative sum (pass 2, stops at the hit).
    * ``HALT``: raises ``done``. An unknown opcode halts with ``error``.

    Timing structure (for Fmax): DECODE registers the instruction and, from the program
    memory's output, everything an operation derives from it (the operand addresses, the
    lengths minus one, the segment, pass and row counts and their "last" flags, the
    weight command base, the selected vector unit and its mode), so that in the operation's
    states no read address is computed from the instruction and no count is compared with
    an instruction field. The scratch read addresses come straight from counters (the
    *operand fetcher*): it reads ``a`` (and ``b``) ahead of their consumer into a
    :data:`FETCH_DEPTH`-entry skid buffer, issuing a read whenever the buffer (reads in
    flight included) has room, so the consumer's handshake (the engine's ``ready``, the
    weight stream's ``valid``, a vector unit's ``ready``) only enables registers and never
    reaches a memory address. A vector unit takes a word read in the previous cycle
    directly when the buffer is empty, so a vector op's first element (read in EXEC) enters
    its unit in the first cycle of the VEC state; the engine takes activations from the
    buffer only, joined with their weight word in a beat register, so the lanes' adders
    start at registers (one cycle a MATVEC). Write addresses are counters too (the
    requantizer carries the absolute scratch address as its tag); the FSM's exits test
    registered flags (rows left 0 or 1, last word, last index), ARGMAX compares a registered
    word, and SAMPLE's scan tests a registered probability with a 16-bit compare. The
    state register is one-hot (Yosys ``fsm_encoding``).

    Parameters
    ----------
    lanes, acc_bits : int       engine size (acc_bits from golden.numerics.acc_width)
    prog_depth, scratch_depth, out_depth, weight_depth : int
    vector_units : list of ``(unit, {Op: mode})``
    weight_format : str         ``"i2"`` (default; weight words of ``2 * lanes`` bits) or
                                ``"t3"`` (``8 * lanes / 5`` bits, lanes a multiple of 5):
                                the streamer's format (hw/streamer.py); the engine gets
                                ``lanes`` trits a cycle either way

    Members
    -------
    start : In(1)  pulse; ignored while busy
    busy, done, error : Out(1)  done and error are sticky until the next start
    result : Out(32)   ARGMAX / SAMPLE index
    cycles : Out(32)   cycles from start to done of the last run
    prog_addr/prog_data, scr_*/out_* (1-cycle read latency), w_raddr/w_rdata : memory ports
    scr_raddr2/scr_rdata2 : second scratch read port (the ``b`` operand of vector ops)

    Vector operations (``vector_units``, a list of ``(unit, {Op: mode})``): each unit has the
    stream interface of hw/vector units (``i`` carrying ``a``, ``b``, ``last``; ``o``
    carrying ``y``; config ports ``m``, ``s``, ``m2``, ``s2``, ``mode``; ``passes``). The
    lengths are the op registry's rules (golden.ops: ``in_len``, ``segments``,
    ``out_rows``, ``b_order``), evaluated in DECODE: a pass streams ``e = 0 .. segments *
    in_len - 1`` with ``a = scratch[src + (e mod in_len)]`` and ``b = scratch[aux + e]``
    (``b_order="col"``: element ``i`` of segment ``j`` reads ``b = scratch[aux + i *
    segments + j]``), ``last`` on the final element of each segment; after ``passes``
    passes the ``out_rows`` outputs go to ``scratch[dst + j]`` in order. ``m2`` is
    ``wbase[15:0]`` and ``s2`` is ``k[5:0]`` of the instruction.

    Raises
    ------
    ValueError for an unknown ``weight_format`` or T3 lanes that are not a multiple of 5;
    TypeError for a vector unit op that is not a golden.isa.Op.
    """

    def __init__(self, *, lanes, acc_bits, prog_depth, scratch_depth, out_depth, weight_depth,
                 vector_units=(), weight_format="i2", ops=None, out_bits=32, mv_chain=False,
                 op_chain=False):
        # MATVEC chaining (AccelConfig.mv_chain, golden/isa.py MATVEC): a MATVEC right after
        # a MATVEC streams while the first one's last tile drains.
        self._chain = bool(mv_chain)
        # Chains (AccelConfig.op_chain, golden/isa.py chain): an Activation op's results
        # stream into the Eltwise unit (CH_WAIT / CH_DEC below).
        self._op_chain = bool(op_chain)
        # The operations built (None: every golden.isa.Op); a vector op also needs its unit.
        # An absent opcode halts with ``error`` as an unknown one (and builds no logic).
        self._ops = frozenset(Op) if ops is None else frozenset(Op(op) for op in ops)
        self._vector_units = list(vector_units)
        # The multiplier pool (hw/mulpool.py) the vector units share, one per accelerator
        # (hw.vector_units.vector_units_for), or a pool of the sequencer's own.
        pools = {id(u.mulpool): u.mulpool for u, _ in self._vector_units
                 if getattr(u, "mulpool", None) is not None}
        if len(pools) > 1:
            raise ValueError("the vector units must share one multiplier pool")
        self.mulpool = next(iter(pools.values())) if pools else MulPool()
        for unit, opmodes in self._vector_units:
            for op in opmodes:
                if not isinstance(op, Op):
                    raise TypeError(f"vector unit op {op!r} is not a golden.isa.Op")
        self._vector_units = [(u, {op: md for op, md in om.items() if op in self._ops})
                              for u, om in self._vector_units]
        if weight_format not in PackedWeightStreamer.FORMATS:
            raise ValueError(f"weight format must be one of "
                             f"{', '.join(PackedWeightStreamer.FORMATS)}, not {weight_format!r}")
        self._fmt = weight_format
        self._word_bits = t3_word_bits(lanes) if weight_format == "t3" else 2 * lanes
        self._lanes = lanes
        self._acc_bits = acc_bits
        # Bits of an output-buffer word (AccelConfig.out_bits): out_rdata is that word
        # sign-extended to 32, so ARGMAX compares its low out_bits bits only.
        self._out_bits = out_bits
        self._weight_depth = weight_depth
        self._prog_depth = prog_depth
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(1),
            "result": Out(32), "cycles": Out(32),
            "prog_addr": Out(range(prog_depth)), "prog_data": In(INSTR_BITS),
            "scr_raddr": Out(range(scratch_depth)), "scr_rdata": In(SCRATCH_BITS),
            "scr_raddr2": Out(range(scratch_depth)), "scr_rdata2": In(SCRATCH_BITS),
            "scr_waddr": Out(range(scratch_depth)), "scr_wdata": Out(SCRATCH_BITS),
            "scr_wen": Out(1),
            "out_raddr": Out(range(out_depth)), "out_rdata": In(32),
            "out_waddr": Out(range(out_depth)), "out_wdata": Out(32), "out_wen": Out(1),
            "w_raddr": Out(range(weight_depth)), "w_rdata": In(self._word_bits),
        })

    @property
    def weight_format(self) -> str:
        return self._fmt

    @property
    def word_bits(self) -> int:
        """Bits of a weight word: ``2 * lanes`` (I2) or ``8 * lanes / 5`` (T3)."""
        return self._word_bits

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        sa_bits = len(self.scr_waddr)
        m.submodules.streamer = streamer = PackedWeightStreamer(
            lanes=L, depth=self._weight_depth, fmt=self._fmt)
        m.submodules.engine = engine = TernaryEngine(lanes=L, acc_bits=self._acc_bits)
        # The multiplier pool (self.mulpool), lent to the requantizer, EMBED and SAMPLE too
        # (they never run at once); added to the design after every client, at the end.
        pool = self.mulpool
        for unit, opmodes in self._vector_units:
            # A unit that runs a MATVEC's epilogue works while the requantizer does.
            if any(getattr(op_spec(op), "epilogue", False) for op in opmodes):
                pool.concurrent("requant", unit.pool_client)
        # Tee (golden/isa.py ``tee``): an Eltwise result also streams into the Norm unit's
        # pass 0, whose square then runs beside the Eltwise unit (and, in a MATVEC's
        # epilogue, the requantizer) on a slot of its own (hw/norm.py ``pool_client_sq``).
        norm_unit = next((u for u, om in self._vector_units
                          if Op.RMSNORM in om and hasattr(u, "reuse")), None)
        tee_unit = next((u for u, om in self._vector_units if Op.MUL in om or Op.ADD in om), None)
        tees = norm_unit is not None and tee_unit is not None
        if tees:
            pool.concurrent(norm_unit.pool_client_sq, tee_unit.pool_client)
            pool.concurrent(norm_unit.pool_client_sq, "requant")
        # Chains (golden/isa.py ``chain``): the Activation unit's results, registered beside
        # the scratch read of b (ch_a, ch_v), are the Eltwise unit's a, with the second
        # word's fields (ch_*, registered in CH_DEC); both units (and, in an epilogue, the
        # requantizer; with a tee, the Norm unit's square) run at once.
        act_unit = next((u for u, om in self._vector_units
                         if any(op in om for op in CHAIN_FIRST)), None)
        opc = (self._op_chain and act_unit is not None and tee_unit is not None
               and act_unit is not tee_unit)
        if opc:
            pool.concurrent(act_unit.pool_client, tee_unit.pool_client)
            if tees:
                pool.concurrent(norm_unit.pool_client_sq, act_unit.pool_client)
        ch = Signal()               # a chain runs (from CH_DEC to the operation's end)
        ch_a = Signal(signed(SCRATCH_BITS))
        ch_v = Signal()
        ch_m, ch_s = Signal(16), Signal(6)
        ch_m2, ch_s2 = Signal(16), Signal(6)
        ch_flags = Signal(5)
        # A chain of three (golden/isa.py): the Eltwise unit's results, registered beside
        # port a's read of the third op's b (c3_a, c3_v; c3_addr the read pointer), are a
        # second Eltwise unit's a, with the third word's fields (c3_*, from CH3_DEC). Only
        # behind a MATVEC of one tile, whose reads of port a are over by then.
        elt3 = None
        c3 = Signal()
        if opc:
            elt3 = Eltwise(pool=pool)
            elt3.pool_client = "eltwise3"
            for other in (act_unit.pool_client, tee_unit.pool_client, "requant"):
                pool.concurrent(elt3.pool_client, other)
            if tees:
                pool.concurrent(norm_unit.pool_client_sq, elt3.pool_client)
            c3_a = Signal(signed(SCRATCH_BITS))
            c3_v = Signal()
            c3_addr = Signal(sa_bits)
            c3_m, c3_s = Signal(16), Signal(6)
            c3_m2, c3_s2 = Signal(16), Signal(6)
            c3_flags = Signal(5)
            c3_mode = Signal(EltMode)
        # Prologue (golden/isa.py ``pro``): a reuse RMSNORM's results are tile 0's activations
        # of the MATVEC after it (and are written to its dst, which tiles 1.. read back).
        pro_ok = norm_unit is not None and Op.RMSNORM in self._ops and Op.MATVEC in self._ops
        pro_feed = Signal()     # the fetcher's words go to the Norm unit (the RMSNORM's pass)
        pro_t0 = Signal()       # tile 0 of the MATVEC: its beats take the Norm unit's results
        pro_last = Signal()     # the next tile-0 beat is the last (beats counted in idx)
        tee_on = Signal()       # this instruction tees (its results into the Norm unit)
        tee_pend = Signal()     # a tee's RMSNORM has not finished yet
        nrm_wide = Signal()     # the Norm unit's int16 output (~OUT8 of its RMSNORM)
        emb_mul_en, smp_mul_en = Signal(), Signal()
        has = self._ops             # the operations built (absent ones halt with error)
        emb_mul = pool.client("embed", en=emb_mul_en) if Op.EMBED in has else None
        smp_mul = pool.client("sample", en=smp_mul_en) if Op.SAMPLE in has else None
        # No tag: a MATVEC's rows enter the requantizer in address order (dst, dst + 1, ...;
        # the padding rows past n, which never enter, come last), and leave it in order, so
        # the address of the row on its output is a counter (rq_waddr below), not 12 bits
        # carried through its four stages (48 flip-flops fed by flip-flops, one logic cell
        # each).
        m.submodules.requant = requant = Requantizer(acc_bits=self._acc_bits, tag_bits=0,
                                                     pool=pool)

        pc = Signal(range(self._prog_depth))
        ins = Signal(instr_layout)
        raw_pd = Signal(instr_layout)       # the word on the program memory's output
        pd = Signal(instr_layout)           # that word with the REPEAT offsets added
        m.d.comb += [self.prog_addr.eq(pc), raw_pd.as_value().eq(self.prog_data)]
        # REPEAT (golden/isa.py): the body's pc range, the iterations left after the current
        # one, the stride table (sign-extended to rp_bits) and one offset register an entry
        # (r * stride mod 2^rp_bits). DECODE and EPI_DEC add the offset a field's rsel selects
        # to the word on prog_data, so every address the operation registers is the
        # iteration's (the adders sit between the program memory and the DECODE registers,
        # as the decode of the word did before; no operation state sees them). rp_bits: the
        # bits of a field anything reads (src, dst, aux: 12; wbase: the weight port's
        # wa_bits, and [15:0] as a vector unit's m2), so the sums above are never seen.
        wa_bits = len(self.w_raddr)
        rp_bits = max(16, wa_bits, *(w for f, w in FIELDS if f in RSEL_FIELDS and f != "wbase"))
        rp_active = Signal()
        rp_left = Signal(dict(FIELDS)["n"])
        rp_first = Signal(range(self._prog_depth))
        rp_last = Signal(range(self._prog_depth))
        rp_stride = [Signal(rp_bits, name=f"rp_stride{e}") for e in (1, 2, 3)]
        rp_off = [Signal(rp_bits, name=f"rp_off{e}") for e in (1, 2, 3)]
        m.d.comb += pd.as_value().eq(raw_pd.as_value())
        rp_wrap = Signal()          # the word being decoded is the body's last
        if Op.REPEAT in has:
            for i, name in enumerate(RSEL_FIELDS):
                sel = raw_pd.rsel[2 * i:2 * i + 2]
                off = Mux(sel[1], Mux(sel[0], rp_off[2], rp_off[1]), Mux(sel[0], rp_off[0], 0))
                fld = getattr(pd, name)
                m.d.comb += fld.eq((getattr(raw_pd, name) + off)[:len(fld)])
            m.d.comb += rp_wrap.eq(rp_active & (pc == rp_last))

        def step_pc():
            """pc past the word decoded now: the body's first word again at the end of an
            iteration with iterations left (offsets advanced), else the next word."""
            if Op.REPEAT not in has:
                m.d.sync += pc.eq(pc + 1)
                return
            with m.If(rp_wrap & (rp_left != 0)):
                m.d.sync += [pc.eq(rp_first), rp_left.eq(rp_left - 1)]
                m.d.sync += [o.eq(o + st) for o, st in zip(rp_off, rp_stride)]
            with m.Else():
                m.d.sync += pc.eq(pc + 1)
                with m.If(rp_wrap):
                    m.d.sync += rp_active.eq(0)
                    m.d.sync += [o.eq(0) for o in rp_off]
        raw = _flag(ins, Flag.RAW)
        m.d.comb += [requant.m.eq(ins.m), requant.s.eq(ins.s), requant.relu.eq(_flag(ins, Flag.RELU)),
                     requant.wide.eq(_flag(ins, Flag.WIDE))]
        # The vector units' configuration: the instruction's own fields (registered in
        # DECODE), or a MATVEC's epilogue's (registered in EPI_DEC).
        vins = Signal(instr_layout)
        # Epilogue (golden/isa.py ``epi``): the requantizer's rows stream into the vector
        # unit of the next instruction, b read at aux + j as row j enters the requantizer
        # (ep_raddr) and delayed to meet it at the requantizer's output; the unit's results
        # go to dst + j (ep_waddr).
        epi_ops = [op for _, om in self._vector_units for op in om if op_spec(op).epilogue]
        fuse = Signal()
        ep_raddr, ep_waddr = Signal(sa_bits), Signal(sa_bits)
        # Epilogue pair (golden/isa.py ``pair``, a SIGMOID epilogue): the requantizer holds
        # each row on its output two cycles (o.ready low in the first; its stall reaches
        # the engine's drain), the unit takes it in both, the second (pr_v) with neg; the
        # results alternate (pr_ph: 0 the dst one at ep_waddr, 1 the aux one at ep_raddr,
        # which reads nothing then).
        pair_ok = any(op == Op.SIGMOID for _, om in self._vector_units for op in om) and \
            Op.SIGMOID in self._ops
        pair = Signal()
        pr_v, pr_ph = Signal(), Signal()
        # With op_chain, a pair's second results are written at pr_waddr (ep_raddr is then
        # the chained op's b pointer), and a pair may chain (tw: a twin leaves the unit now).
        pr_waddr = Signal(sa_bits)
        tw = Signal()

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # The FSM is in MATVEC / VEC / an EMBED state: registers set on entry and cleared on
        # exit (not a decode of the state register), since they gate the handshakes.
        in_matvec, in_vec, in_embed = Signal(), Signal(), Signal()

        # --- Decode of the word on prog_data (registered in DECODE) ----------------------
        vec_ops = [op for _, om in self._vector_units for op in om]
        col_ops = [op for op in vec_ops if op_spec(op).b_order == "col"]
        d_mv, d_vec, d_col, d_smp = Signal(), Signal(), Signal(), Signal()
        d_len = Signal(_CNT)       # length of a segment: k (MATVEC), in_len (vector op)
        d_segs = Signal(_CNT)      # segments a pass (vector op)
        d_rows = Signal(_CNT)      # rows written: n (MATVEC), out_rows (vector op)
        d_passes = Signal(4)
        with m.Switch(pd.op):
            # SAMPLE and ARGMAX count their n elements, EMBED its k words and n bytes, with
            # the fetcher's element counter and the row counter (idle in those ops).
            if Op.SAMPLE in has:
                with m.Case(Op.SAMPLE):
                    m.d.comb += [d_smp.eq(1), d_len.eq(pd.n)]
            if Op.ARGMAX in has:
                with m.Case(Op.ARGMAX):
                    m.d.comb += d_len.eq(pd.n)
            if Op.EMBED in has:
                with m.Case(Op.EMBED):
                    m.d.comb += [d_len.eq(pd.k), d_rows.eq(pd.n)]
            with m.Case(Op.MATVEC):
                m.d.comb += [d_mv.eq(1), d_len.eq(pd.k), d_rows.eq(pd.n), d_passes.eq(1)]
            for unit, opmodes in self._vector_units:
                for op in opmodes:
                    sp = op_spec(op)
                    with m.Case(op):
                        # reuse (a unit with a reuse port): the final pass alone.
                        passes = (Mux(pd.reuse, 1, unit.passes)
                                  if sp.reuse and hasattr(unit, "reuse") else unit.passes)
                        m.d.comb += [d_vec.eq(1), d_passes.eq(passes),
                                     d_len.eq(sp.in_len(pd.n, pd.k)),
                                     d_segs.eq(sp.segments(pd.n, pd.k)),
                                     d_rows.eq(sp.out_rows(pd.n, pd.k)),
                                     d_col.eq(sp.b_order == "col")]

        # --- Operand fetcher: a = scratch[a_addr], b = scratch[b_addr], counters only ------
        f_active = Signal()        # reads left to issue
        f_mv = Signal()            # segments are tiles of L rows (MATVEC)
        f_col = Signal()           # b read by column
        a_base, a_addr = Signal(sa_bits), Signal(sa_bits)
        b_base, b_addr, b_col = Signal(sa_bits), Signal(sa_bits), Signal(sa_bits)
        f_len_m1 = Signal(_CNT)
        f_len_is1 = Signal()
        f_jleft = Signal(_CNT)     # elements of the segment after the next read
        f_jlast = Signal()         # the next read ends a segment
        f_segs = Signal(_CNT)
        f_segs_is1 = Signal()
        f_sleft = Signal(_CNT + 1)  # segments (rows, MATVEC) left in the pass, current included
        f_slast = Signal()
        f_pleft = Signal(4)
        f_plast = Signal()

        held = Signal(range(FETCH_DEPTH + 1))          # words in the skid buffer
        inflight = Signal()                            # a read issued last cycle
        inflight_last = Signal()
        slots = [Signal(2 * SCRATCH_BITS + 1, name=f"fetch_slot{s}") for s in range(FETCH_DEPTH)]
        # A MUL with wb (golden/isa.py): b is halfword emb_b of the weight word read beside
        # a (the fetcher's reads address the weight memory too, through emb_addr), taken
        # in place of the second scratch port's word as it arrives.
        wb_hpw = self._word_bits // 16 if self._word_bits % 16 == 0 else 0
        wb_ok = bool(wb_hpw) and any(Op.MUL in om for _, om in self._vector_units)
        wb_half = Signal(SCRATCH_BITS)      # halfword emb_b of w_rdata (driven below)
        b_in = Mux(ins.wb, wb_half, self.scr_rdata2) if wb_ok else self.scr_rdata2
        word_in = Cat(self.scr_rdata, b_in, inflight_last)
        head = Signal(2 * SCRATCH_BITS + 1)
        x_valid = Signal()
        # A vector unit may take the word read last cycle straight from the read port (so
        # its first element enters in the first VEC cycle); the engine takes words from the
        # buffer only, so its activation comes from a register: the activations are read
        # well ahead of the first weight word, and three entries keep one beat a cycle.
        m.d.comb += [x_valid.eq((held != 0) | (inflight & ~in_matvec)),
                     head.eq(Mux(held != 0, slots[0], word_in))]
        x_a, x_b, x_last = head[:SCRATCH_BITS], head[SCRATCH_BITS:2 * SCRATCH_BITS], head[-1]
        mv_valid = held != 0
        mv_x, mv_last = slots[0][:8], slots[0][-1]
        take = Signal()            # the consumer takes the head this cycle (set below)
        full = (held == FETCH_DEPTH) | ((held == FETCH_DEPTH - 1) & inflight)
        issue = Signal()
        m.d.comb += issue.eq(f_active & ~full)
        push = inflight & ~((held == 0) & take)
        pop = take & (held != 0)
        m.d.sync += [inflight.eq(issue), inflight_last.eq(f_jlast)]
        with m.If(pop):
            # Shift down; the arriving word (if any) lands behind the remaining ones.
            for s in range(FETCH_DEPTH - 1):
                m.d.sync += slots[s].eq(Mux(~_lt(held, s + 2), slots[s + 1], word_in))
            m.d.sync += held.eq(held - 1 + push)
        with m.Elif(push):
            for s in range(FETCH_DEPTH):
                with m.If(held == s):
                    m.d.sync += slots[s].eq(word_in)
            m.d.sync += held.eq(held + 1)

        with m.If(issue):
            with m.If(f_jlast):
                m.d.sync += [f_jleft.eq(f_len_m1), f_jlast.eq(f_len_is1), a_addr.eq(a_base)]
                with m.If(f_slast):
                    with m.If(f_plast):
                        m.d.sync += f_active.eq(0)
                    with m.Else():
                        m.d.sync += [f_pleft.eq(f_pleft - 1), f_plast.eq(f_pleft == 2),
                                     f_sleft.eq(f_segs), f_slast.eq(f_segs_is1),
                                     b_addr.eq(b_base), b_col.eq(b_base)]
                with m.Else():
                    m.d.sync += [f_sleft.eq(f_sleft - Mux(f_mv, L, 1)),
                                 f_slast.eq(Mux(f_mv, _lt(f_sleft, 2 * L + 1), f_sleft == 2))]
                    if col_ops:
                        m.d.sync += [b_addr.eq(Mux(f_col, b_col + 1, b_addr + 1)),
                                     b_col.eq(b_col + 1)]
                    else:
                        m.d.sync += b_addr.eq(b_addr + 1)
            with m.Else():
                m.d.sync += [f_jleft.eq(f_jleft - 1), f_jlast.eq(f_jleft == 1),
                             a_addr.eq(a_addr + 1)]
                if col_ops:
                    m.d.sync += b_addr.eq(Mux(f_col, b_addr + f_segs, b_addr + 1))
                else:
                    m.d.sync += b_addr.eq(b_addr + 1)
        if opc:
            # (a chain of three reads its third op's b through port a as the Eltwise unit's
            # results leave it; the MATVEC, of one tile, has read its last input word then)
            m.d.comb += self.scr_raddr.eq(Mux(c3 & tee_unit.o.valid, c3_addr, a_addr))
        else:
            m.d.comb += self.scr_raddr.eq(a_addr)
        # The Norm unit's weight w is read late, through ep_raddr (hw/norm.py ``late_w``):
        # one beat a w_next, each read in the cycle before its beat forms w * y, so it arrives
        # on the read port then instead of riding with x and waiting in 7 x 16 flip-flops.
        # The Norm unit is never stalled (below; o.ready = 1, no bias), so the beat is in
        # that stage the cycle after w_next. Port 2 is the Norm's while it is selected: in
        # VEC (which exits once its last result is written) and a prologue's tile 0 (which
        # ends with its last result; the MATVEC's tiles 1.. do not read port 2, and an
        # epilogue's EPI_DEC deselects it); a tee's pass 0 (another unit selected) reads no
        # w. ep_raddr is loaded with aux in DECODE (and again in EPI_DEC for an epilogue).
        nw_unit = next((u for u, _ in self._vector_units if hasattr(u, "w_next")), None)
        nw_sel = Signal()       # the Norm unit is selected (set below)
        if nw_unit is not None:
            nw_unit.late_w = True
            with m.If(nw_unit.w_next):
                m.d.sync += ep_raddr.eq(ep_raddr + 1)
            m.d.comb += nw_unit.w_late.eq(self.scr_rdata2)
        if epi_ops or nw_unit is not None:
            m.d.comb += self.scr_raddr2.eq(Mux(fuse | nw_sel | ch, ep_raddr, b_addr))
        else:
            m.d.comb += self.scr_raddr2.eq(b_addr)

        # --- MATVEC -------------------------------------------------------------------
        # Weight addresses as wide as the weight port (wa_bits): the streamer's and EMBED's
        # addresses reach the memory only through it, so the bits above are never seen.
        cmd_base = Signal(wa_bits)
        cmd_left = Signal(_CNT + 1)   # rows not yet commanded
        cmd_pend = Signal()
        # The write pointer, dst + index: the row draining from the engine (MATVEC; the
        # requantizer's output row has rq_waddr), the next output (vector ops), the next
        # byte (EMBED).
        w_addr = Signal(sa_bits)
        # The address of the row on the requantizer's output: dst, plus one for every row
        # it has handed on (a pair's row once, when its second cycle takes it).
        rq_waddr = Signal(sa_bits)
        dr_left = Signal(_CNT)
        in_range = Signal()           # that row is < n (else padding, dropped)
        out_left = Signal(_CNT)       # rows still to write (MATVEC and vector ops)
        ol_is0, ol_is1 = Signal(), Signal()   # out_left == 0, == 1 (registered: FSM exits)

        # Weight commands: one per tile, k words each, issued ahead (the streamer buffers).
        # Chaining: the weight count of the MATVEC streaming (cmd_k), which runs ahead of
        # the one draining (ins); the drain's lanes left (dt_left, tiles of L), ``chained``
        # (the next MATVEC streams), ``hold`` (the first's lanes are out: the second's
        # rows wait in the engine until its own fields are registered, MV_SWAP / EPI_DEC).
        chain = self._chain and Op.MATVEC in self._ops
        chained, hold = Signal(), Signal()
        dt_left = Signal(_CNT + 1)
        if chain:
            cmd_k = Signal(len(ins.k))
        else:
            cmd_k = ins.k
        m.d.comb += [streamer.cmd.payload.base.eq(cmd_base),
                     streamer.cmd.payload.count.eq(cmd_k),
                     streamer.cmd.valid.eq(in_matvec & cmd_pend)]
        with m.If(streamer.cmd.valid & streamer.cmd.ready):
            m.d.sync += [cmd_base.eq(cmd_base + cmd_k), cmd_left.eq(cmd_left - L),
                         cmd_pend.eq(~_lt(cmd_left, L + 1))]

        # Beats: an activation from the fetcher and a weight word from the streamer, joined
        # in a beat register in front of the engine, so the lanes' adders start at
        # registers (not at the streamer FIFO's read multiplexer). One cycle an instruction;
        # the register takes the next beat in the cycle the engine takes its beat.
        bt_valid = Signal()
        bt = Signal(engine_in_layout(L))
        bt_ready = ~bt_valid | engine.i.ready
        if pro_ok:
            # A prologue's tile 0: the activation is the Norm unit's result (OUT8: int8).
            src_valid = Mux(pro_t0, norm_unit.o.valid, mv_valid)
            src_x = Mux(pro_t0, norm_unit.o.payload.y[:8], mv_x)
            src_last = Mux(pro_t0, pro_last, mv_last)
        else:
            src_valid, src_x, src_last = mv_valid, mv_x, mv_last
        up_valid = in_matvec & src_valid & streamer.o.valid
        m.d.comb += [
            streamer.o.ready.eq(in_matvec & src_valid & bt_ready),
            engine.i.valid.eq(bt_valid),
            engine.i.payload.eq(bt),
        ]
        with m.If(bt_ready):
            m.d.sync += [bt_valid.eq(up_valid), bt.x.eq(src_x), bt.nz.eq(streamer.o.payload.nz),
                         bt.neg.eq(streamer.o.payload.neg), bt.last.eq(src_last)]
        fire = up_valid & bt_ready
        pro_fire = Signal()     # a tile-0 beat of a prologue (the Norm unit's result) fires
        pro_take = Signal()     # the Norm unit takes a fetched word (the RMSNORM's pass)
        if pro_ok:
            m.d.comb += [pro_fire.eq(fire & pro_t0),
                         pro_take.eq(pro_feed & mv_valid & norm_unit.i.ready)]
            with m.If(pro_take & mv_last):
                m.d.sync += pro_feed.eq(0)

        # Writeback: lane results in order; rows past n are padding and dropped.
        go = ~hold if chain else Const(1)     # (no hold without mv_chain)
        m.d.comb += [
            requant.i.valid.eq(engine.o.valid & in_range & ~raw & go),
            requant.i.payload.acc.eq(engine.o.payload.acc),
            engine.o.ready.eq((raw | ~in_range | requant.i.ready) & go),
            requant.o.ready.eq(~pair | pr_v),
            self.scr_waddr.eq(rq_waddr),
            self.scr_wdata.eq(requant.o.payload.y),
            self.scr_wen.eq(requant.o.valid & ~fuse),
            self.out_waddr.eq(w_addr),
            self.out_wdata.eq(engine.o.payload.acc),         # sign-extended to 32 bits
            self.out_wen.eq(engine.o.valid & in_range & raw & go),
        ]
        with m.If(engine.o.valid & engine.o.ready):
            m.d.sync += [w_addr.eq(w_addr + 1), dr_left.eq(dr_left - 1),
                         in_range.eq(in_range & (dr_left != 1))]
            if chain:
                with m.If(engine.o.payload.last):
                    m.d.sync += dt_left.eq(dt_left - L)
                    with m.If(chained & _lt(dt_left, L + 1)):
                        m.d.sync += hold.eq(1)
        # (Before the FSM: DECODE's load of dst wins; the requantizer is empty there.)
        with m.If(requant.o.valid & requant.o.ready):
            m.d.sync += rq_waddr.eq(rq_waddr + 1)
        ep_b = Signal(SCRATCH_BITS)     # b of the row on the requantizer's output
        if epi_ops:
            # The requantizer never stalls (o.ready = 1; an epilogue's unit is always ready),
            # so a row that enters it leaves LATENCY cycles later: b is read LATENCY - 1
            # cycles after its row enters (ep_raddr steps with the entry delayed so far) and
            # arrives on the read port with the row. A delay line of the entries (one bit a
            # stage), not of b: a register fed by a memory or another register takes a logic
            # cell of its own. (b is disjoint from the results or the same words, isa.py, so
            # the later read sees what the earlier one did.)
            ent = requant.i.valid & requant.i.ready
            for i in range(Requantizer.LATENCY - 1):
                nxt = Signal(name=f"ep_ent{i}")
                m.d.sync += nxt.eq(ent)
                ent = nxt
            with m.If(ent & ~pair & ~ch):
                m.d.sync += ep_raddr.eq(ep_raddr + 1)
            m.d.comb += ep_b.eq(self.scr_rdata2)
        wrote = Signal()
        vo_valid = Signal()
        # (a pair's row is written when its second result is)
        # (a chained pair's row when its chained result is: vo_valid is then the Eltwise's)
        m.d.comb += wrote.eq(Mux(raw, engine.o.valid & in_range,
                                 Mux(fuse, vo_valid & (~pair | pr_ph | (ch if opc else 0)),
                                     requant.o.valid)))
        if pair_ok and epi_ops:
            # A pair holds each requantized row two cycles (o.ready low in the first; the
            # requantizer's stall reaches the engine): the second, pr_v, with neg.
            m.d.sync += pr_v.eq(pair & requant.o.valid & ~pr_v)
        rows_done = ol_is0 | (ol_is1 & wrote)

        def count_row():
            m.d.sync += [out_left.eq(out_left - 1), ol_is0.eq(ol_is1), ol_is1.eq(out_left == 2)]

        with m.If(in_matvec & wrote):
            count_row()

        # --- ARGMAX state -------------------------------------------------------------
        idx = Signal(_CNT)       # ARGMAX: index arriving on out_rdata; SAMPLE: index of p_in
        # The out address is a_addr (src from DECODE; the fetcher is idle in ARGMAX).
        m.d.comb += self.out_raddr.eq(a_addr)
        ajd = Signal(_CNT)       # index whose value is on out_rdata now
        adv = Signal()
        a_end = Signal()         # ajd == n - 1
        n_zero = Signal()
        ob = self._out_bits
        best = Signal(signed(ob))
        bidx = Signal(_CNT)
        # The word of index ajd, registered from the read port (the reads start in EXEC, a
        # cycle ahead), so the compare starts at a register; kept inverted, so that
        # "value > best" is the sign of best + ~value + 1: one (out_bits + 1)-bit carry chain
        # from two registers (the carry-in as a low bit), with no inverter in front of it.
        value_n = Signal(ob)
        m.d.sync += value_n.eq(~self.out_rdata[:ob])
        gt = Signal(ob + 2)
        m.d.comb += gt.eq(Cat(1, best, best[-1]) + Cat(1, value_n, value_n[-1]))
        a_first = Signal()       # ajd == 0
        take_max = adv & (a_first | gt[-1])     # first, or value > best
        with m.If(take_max):     # adv is high only in the ARGMAX state
            m.d.sync += [best.eq(~value_n), bidx.eq(ajd)]
        new_idx = Mux(take_max, ajd, bidx)

        # --- Vector ops -----------------------------------------------------------------
        vfire = Signal()
        vo_y = Signal(SCRATCH_BITS)
        unit_decode = []
        unit_names = {"streamer", "engine", "requant"}
        for unit, opmodes in self._vector_units:
            # Named after the unit's class (activation, norm, eltwise, ...): netlists and
            # boards.cells then say which unit a cell is in (anonymous, they were U$n).
            # Named submodules elaborate before the anonymous pool, as the pool needs.
            name = base = type(unit).__name__.lower()
            while name in unit_names:               # two units of one class: dot_2, ...
                name = f"{base}_{len(unit_names)}"
            unit_names.add(name)
            m.submodules[name] = unit
            # sel: the instruction runs on this unit; registered (with the unit's mode) in
            # DECODE, so no opcode decode sits on the VEC state's handshakes.
            sel = Signal(name=f"sel_{type(unit).__name__.lower()}")
            unit_decode.append((unit, opmodes, sel))
            if unit is nw_unit:
                m.d.comb += nw_sel.eq(sel)
            is_ch2 = opc and unit is tee_unit       # the Eltwise unit: a chain's second op
            if is_ch2:
                m.d.comb += [unit.m.eq(Mux(ch, ch_m, vins.m)), unit.s.eq(Mux(ch, ch_s, vins.s))]
            else:
                m.d.comb += [unit.m.eq(vins.m), unit.s.eq(vins.s)]
            # Config ports a unit may have: the dyadic pairs, Flag.NEG, int16 output unless
            # Flag.OUT8; a norm's bias stream and eps are unused by the ISA (0).
            if hasattr(unit, "m2") and is_ch2:
                m.d.comb += [unit.m2.eq(Mux(ch, ch_m2, vins.wbase[:16])),
                             unit.s2.eq(Mux(ch, ch_s2, vins.k[:6]))]
            elif hasattr(unit, "m2"):
                m.d.comb += [unit.m2.eq(vins.wbase[:16]), unit.s2.eq(vins.k[:6])]
            if unit is norm_unit and tees:
                # A tee's pass 0 is the Eltwise result as written (no NEG); the output width
                # (used at the end of the between-pass work, which may finish while other
                # instructions run) is the tee's RMSNORM's, registered with the tee.
                m.d.comb += [unit.neg.eq(_flag(vins, Flag.NEG) & ~tee_on),
                             unit.wide.eq(nrm_wide)]
            else:
                if hasattr(unit, "neg") and pair_ok and Op.SIGMOID in opmodes:
                    m.d.comb += unit.neg.eq(_flag(vins, Flag.NEG) | pr_v)   # a pair's twin
                elif hasattr(unit, "neg"):
                    m.d.comb += unit.neg.eq(Mux(ch, ch_flags[3], _flag(vins, Flag.NEG)) if is_ch2
                                            else _flag(vins, Flag.NEG))
                if hasattr(unit, "wide"):
                    m.d.comb += unit.wide.eq(~Mux(ch, ch_flags[2], _flag(vins, Flag.OUT8)) if is_ch2
                                             else ~_flag(vins, Flag.OUT8))
            if hasattr(unit, "c"):
                m.d.comb += unit.c.valid.eq(0)
            if hasattr(unit, "eps"):
                m.d.comb += unit.eps.eq(0)
            if hasattr(unit, "bias_en"):
                m.d.comb += unit.bias_en.eq(0)
            if hasattr(unit, "reuse"):
                # A tee's RMSNORM streams pass 1 after the unit's own work (not ``skip``).
                m.d.comb += unit.reuse.eq(vins.reuse & ~tee_pend if tees else vins.reuse)
            if any(op_spec(op).epilogue for op in opmodes) and pair_ok and Op.SIGMOID in opmodes:
                # An epilogue unit that runs a pair: a row, then its negation (pr_v).
                m.d.comb += [
                    unit.i.payload.a.eq(Mux(fuse, requant.o.payload.y, x_a.as_signed())),
                    unit.i.payload.b.eq(Mux(fuse, ep_b, x_b).as_signed()),
                    unit.i.payload.last.eq(x_last & ~fuse),
                    unit.i.valid.eq(((in_vec & x_valid) | (fuse & requant.o.valid)) & sel),
                ]
            elif is_ch2:
                # The Eltwise unit, an epilogue unit that is also a chain's second: fed from
                # the Activation unit's registered results (ch_a) and port b's word.
                m.d.comb += [
                    unit.i.payload.a.eq(Mux(ch, ch_a, Mux(fuse, requant.o.payload.y,
                                                          x_a.as_signed()))),
                    unit.i.payload.b.eq(Mux(fuse | ch, ep_b, x_b).as_signed()),
                    unit.i.payload.last.eq(x_last & ~fuse & ~ch),
                    unit.i.valid.eq(Mux(ch, ch_v, ((in_vec & x_valid) | (fuse & requant.o.valid))
                                        & sel)),
                ]
            elif any(op_spec(op).epilogue for op in opmodes):
                # An epilogue unit: fed from the requantizer while a fused MATVEC runs.
                m.d.comb += [
                    unit.i.payload.a.eq(Mux(fuse, requant.o.payload.y, x_a.as_signed())),
                    unit.i.payload.b.eq(Mux(fuse, ep_b, x_b).as_signed()),
                    unit.i.payload.last.eq(x_last & ~fuse),
                    unit.i.valid.eq(((in_vec & x_valid) | (fuse & requant.o.valid)) & sel),
                ]
            elif unit is norm_unit and tees:
                # Pass 0 teed from the Eltwise unit's results as they are written (the Norm
                # unit is then streaming pass 0 and always ready: its output is idle).
                m.d.comb += [
                    unit.i.payload.a.eq(Mux(tee_on, tee_unit.o.payload.y, x_a.as_signed())),
                    unit.i.payload.b.eq(x_b.as_signed()),
                    unit.i.payload.last.eq(Mux(tee_on, ol_is1, x_last)),
                    unit.i.valid.eq((in_vec & x_valid & sel) | (tee_on & tee_unit.o.valid)
                                    | (pro_feed & mv_valid)),
                ]
            elif unit is norm_unit:
                m.d.comb += [
                    unit.i.payload.a.eq(x_a.as_signed()),
                    unit.i.payload.b.eq(x_b.as_signed()),
                    unit.i.payload.last.eq(x_last),
                    unit.i.valid.eq((in_vec & x_valid & sel) | (pro_feed & mv_valid)),
                ]
            else:
                m.d.comb += [
                    unit.i.payload.a.eq(x_a.as_signed()),
                    unit.i.payload.b.eq(x_b.as_signed()),
                    unit.i.payload.last.eq(x_last),
                    unit.i.valid.eq(in_vec & x_valid & sel),
                ]
            # Never stalled, a prologue's Norm unit included (so it has no pipeline enable
            # logic): in tile 0 every result meets its weight word and a ready engine, since
            # the engine is empty (the previous MATVEC exits once it has drained) and the
            # streamer holds tile 0's first word from cycle 4 + W of the pair on (the first
            # result leaves the unit in cycle 16 or later; hw/streamer.py keeps a word its
            # sink does not take) and then streams one a cycle.
            m.d.comb += unit.o.ready.eq(1)
            with m.If(sel & unit.i.valid & unit.i.ready & in_vec):
                m.d.comb += vfire.eq(1)
            # (a chain writes the Eltwise unit's results, not the Activation unit's)
            if is_ch2:
                out_sel = (sel | ch) & ~c3
            elif opc and unit is act_unit:
                out_sel = sel & ~ch
            else:
                out_sel = sel
            with m.If(out_sel & unit.o.valid):
                m.d.comb += [vo_valid.eq(1), vo_y.eq(unit.o.payload.y)]
        if opc:
            # The link: the Activation unit's result, registered while port b reads the
            # second op's b at ep_raddr (aux', from CH_DEC), so the two meet at the Eltwise
            # unit's input a cycle later (golden/cycles.py CHAIN_LINK_CYCLES).
            # (a chained pair's twins do not stream on: tw)
            if pair_ok:
                m.d.comb += tw.eq(pair & pr_ph & act_unit.o.valid)
            m.d.sync += [ch_v.eq(ch & act_unit.o.valid & ~tw), ch_a.eq(act_unit.o.payload.y)]
            with m.If(ch & act_unit.o.valid & ~tw):
                m.d.sync += ep_raddr.eq(ep_raddr + 1)
            # The second link (a chain of three): the Eltwise unit's result, registered while
            # port a reads the third op's b, meet at the second Eltwise unit's input.
            m.submodules.eltwise3 = elt3
            m.d.sync += [c3_v.eq(c3 & tee_unit.o.valid), c3_a.eq(tee_unit.o.payload.y)]
            with m.If(c3 & tee_unit.o.valid):
                m.d.sync += c3_addr.eq(c3_addr + 1)
            neg_bit, out8_bit = int(Flag.NEG).bit_length() - 1, int(Flag.OUT8).bit_length() - 1
            m.d.comb += [
                elt3.i.payload.a.eq(c3_a), elt3.i.payload.b.eq(self.scr_rdata.as_signed()),
                elt3.i.payload.last.eq(0), elt3.i.valid.eq(c3_v), elt3.o.ready.eq(1),
                elt3.m.eq(c3_m), elt3.s.eq(c3_s), elt3.m2.eq(c3_m2), elt3.s2.eq(c3_s2),
                elt3.mode.eq(c3_mode), elt3.neg.eq(c3_flags[neg_bit]),
                elt3.wide.eq(~c3_flags[out8_bit]),
            ]
            with m.If(c3 & elt3.o.valid):
                m.d.comb += [vo_valid.eq(1), vo_y.eq(elt3.o.payload.y)]
        m.d.comb += take.eq((fire & ~pro_t0) | vfire | pro_take)

        # --- EMBED: a row of raw bytes read from the weight memory directly --------------
        bpw = self._word_bits // 8
        tok = Signal(SCRATCH_BITS)
        emb_addr = Signal(wa_bits)
        emb_b = Signal(range(max(bpw, 2)))
        emb_bend = Signal()            # emb_b == bpw - 1
        k_zero = Signal()
        emb_byte = Signal(SCRATCH_BITS)
        # With WIDE (a word of an even number of bytes): 16-bit halfwords, one a cycle.
        hpw = bpw // 2 if bpw % 2 == 0 else 0
        emb_wide = _flag(ins, Flag.WIDE) if hpw else Const(0)
        byte = self.w_rdata.word_select(emb_b, 8).as_signed()
        if hpw:
            m.d.comb += wb_half.eq(self.w_rdata.word_select(emb_b, 16))
            m.d.comb += emb_byte.eq(Mux(emb_wide, wb_half, byte))
        else:
            m.d.comb += emb_byte.eq(byte)
        if wb_ok:
            # MUL wb: emb_b is the halfword index of the word arriving now (arrivals mod H,
            # from 0 in DECODE); the read issued now is element arrivals + inflight, so the
            # address steps past a word when that element is the word's last.
            H = wb_hpw
            if H > 1:
                with m.If(ins.wb & inflight):
                    m.d.sync += emb_b.eq(Mux(emb_b == H - 1, 0, emb_b + 1))
            last_h = Const(1) if H == 1 else Mux(inflight, emb_b == H - 2, emb_b == H - 1)
            with m.If(ins.wb & issue & last_h):
                m.d.sync += emb_addr.eq(emb_addr + 1)

        def emb_bend_next(b):
            """emb_bend after emb_b = b: the last byte (halfword) of the word is next."""
            by = (b == bpw - 2) if bpw >= 2 else Const(0)
            if not hpw:
                return by
            return Mux(emb_wide, (b == hpw - 2) if hpw >= 2 else Const(0), by)

        emb_bend_first = Mux(emb_wide, hpw == 1, bpw == 1) if hpw else Const(int(bpw == 1))
        m.d.comb += self.w_raddr.eq(Mux(in_embed | (ins.wb if wb_ok else 0), emb_addr,
                                        streamer.mem_raddr))
        m.d.comb += streamer.mem_rdata.eq(self.w_rdata)

        # --- SAMPLE: LFSR draw over Q15 probabilities (golden/sampler.py) ---------------
        lfsr = Signal(32)
        lfsr_next = Signal(32)
        joined = Signal(32)
        m.d.comb += joined.eq(Cat(self.scr_rdata, self.scr_rdata2))
        # STEPS_PER_DRAW LFSR steps (golden.sampler.lfsr_leap) are linear over GF(2): each
        # bit of the result is the XOR of a fixed set of state bits, found here by leaping
        # each unit vector, so the network is one balanced XOR tree a bit (not 16 steps of
        # multiplexers deep).
        cols = [lfsr_leap(1 << i) for i in range(32)]
        m.d.comb += lfsr_next.eq(Cat(*[
            _xor_tree([joined[i] for i in range(32) if (cols[i] >> b) & 1]) for b in range(32)]))
        # SAMPLE reads through the fetcher's address registers (idle for SAMPLE): a_addr and
        # b_addr are the LFSR words' addresses from DECODE, then a_addr walks the
        # probabilities, so scr_raddr is always a register. idx is the index of the
        # probability on scr_rdata; f_jleft = n - 1 - idx and f_jlast (f_jleft == 0),
        # f_len_m1 = n - 1 and f_len_is1 come from DECODE.
        # sacc is the sum of pass 1 and then, in pass 2, rem = thr - (p[0] + ... +
        # p[idx - 1]): the hit test "cum + p > thr" is "p > rem", and as rem >= 0 before the
        # hit and p < 2^16, "rem < 2^16 and rem[15:0] < p": a 16-bit compare and a flag
        # registered with rem. The scan tests a registered p[idx] while p[idx + 1] arrives
        # (the reads run two ahead from THR on), so the test starts at a register.
        sacc = Signal(signed(30))
        rem_next = Signal(signed(30))
        rem_small = Signal()       # rem < 2^16
        p_reg = Signal(16)
        sidx = Signal(_CNT)
        p_in = Signal(16)
        hit = Signal()
        m.d.comb += [p_in.eq(self.scr_rdata), rem_next.eq(sacc - p_reg),
                     hit.eq(rem_small & (sacc[:16] < p_reg))]

        if tees:
            norm_ops = [op for u, om in self._vector_units if u is norm_unit for op in om]
            norm_sel = next(sel for u, _, sel in unit_decode if u is norm_unit)
            rms_mode = next(om for u, om in self._vector_units if u is norm_unit)[Op.RMSNORM]

            def tee_decode(is_norm=None):
                """In DECODE / EPI_DEC: a tee (pd.tee) sets the Norm unit up for its pass 0
                (RMSNORM mode, the output width of the RMSNORM that follows); a Norm-unit op
                sets that width from its own OUT8."""
                with m.If(pd.tee):
                    m.d.sync += [tee_on.eq(1), tee_pend.eq(1), nrm_wide.eq(~pd.tee8)]
                    if hasattr(norm_unit, "mode"):
                        m.d.sync += norm_unit.mode.eq(rms_mode)
                if is_norm is not None:
                    with m.Elif(is_norm):
                        m.d.sync += nrm_wide.eq(~_flag(pd, Flag.OUT8))

        def vec_next():
            """EXEC of a vector op: to VEC, or (a chain's first op) to CH_DEC."""
            if opc:
                with m.If(ins.chain):
                    m.next = "CH_DEC"
                with m.Else():
                    m.next = "VEC"
            else:
                m.next = "VEC"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.cycles.eq(0), rp_active.eq(0), tee_on.eq(0), tee_pend.eq(0),
                                 pro_feed.eq(0), pro_t0.eq(0), ch.eq(0), c3.eq(0)]
                    m.d.sync += [o.eq(0) for o in rp_off]
                    m.next = "FETCH"
            # FETCH only after start: prog_addr is pc (combinational) and pc changes only at
            # the edge that ends DECODE or EPI_DEC, so from the cycle after EXEC on the word
            # at pc is on prog_data; every operation state goes straight to DECODE.
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                # Register the instruction and what its operation derives from it.
                n_pos = pd.n != 0
                m.d.sync += [
                    ins.as_value().eq(pd.as_value()), vins.as_value().eq(pd.as_value()),
                    a_base.eq(pd.src), b_base.eq(pd.aux), b_col.eq(pd.aux),
                    a_addr.eq(Mux(d_smp, pd.aux, pd.src)), b_addr.eq(pd.aux + d_smp),
                    w_addr.eq(pd.dst), rq_waddr.eq(pd.dst), ep_waddr.eq(pd.dst),
                    ep_raddr.eq(pd.aux),
                    f_active.eq((d_mv | d_vec) & n_pos), f_mv.eq(d_mv), f_col.eq(d_col),
                    f_len_m1.eq(d_len - 1), f_len_is1.eq(d_len == 1),
                    f_jleft.eq(d_len - 1), f_jlast.eq(d_len == 1),
                    f_segs.eq(d_segs), f_segs_is1.eq(d_segs == 1),
                    f_sleft.eq(Mux(d_mv, pd.n, d_segs)),
                    f_slast.eq(Mux(d_mv, _lt(pd.n, L + 1), d_segs == 1)),
                    f_pleft.eq(d_passes), f_plast.eq(d_passes == 1),
                    out_left.eq(d_rows), ol_is0.eq(d_rows == 0), ol_is1.eq(d_rows == 1),
                    n_zero.eq(pd.n == 0), k_zero.eq(pd.k == 0),
                    cmd_base.eq(pd.wbase), cmd_left.eq(pd.n), cmd_pend.eq(d_mv & n_pos),
                    dr_left.eq(pd.n), in_range.eq(n_pos),
                ]
                if chain:
                    m.d.sync += [cmd_k.eq(pd.k), dt_left.eq(pd.n)]
                for unit, opmodes, sel in unit_decode:
                    m.d.sync += sel.eq(0)
                    with m.Switch(pd.op):
                        for op, mode in opmodes.items():
                            with m.Case(op):
                                m.d.sync += sel.eq(1)
                                if hasattr(unit, "mode"):
                                    m.d.sync += unit.mode.eq(mode)
                if wb_ok:   # a MUL with wb reads its first word in EXEC (halfword 0)
                    m.d.sync += [emb_addr.eq(pd.wbase), emb_b.eq(0)]
                if tees:
                    tee_decode(is_norm=Cat(*(pd.op == op for op in norm_ops)).any())
                step_pc()
                m.next = "EXEC"
            with m.State("EXEC"):
                with m.Switch(ins.op):
                    with m.Case(Op.MATVEC):
                        m.d.sync += in_matvec.eq(1)
                        if epi_ops:
                            with m.If(ins.epi):
                                m.next = "EPI_DEC"
                            with m.Else():
                                m.next = "MATVEC"
                        else:
                            m.next = "MATVEC"
                    if Op.SAMPLE in has:
                        with m.Case(Op.SAMPLE):
                            m.next = "SMP_RD"
                    if Op.EMBED in has:
                        with m.Case(Op.EMBED):
                            # scr_raddr is a_addr = src here: the token id.
                            m.d.sync += in_embed.eq(1)
                            m.next = "EMB_TOK"
                    if Op.ARGMAX in has:
                        with m.Case(Op.ARGMAX):
                            # a_addr = src is read now: out[src] is in `value` in ARGMAX cycle 1.
                            m.d.sync += [idx.eq(0), adv.eq(0), bidx.eq(0), best.eq(0),
                                         a_addr.eq(a_addr + 1)]
                            m.next = "ARGMAX"
                    if vec_ops:
                        with m.Case(*vec_ops):
                            if pro_ok:
                                # A prologue RMSNORM (golden/isa.py pro): its MATVEC next.
                                with m.If(ins.pro):
                                    # idx counts tile 0's beats (idle in a MATVEC, as in
                                    # ARGMAX); f_len_m1 = n - 1 = the MATVEC's k - 1.
                                    m.d.sync += [pro_feed.eq(1), idx.eq(0),
                                                 pro_last.eq(f_len_is1)]
                                    m.next = "PRO_DEC"
                                with m.Else():
                                    m.d.sync += in_vec.eq(1)
                                    vec_next()
                            else:
                                m.d.sync += in_vec.eq(1)
                                vec_next()
                    if Op.REPEAT in has:
                        with m.Case(Op.REPEAT):
                            # pc is the body's first word (DECODE stepped past the REPEAT).
                            m.d.sync += [rp_active.eq(1), rp_left.eq(ins.n - 1), rp_first.eq(pc),
                                         rp_last.eq(pc + ins.k - 1)]
                            m.d.sync += [st.eq(f.as_signed()) for st, f in
                                         zip(rp_stride, (ins.src, ins.dst, ins.aux))]
                            m.d.sync += [o.eq(0) for o in rp_off]
                            m.next = "DECODE"
                    with m.Case(Op.HALT):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Default():
                        m.d.sync += [self.busy.eq(0), self.done.eq(1), self.error.eq(1)]
                        m.next = "IDLE"
            if epi_ops:
                with m.State("EPI_DEC"):
                    # The MATVEC's first cycle (its datapath runs on in_matvec, n >= 1): the
                    # epilogue, the word at pc, is on prog_data now; register it, step past.
                    step_pc()
                    m.d.sync += [vins.as_value().eq(pd.as_value()),
                                 ep_waddr.eq(pd.dst), ep_raddr.eq(pd.aux), fuse.eq(1)]
                    if chain:
                        m.d.sync += hold.eq(0)
                    if pair_ok:
                        # (a SIGMOID's only: any other unit gives one result a row)
                        m.d.sync += [pair.eq(pd.pair & (pd.op == Op.SIGMOID)), pr_ph.eq(0)]
                        if opc:
                            m.d.sync += pr_waddr.eq(pd.aux)
                    for unit, opmodes, sel in unit_decode:
                        m.d.sync += sel.eq(0)
                        with m.Switch(pd.op):
                            for op, mode in opmodes.items():
                                if op_spec(op).epilogue:
                                    with m.Case(op):
                                        m.d.sync += sel.eq(1)
                                        if hasattr(unit, "mode"):
                                            m.d.sync += unit.mode.eq(mode)
                    if tees:
                        tee_decode()
                    if opc:
                        with m.If(pd.chain):    # the epilogue streams into the next word
                            m.next = "CH_WAIT"
                        with m.Else():
                            m.next = "MATVEC"
                    else:
                        m.next = "MATVEC"
            if opc:
                with m.State("CH_WAIT"):
                    # (a chained epilogue: its MATVEC runs; the second word, at the pc
                    # EPI_DEC stepped to, reaches prog_data next cycle)
                    m.next = "CH_DEC"
                with m.State("CH_DEC"):
                    # A chain's second word (golden/isa.py ``chain``) is on prog_data, its
                    # first op (standalone: in VEC's place since EXEC; an epilogue: its MATVEC
                    # running) already streaming, no result out yet: the Eltwise unit's
                    # fields, its write pointer and the read pointer of its b, its tee.
                    m.d.sync += [ch.eq(1), ch_m.eq(pd.m), ch_s.eq(pd.s),
                                 ch_m2.eq(pd.wbase[:16]), ch_s2.eq(pd.k[:6]),
                                 ch_flags.eq(pd.flags), w_addr.eq(pd.dst), ep_waddr.eq(pd.dst),
                                 ep_raddr.eq(pd.aux)]
                    if hasattr(tee_unit, "mode"):
                        eo = next(om for u, om in self._vector_units if u is tee_unit)
                        with m.Switch(pd.op):
                            for op in (Op.ADD, Op.MUL):
                                if op in eo:
                                    with m.Case(op):
                                        m.d.sync += tee_unit.mode.eq(eo[op])
                    if tees:
                        tee_decode()
                    step_pc()
                    with m.If(in_matvec & pd.chain):    # the middle of a chain of three
                        m.next = "CH3_WAIT"
                    with m.Elif(in_matvec):
                        m.next = "MATVEC"
                    with m.Else():
                        m.next = "VEC"
                with m.State("CH3_WAIT"):
                    # (the third word, at the pc CH_DEC stepped to, reaches prog_data next)
                    m.next = "CH3_DEC"
                with m.State("CH3_DEC"):
                    # The third word of a chain of three: the second Eltwise unit's fields,
                    # the write pointer (the middle writes nothing) and port a's pointer of
                    # its b; the MATVEC runs meanwhile, no result out yet.
                    m.d.sync += [c3.eq(1), c3_m.eq(pd.m), c3_s.eq(pd.s),
                                 c3_m2.eq(pd.wbase[:16]), c3_s2.eq(pd.k[:6]),
                                 c3_flags.eq(pd.flags), w_addr.eq(pd.dst), ep_waddr.eq(pd.dst),
                                 c3_addr.eq(pd.aux),
                                 c3_mode.eq(Mux(pd.op == Op.MUL, EltMode.MUL, EltMode.ADD))]
                    step_pc()
                    m.next = "MATVEC"
            if pro_ok:
                with m.State("PRO_DEC"):
                    # The RMSNORM's pass streams (its reads started in EXEC; the Norm unit
                    # keeps its configuration, vins); the MATVEC, the word at pc, is on
                    # prog_data: register it as DECODE does, its fetch pattern taking over
                    # the fetcher from its first wrap (tile 1 reads a_base = its src; k is
                    # the RMSNORM's n, so the element counters run on), and step past it.
                    # (The same expressions as DECODE's, so these registers gain an enable,
                    # not a multiplexer input; ep_waddr, the Norm results' write pointer,
                    # holds the RMSNORM's dst from DECODE.)
                    n_pos = pd.n != 0
                    m.d.sync += [
                        ins.as_value().eq(pd.as_value()), a_base.eq(pd.src), w_addr.eq(pd.dst),
                        rq_waddr.eq(pd.dst),
                        f_mv.eq(d_mv), f_col.eq(d_col),
                        f_sleft.eq(Mux(d_mv, pd.n, d_segs)),
                        f_slast.eq(Mux(d_mv, _lt(pd.n, L + 1), d_segs == 1)),
                        f_pleft.eq(d_passes), f_plast.eq(d_passes == 1),
                        out_left.eq(d_rows), ol_is0.eq(d_rows == 0), ol_is1.eq(d_rows == 1),
                        n_zero.eq(pd.n == 0), k_zero.eq(pd.k == 0),
                        cmd_base.eq(pd.wbase), cmd_left.eq(pd.n), cmd_pend.eq(d_mv & n_pos),
                        dr_left.eq(pd.n), in_range.eq(n_pos),
                        pro_t0.eq(1), in_matvec.eq(1),
                    ]
                    if chain:
                        m.d.sync += [cmd_k.eq(pd.k), dt_left.eq(pd.n)]
                    step_pc()
                    m.next = "PRO"
                with m.State("PRO"):
                    # Tile 0: each Norm result is a beat's activation and is written to the
                    # RMSNORM's dst (ep_waddr; no MATVEC row is written before tile 0 ends).
                    m.d.comb += [self.scr_waddr.eq(ep_waddr),
                                 self.scr_wdata.eq(norm_unit.o.payload.y),
                                 self.scr_wen.eq(pro_fire)]
                    with m.If(pro_fire):
                        nxt_idx = idx + 1
                        m.d.sync += [ep_waddr.eq(ep_waddr + 1), idx.eq(nxt_idx),
                                     pro_last.eq(nxt_idx[:_CNT] == f_len_m1)]
                        with m.If(pro_last):
                            m.d.sync += [pro_t0.eq(0), tee_pend.eq(0)]
                            if epi_ops:
                                with m.If(ins.epi):
                                    m.next = "EPI_DEC"
                                with m.Else():
                                    m.next = "MATVEC"
                            else:
                                m.next = "MATVEC"
            with m.State("MATVEC"):
                if epi_ops:
                    with m.If(fuse):
                        if opc and pair_ok:
                            # A pair's twin (tw) from the Activation unit at pr_waddr; else
                            # the unit's result (a chain's: the Eltwise unit's) at ep_waddr.
                            # A chained pair's two never meet: its twins leave the unit in
                            # odd cycles of the row stream, the chained results 2 + 7 (link
                            # and Eltwise) after their rows, in even ones.
                            m.d.comb += [self.scr_waddr.eq(Mux(tw, pr_waddr, ep_waddr)),
                                         self.scr_wdata.eq(Mux(tw, act_unit.o.payload.y, vo_y)),
                                         self.scr_wen.eq(vo_valid | tw)]
                            with m.If(vo_valid & ~tw):
                                m.d.sync += ep_waddr.eq(ep_waddr + 1)
                            with m.If(act_unit.o.valid & pair):
                                m.d.sync += pr_ph.eq(~pr_ph)
                            with m.If(tw):
                                m.d.sync += pr_waddr.eq(pr_waddr + 1)
                        else:
                            m.d.comb += [self.scr_waddr.eq(Mux(pr_ph, ep_raddr, ep_waddr)),
                                         self.scr_wdata.eq(vo_y), self.scr_wen.eq(vo_valid)]
                            with m.If(vo_valid & ~pr_ph):
                                m.d.sync += ep_waddr.eq(ep_waddr + 1)
                            if pair_ok:
                                with m.If(vo_valid & pair):
                                    m.d.sync += pr_ph.eq(~pr_ph)
                                with m.If(vo_valid & pr_ph):
                                    m.d.sync += ep_raddr.eq(ep_raddr + 1)
                if chain:
                    # The next word a MATVEC: once this one's reads and weight commands are
                    # all issued, its streaming registers take the next one's (as DECODE
                    # loads them); pc stays, so its word stays on prog_data for MV_SWAP.
                    nxt_mv = (pd.op == Op.MATVEC) & (pd.n != 0) & (pd.k != 0)
                    with m.If(~chained & nxt_mv & ~cmd_pend & ~f_active & ~ch):
                        m.d.sync += [
                            chained.eq(1), cmd_k.eq(pd.k),
                            a_base.eq(pd.src), a_addr.eq(pd.src),
                            f_active.eq(1), f_mv.eq(1), f_col.eq(0),
                            f_len_m1.eq(d_len - 1), f_len_is1.eq(d_len == 1),
                            f_jleft.eq(d_len - 1), f_jlast.eq(d_len == 1),
                            f_sleft.eq(pd.n), f_slast.eq(_lt(pd.n, L + 1)),
                            f_pleft.eq(d_passes), f_plast.eq(d_passes == 1),
                            cmd_base.eq(pd.wbase), cmd_left.eq(pd.n), cmd_pend.eq(1),
                        ]
                    with m.If(chained):
                        # Every row of this one written and its lanes out: the next one's.
                        with m.If(rows_done & hold):
                            m.next = "MV_SWAP"
                    with m.Elif(rows_done & ~engine.o.valid):
                        m.d.sync += [in_matvec.eq(0), fuse.eq(0), tee_on.eq(0), pair.eq(0),
                                     ch.eq(0), c3.eq(0)]
                        m.next = "DECODE"
                else:
                    # Done once every row is written and the engine has drained its padding
                    # lanes.
                    with m.If(rows_done & ~engine.o.valid):
                        m.d.sync += [in_matvec.eq(0), fuse.eq(0), tee_on.eq(0), pair.eq(0),
                                     ch.eq(0), c3.eq(0)]
                        m.next = "DECODE"
            if chain:
                with m.State("MV_SWAP"):
                    # The chained MATVEC's own fields, as DECODE registers them (its rows
                    # wait in the engine: hold), and pc past it; then its epilogue.
                    m.d.sync += [
                        ins.as_value().eq(pd.as_value()), vins.as_value().eq(pd.as_value()),
                        w_addr.eq(pd.dst), rq_waddr.eq(pd.dst), ep_waddr.eq(pd.dst),
                        ep_raddr.eq(pd.aux),
                        out_left.eq(pd.n), ol_is0.eq(0), ol_is1.eq(pd.n == 1),
                        dr_left.eq(pd.n), in_range.eq(1), dt_left.eq(pd.n),
                        chained.eq(0), fuse.eq(0), tee_on.eq(0), pair.eq(0),
                    ]
                    for unit, opmodes, sel in unit_decode:
                        m.d.sync += sel.eq(0)
                    step_pc()
                    m.next = "MV_WAIT"
                with m.State("MV_WAIT"):
                    # (as EXEC: the word at the new pc reaches prog_data next cycle)
                    if epi_ops:
                        with m.If(ins.epi):
                            m.next = "EPI_DEC"
                        with m.Else():
                            m.d.sync += hold.eq(0)
                            m.next = "MATVEC"
                    else:
                        m.d.sync += hold.eq(0)
                        m.next = "MATVEC"
            if Op.EMBED in has:
                with m.State("EMB_TOK"):
                    m.d.sync += tok.eq(self.scr_rdata)
                    m.next = "EMB_ROW"
                with m.State("EMB_ROW"):
                    m.d.comb += emb_mul_en.eq(1)
                    # f_jleft / f_jlast: words after the current one (k - 1 from DECODE);
                    # out_left / ol_is0: bytes still to write (n; the row may be longer).
                    # cmd_base is wbase here (from DECODE; it steps in MATVEC only): ins.wbase
                    # is then read by nothing and has no flip-flops (RAM-fed, one cell each).
                    m.d.sync += [emb_addr.eq(cmd_base + emb_mul(tok, ins.k)),
                                 emb_bend.eq(emb_bend_first), emb_b.eq(0)]
                    with m.If(k_zero):
                        m.d.sync += in_embed.eq(0)
                        m.next = "DECODE"
                    with m.Else():
                        m.next = "EMB_READ"
                with m.State("EMB_READ"):
                    # The word at emb_addr is on w_rdata from the next cycle on (held address).
                    m.next = "EMB_RUN"
                with m.State("EMB_RUN"):
                    m.d.comb += [
                        self.scr_waddr.eq(w_addr),
                        self.scr_wdata.eq(emb_byte),
                        self.scr_wen.eq(~ol_is0),
                    ]
                    m.d.sync += w_addr.eq(w_addr + 1)
                    with m.If(~ol_is0):
                        count_row()
                    with m.If(emb_bend):
                        m.d.sync += [emb_b.eq(0), emb_bend.eq(emb_bend_first),
                                     f_jleft.eq(f_jleft - 1), f_jlast.eq(f_jleft == 1)]
                        with m.If(emb_bend_first):      # one element a word: address the next now
                            m.d.sync += emb_addr.eq(emb_addr + 1)
                        with m.If(f_jlast):
                            m.d.sync += in_embed.eq(0)
                            m.next = "DECODE"
                        with m.Elif(emb_bend_first):
                            m.next = "EMB_READ"
                        # else the next word is on w_rdata already: its first element next cycle
                    with m.Else():
                        m.d.sync += [emb_b.eq(emb_b + 1), emb_bend.eq(emb_bend_next(emb_b))]
                        with m.If(emb_bend_next(emb_b)):
                            # The next element is the word's last (on w_rdata next cycle, read
                            # at the address held now): address the next word, so that it is
                            # on w_rdata in the cycle after that one (1-cycle read), no bubble.
                            m.d.sync += emb_addr.eq(emb_addr + 1)
            if Op.SAMPLE in has:
                with m.State("SMP_RD"):
                    # a_addr, b_addr = aux, aux + 1 (from DECODE): the LFSR state words.
                    m.d.sync += a_addr.eq(a_base)
                    m.next = "SMP_LD"
                with m.State("SMP_LD"):
                    # The state words are on the read ports; prime pass 1 with p[0].
                    m.d.sync += [lfsr.eq(lfsr_next), idx.eq(0),
                                 a_addr.eq(Mux(f_len_is1, a_base, a_base + 1)), sacc.eq(0),
                                 sidx.eq(0)]
                    m.next = "SMP_P1"
                with m.State("SMP_P1"):
                    # Reads p[idx + 1], or p[0] again for pass 2 at the last element.
                    m.d.sync += sacc.eq(sacc + p_in)
                    with m.If(f_jlast):
                        # This cycle reads p[0] (for p_reg in THR); THR reads p[1].
                        m.d.sync += [idx.eq(0), f_jleft.eq(f_len_m1), f_jlast.eq(f_len_is1),
                                     a_addr.eq(a_base + 1)]
                        m.next = "SMP_THR"
                    with m.Else():
                        m.d.sync += [idx.eq(idx + 1), f_jleft.eq(f_jleft - 1),
                                     f_jlast.eq(f_jleft == 1),
                                     a_addr.eq(Mux(f_jleft == 1, a_base, a_addr + 1))]
                with m.State("SMP_THR"):
                    m.d.comb += smp_mul_en.eq(1)
                    thr = smp_mul(lfsr[32 - SAMPLE_U_BITS:], sacc[:28], name="thr") >> SAMPLE_U_BITS
                    m.d.sync += [sacc.eq(thr), rem_small.eq(thr[16:] == 0),
                                 p_reg.eq(p_in), a_addr.eq(a_addr + 1)]
                    m.next = "SMP_P2"
                with m.State("SMP_P2"):
                    # Tests p[idx] (p_reg) while p[idx + 1] arrives and p[idx + 2] is read.
                    m.d.sync += [sacc.eq(rem_next), rem_small.eq(rem_next[16:] == 0),
                                 p_reg.eq(p_in), idx.eq(idx + 1),
                                 f_jleft.eq(f_jleft - 1), f_jlast.eq(f_jleft == 1),
                                 a_addr.eq(a_addr + 1)]
                    with m.If(hit):
                        m.d.sync += sidx.eq(idx)
                        m.next = "SMP_WB"
                    with m.Elif(f_jlast):
                        m.d.sync += sidx.eq(0)
                        m.next = "SMP_WB"
                with m.State("SMP_WB"):
                    m.d.comb += [self.scr_waddr.eq(ins.aux), self.scr_wdata.eq(lfsr[:16]),
                                 self.scr_wen.eq(1)]
                    m.next = "SMP_WB2"
                with m.State("SMP_WB2"):
                    m.d.comb += [self.scr_waddr.eq(ins.aux + 1), self.scr_wdata.eq(lfsr[16:]),
                                 self.scr_wen.eq(1)]
                    m.d.sync += self.result.eq(sidx)
                    m.next = "DECODE"
            with m.State("VEC"):
                m.d.comb += [
                    self.scr_waddr.eq(w_addr),
                    self.scr_wdata.eq(vo_y),
                    self.scr_wen.eq(vo_valid),
                ]
                with m.If(vo_valid):
                    m.d.sync += w_addr.eq(w_addr + 1)
                    count_row()
                with m.If(ol_is0 | (ol_is1 & vo_valid)):
                    m.d.sync += [in_vec.eq(0), tee_on.eq(0), ch.eq(0), c3.eq(0)]
                    if tees:
                        with m.If(norm_sel):        # a tee's RMSNORM is done
                            m.d.sync += tee_pend.eq(0)
                    m.next = "DECODE"
            if Op.ARGMAX in has:
                with m.State("ARGMAX"):
                    # adv = idx < n as idx <= f_len_m1 (n - 1 from DECODE; n = 0 exits in the
                    # first cycle with adv = 0), so ins.n has no flip-flops (as ins.wbase).
                    m.d.sync += [idx.eq(idx + 1), a_addr.eq(a_addr + 1), adv.eq(idx <= f_len_m1),
                                 ajd.eq(idx), a_end.eq(idx == f_len_m1), a_first.eq(idx == 0)]
                    with m.If((adv & a_end) | n_zero):
                        m.d.sync += [self.result.eq(Mux(n_zero, 0, new_idx)), adv.eq(0)]
                        m.next = "DECODE"
        # One-hot state encoding (Yosys's fsm_encoding attribute): the next-state logic of
        # twenty states, each entered from one or two others, is then a few gates a state
        # flip-flop instead of a binary decode behind every exit condition. Amaranth 0.5 has
        # no public handle on the state register; without one the attribute is skipped.
        state = getattr(fsm, "_data", {}).get("signal")
        if state is not None:
            state.attrs["fsm_encoding"] = "one-hot"
        # Added last: Amaranth elaborates the named submodules in the order they were
        # added (then the anonymous ones), and the pool is elaborated after every client
        # (the units above) has asked for its products.
        m.submodules.mulpool = pool
        return m
