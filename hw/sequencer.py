"""Sequencer: fetches the compiled program and drives the streamer, the engine and the
vector units. Executes exactly the semantics of golden/isa.py (the interpreter's spec)."""
from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.isa import FIELDS, INSTR_BITS, Flag, Op
from ternac.golden.ops import spec as op_spec
from ternac.golden.sampler import LFSR_MASK, STEPS_PER_DRAW, U_BITS as SAMPLE_U_BITS
from ternac.golden.widths import SCRATCH_BITS
from .engine import TernaryEngine
from .requant import Requantizer
from .streamer import PackedWeightStreamer

__all__ = ["Sequencer", "instr_layout"]

#: The instruction word as an Amaranth struct, built from golden.isa.FIELDS (one definition).
instr_layout = data.StructLayout({name: width for name, width in FIELDS})


class Sequencer(wiring.Component):
    """Program sequencer with its datapath (PackedWeightStreamer -> TernaryEngine ->
    Requantizer) and the memory ports of the accelerator.

    Operations (see golden/isa.py for the exact semantics):

    * ``MATVEC``: per tile of ``lanes`` rows one streamer command of ``k`` words; the
      activation of input ``i`` is read from the scratchpad the cycle before it is needed,
      so one beat (``lanes`` trit-MACs) issues every cycle. Results drain through the
      requantizer into the scratchpad (or, with ``RAW``, into the output buffer) while the
      next tile accumulates. Cycles ~ ``ceil(n/lanes) * k + lanes + 6``.
    * ``ARGMAX``: ``n + 2`` cycles over the output buffer; ties go to the smaller index.
    * ``SAMPLE``: steps the LFSR held in two scratch words, sums the probabilities (pass 1),
      scales the draw, and scans the cumulative sum (pass 2, stops at the hit):
      at most ``2n + 6`` cycles.
    * ``HALT``: raises ``done``. An unknown opcode halts with ``error``.

    Parameters
    ----------
    lanes, acc_bits : int       engine size (acc_bits from golden.numerics.acc_width)
    prog_depth, scratch_depth, out_depth, weight_depth : int

    Members
    -------
    start : In(1)  pulse; ignored while busy
    busy, done, error : Out(1)  done and error are sticky until the next start
    result : Out(32)   ARGMAX index
    cycles : Out(32)   cycles from start to done of the last run
    prog_addr/prog_data, scr_*/out_* (1-cycle read latency), w_raddr/w_rdata : memory ports
    scr_raddr2/scr_rdata2 : second scratch read port (the ``b`` operand of vector ops)

    Vector operations (``vector_units``, a list of ``(unit, {Op: mode})``): each unit has the
    stream interface of hw/vector units (``i`` carrying ``a``, ``b``, ``last``; ``o``
    carrying ``y``; config ports ``m``, ``s``, ``m2``, ``s2``, ``mode``; ``passes``). The
    lengths are the op registry's rules (golden.ops: ``in_len``, ``segments``,
    ``out_rows``), read at elaboration: a pass streams ``e = 0 .. segments * in_len - 1``
    with ``a = scratch[src + (e mod in_len)]`` and ``b = scratch[aux + e]``, ``last`` on
    the final element of each segment; after ``passes`` passes the ``out_rows`` outputs go
    to ``scratch[dst + j]`` in order. For elementwise ops (``in_len = out_rows = n``, one
    segment) that is ``a = scratch[src + j]``, ``b = scratch[aux + j]`` for ``j < n``; for
    DOT, ``n`` rows of ``k``. ``m2`` is ``wbase[15:0]`` and ``s2`` is ``k[5:0]`` of the
    instruction. The segment counter and the ``b`` address counter exist only in a build
    with an op of more than one segment; lengths that differ between the ops of a build are
    registered in EXEC, so the opcode decode stays off the read-address path.
    """

    def __init__(self, *, lanes, acc_bits, prog_depth, scratch_depth, out_depth, weight_depth,
                 vector_units=()):
        self._vector_units = list(vector_units)
        for unit, opmodes in self._vector_units:
            for op in opmodes:
                if not isinstance(op, Op):
                    raise TypeError(f"vector unit op {op!r} is not a golden.isa.Op")
        self._lanes = lanes
        self._acc_bits = acc_bits
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
            "w_raddr": Out(range(weight_depth)), "w_rdata": In(2 * lanes),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        m.submodules.streamer = streamer = PackedWeightStreamer(lanes=L, depth=self._weight_depth)
        m.submodules.engine = engine = TernaryEngine(lanes=L, acc_bits=self._acc_bits)
        m.submodules.requant = requant = Requantizer(acc_bits=self._acc_bits, tag_bits=12)
        m.d.comb += [self.w_raddr.eq(streamer.mem_raddr), streamer.mem_rdata.eq(self.w_rdata)]

        pc = Signal(range(self._prog_depth))
        ins = Signal(instr_layout)
        m.d.comb += self.prog_addr.eq(pc)
        raw = ins.flags[Flag.RAW.bit_length() - 1]
        relu = ins.flags[Flag.RELU.bit_length() - 1]
        wide = ins.flags[Flag.WIDE.bit_length() - 1]
        m.d.comb += [requant.m.eq(ins.m), requant.s.eq(ins.s), requant.relu.eq(relu),
                     requant.wide.eq(wide)]

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # --- MATVEC state -------------------------------------------------------------
        feeding = Signal()
        i = Signal(12)             # input index within the tile
        j0 = Signal(13)            # first row of the tile being fed
        cmd_j0 = Signal(13)        # first row of the next tile to request weights for
        cmd_base = Signal(20)
        wlane = Signal(range(L))   # lane of the result draining from the engine
        wj0 = Signal(13)
        written = Signal(13)

        # Weight commands: one per tile, k words each, issued ahead (the streamer buffers).
        m.d.comb += [
            streamer.cmd.payload.base.eq(cmd_base),
            streamer.cmd.payload.count.eq(ins.k),
        ]
        # Feeder: the scratch read address is the index of the *next* beat, so the
        # activation for beat i is on scr_rdata exactly when beat i can fire.
        last_beat = i == ins.k - 1
        m.d.comb += [
            engine.i.valid.eq(feeding & streamer.o.valid),
            streamer.o.ready.eq(feeding & engine.i.ready),
            engine.i.payload.x.eq(self.scr_rdata[:8]),
            engine.i.payload.nz.eq(streamer.o.payload.nz),
            engine.i.payload.neg.eq(streamer.o.payload.neg),
            engine.i.payload.last.eq(last_beat),
        ]
        fire = engine.i.valid & engine.i.ready
        i_next = Signal(12)
        m.d.comb += i_next.eq(Mux(fire, Mux(last_beat, 0, i + 1), i))
        m.d.comb += self.scr_raddr.eq(ins.src + i_next)
        with m.If(fire):
            m.d.sync += i.eq(i_next)
            with m.If(last_beat):
                m.d.sync += j0.eq(j0 + L)
                with m.If(j0 + L >= ins.n):
                    m.d.sync += feeding.eq(0)

        # Writeback: lane results in order; rows past n are padding and dropped.
        j = wj0 + wlane
        in_range = j < ins.n
        m.d.comb += [
            requant.i.valid.eq(engine.o.valid & in_range & ~raw),
            requant.i.payload.acc.eq(engine.o.payload.acc),
            requant.i.payload.tag.eq(j),
            engine.o.ready.eq(raw | ~in_range | requant.i.ready),
            requant.o.ready.eq(1),
            self.scr_waddr.eq(ins.dst + requant.o.payload.tag),
            self.scr_wdata.eq(requant.o.payload.y),
            self.scr_wen.eq(requant.o.valid),
            self.out_waddr.eq(ins.dst + j),
            self.out_wdata.eq(engine.o.payload.acc),         # sign-extended to 32 bits
            self.out_wen.eq(engine.o.valid & in_range & raw),
        ]
        with m.If(engine.o.valid & engine.o.ready):
            with m.If(wlane == L - 1):
                m.d.sync += [wlane.eq(0), wj0.eq(wj0 + L)]
            with m.Else():
                m.d.sync += wlane.eq(wlane + 1)
        wrote = Mux(raw, self.out_wen, self.scr_wen)

        # --- ARGMAX state -------------------------------------------------------------
        aj = Signal(13)          # index being read this cycle
        ajd = Signal(13)         # index whose value is on out_rdata now
        adv = Signal()
        best = Signal(signed(32))
        bidx = Signal(13)
        value = self.out_rdata.as_signed()
        take = adv & ((ajd == 0) | (value > best))
        new_idx = Mux(take, ajd, bidx)

        # --- Vector ops -----------------------------------------------------------------
        # The registry's length rules of each vector op of this build, as expressions of
        # the instruction's n and k: a's length (one segment), segments a pass, outputs.
        vec_ops = [op for _, om in self._vector_units for op in om]
        rules = {op: (op_spec(op).in_len(ins.n, ins.k), op_spec(op).segments(ins.n, ins.k),
                      op_spec(op).out_rows(ins.n, ins.k)) for op in vec_ops}
        segmented = any(not (isinstance(r[1], int) and r[1] == 1) for r in rules.values())
        len_regs = []       # (register, {op: expression}), loaded in EXEC
        picked = []
        for idx, name in enumerate(("vlen", "vsegs", "vrows")):
            exprs = {op: Value.cast(r[idx]) for op, r in rules.items()}
            if len({repr(e) for e in exprs.values()}) <= 1:
                # One rule for every op of the build (ins.n for elementwise ops): no decode.
                picked.append(next(iter(exprs.values())) if exprs else ins.n)
            else:
                reg = Signal(max(len(e) for e in exprs.values()), name=name)
                len_regs.append((reg, exprs))
                picked.append(reg)
        vlen, vsegs, vrows = picked

        vj = Signal(13)            # index into a (wraps at vlen: the end of a segment)
        vp = Signal(4)
        vw = Signal(13)
        vec_active = Signal()
        vlast = vj == vlen - 1
        passes = Signal(4)
        vfire = Signal()
        vo_valid = Signal()
        vo_y = Signal(16)
        is_vec = Signal()
        for unit, opmodes in self._vector_units:
            m.submodules += unit
            sel = Signal(name=f"sel_{type(unit).__name__.lower()}")
            m.d.comb += sel.eq(0)
            for op, mode in opmodes.items():
                with m.If(ins.op == op):
                    m.d.comb += [sel.eq(1), passes.eq(unit.passes), is_vec.eq(1)]
                    if hasattr(unit, "mode"):
                        m.d.comb += unit.mode.eq(mode)
            # Config ports a unit may have: the dyadic pairs, Flag.NEG, int16 output unless
            # Flag.OUT8; a norm's bias stream and eps are unused by the ISA (0).
            m.d.comb += [unit.m.eq(ins.m), unit.s.eq(ins.s)]
            if hasattr(unit, "m2"):
                m.d.comb += [unit.m2.eq(ins.wbase[:16]), unit.s2.eq(ins.k[:6])]
            if hasattr(unit, "neg"):
                m.d.comb += unit.neg.eq(ins.flags[Flag.NEG.bit_length() - 1])
            if hasattr(unit, "wide"):
                m.d.comb += unit.wide.eq(~ins.flags[Flag.OUT8.bit_length() - 1])
            if hasattr(unit, "c"):
                m.d.comb += unit.c.valid.eq(0)
            if hasattr(unit, "eps"):
                m.d.comb += unit.eps.eq(0)
            if hasattr(unit, "bias_en"):
                m.d.comb += unit.bias_en.eq(0)
            m.d.comb += [
                unit.i.payload.a.eq(self.scr_rdata.as_signed()),
                unit.i.payload.b.eq(self.scr_rdata2.as_signed()),
                unit.i.payload.last.eq(vlast),
                unit.i.valid.eq(vec_active & sel),
                unit.o.ready.eq(1),
            ]
            with m.If(sel & unit.i.valid & unit.i.ready):
                m.d.comb += vfire.eq(1)
            with m.If(sel & unit.o.valid):
                m.d.comb += [vo_valid.eq(1), vo_y.eq(unit.o.payload.y)]
        vj_next = Signal(13)
        m.d.comb += vj_next.eq(Mux(vfire, Mux(vlast, 0, vj + 1), vj))
        if segmented:
            # A pass is vsegs segments of a (vlen elements each) against consecutive
            # elements of b: ve counts the elements of the pass, vseg the segments.
            vseg = Signal(len(Value.cast(vsegs)))
            ve = Signal(13)
            pass_end = Signal()
            ve_next = Signal(13)
            m.d.comb += [pass_end.eq(vlast & (vseg == vsegs - 1)),
                         ve_next.eq(Mux(vfire, Mux(pass_end, 0, ve + 1), ve))]
            with m.If(vfire):
                m.d.sync += ve.eq(ve_next)
                with m.If(vlast):
                    m.d.sync += vseg.eq(Mux(pass_end, 0, vseg + 1))
        else:
            pass_end, ve_next = vlast, vj_next
        col_ops = [op for op in vec_ops if op_spec(op).b_order == "col"]
        if col_ops:
            # b read by column (DOTT): element i of segment j is b[i * vsegs + j]; vb steps by
            # vsegs along a segment and restarts at the next column at its end.
            assert segmented, "a column-order op has segments"
            vb = Signal(13)
            vb_next = Signal(13)
            is_col = Signal()
            for op in col_ops:
                with m.If(ins.op == op):
                    m.d.comb += is_col.eq(1)
            m.d.comb += vb_next.eq(Mux(vfire, Mux(pass_end, 0, Mux(vlast, vseg + 1, vb + vsegs)),
                                       vb))
            with m.If(vfire):
                m.d.sync += vb.eq(vb_next)
            ve_next = Mux(is_col, vb_next, ve_next)
        with m.If(vfire):
            m.d.sync += vj.eq(vj_next)
            with m.If(pass_end):
                m.d.sync += vp.eq(vp + 1)
                with m.If(vp + 1 >= passes):
                    m.d.sync += vec_active.eq(0)
        m.d.comb += self.scr_raddr2.eq(ins.aux + ve_next)
        with m.If(is_vec):
            m.d.comb += [
                self.scr_raddr.eq(ins.src + vj_next),
                self.scr_waddr.eq(ins.dst + vw),
                self.scr_wdata.eq(vo_y),
                self.scr_wen.eq(vo_valid),
            ]
        with m.If(vo_valid):
            m.d.sync += vw.eq(vw + 1)

        # --- EMBED: a row of raw int8 bytes from the weight memory ------------------------
        bpw = 2 * L // 8
        emb_base = Signal(20)
        emb_word = Signal(2 * L)
        emb_have = Signal()
        emb_b = Signal(range(max(bpw, 2)))
        emb_e = Signal(13)
        emb_left = Signal(13)
        raw_word = Signal(2 * L)
        for l in range(L):
            m.d.comb += [raw_word[2 * l].eq(streamer.o.payload.nz[l]),
                         raw_word[2 * l + 1].eq(streamer.o.payload.neg[l])]
        emb_byte = Signal(8)
        m.d.comb += emb_byte.eq(emb_word.word_select(emb_b, 8))

        # --- SAMPLE: LFSR draw over Q15 probabilities (golden/sampler.py) ---------------
        lfsr = Signal(32)
        lfsr_next = Signal(32)
        joined = Signal(32)
        m.d.comb += joined.eq(Cat(self.scr_rdata, self.scr_rdata2))
        # STEPS_PER_DRAW LFSR steps unrolled into one XOR network (golden.sampler.lfsr_leap).
        st = joined
        for k in range(STEPS_PER_DRAW):
            nxt = Signal(32, name=f"lfsr_leap{k}")
            m.d.comb += nxt.eq(Mux(st[0], (st >> 1) ^ LFSR_MASK, st >> 1))
            st = nxt
        m.d.comb += lfsr_next.eq(st)
        sj = Signal(13)
        total = Signal(28)
        thr = Signal(28)
        cum = Signal(29)
        sidx = Signal(13)
        sj_last = sj == ins.n - 1
        p_in = Signal(16)
        m.d.comb += p_in.eq(self.scr_rdata)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.cycles.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [ins.as_value().eq(self.prog_data), pc.eq(pc + 1)]
                m.next = "EXEC"
            with m.State("EXEC"):
                with m.Switch(ins.op):
                    with m.Case(Op.MATVEC):
                        m.d.sync += [feeding.eq(ins.n != 0), i.eq(0), j0.eq(0), cmd_j0.eq(0),
                                     cmd_base.eq(ins.wbase), wlane.eq(0), wj0.eq(0), written.eq(0)]
                        m.next = "MATVEC"
                    with m.Case(Op.SAMPLE):
                        m.next = "SMP_RD"
                    with m.Case(Op.EMBED):
                        # scr_raddr is src here (i_next = vj_next = 0): the token id.
                        m.next = "EMB_TOK"
                    with m.Case(Op.ARGMAX):
                        m.d.sync += [aj.eq(0), adv.eq(0), bidx.eq(0), best.eq(0)]
                        m.next = "ARGMAX"
                    if vec_ops:
                        with m.Case(*vec_ops):
                            m.d.sync += [vec_active.eq(ins.n != 0), vp.eq(0), vw.eq(0)]
                            for reg, exprs in len_regs:
                                with m.Switch(ins.op):
                                    for op, e in exprs.items():
                                        with m.Case(op):
                                            m.d.sync += reg.eq(e)
                            m.next = "VEC"
                    with m.Case(Op.HALT):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Default():
                        m.d.sync += [self.busy.eq(0), self.done.eq(1), self.error.eq(1)]
                        m.next = "IDLE"
            with m.State("MATVEC"):
                m.d.comb += streamer.cmd.valid.eq(cmd_j0 < ins.n)
                with m.If(streamer.cmd.valid & streamer.cmd.ready):
                    m.d.sync += [cmd_j0.eq(cmd_j0 + L), cmd_base.eq(cmd_base + ins.k)]
                with m.If(wrote):
                    m.d.sync += written.eq(written + 1)
                # Done once every row is written and the engine has drained its padding lanes.
                with m.If(((written + wrote) >= ins.n) & ~engine.o.valid & ~feeding):
                    m.next = "FETCH"
            with m.State("EMB_TOK"):
                m.d.sync += [emb_base.eq(ins.wbase + self.scr_rdata * ins.k),
                             emb_left.eq(ins.k), emb_e.eq(0), emb_b.eq(0), emb_have.eq(0)]
                m.next = "EMB_CMD"
            with m.State("EMB_CMD"):
                m.d.comb += [streamer.cmd.valid.eq(1), streamer.cmd.payload.base.eq(emb_base)]
                with m.If(streamer.cmd.ready):
                    m.next = "EMB_RUN"
            with m.State("EMB_RUN"):
                with m.If(~emb_have):
                    m.d.comb += streamer.o.ready.eq(emb_left != 0)
                    with m.If(streamer.o.valid & (emb_left != 0)):
                        m.d.sync += [emb_word.eq(raw_word), emb_have.eq(1),
                                     emb_left.eq(emb_left - 1)]
                    with m.If(emb_left == 0):
                        m.next = "FETCH"
                with m.Else():
                    m.d.comb += [
                        self.scr_waddr.eq(ins.dst + emb_e),
                        self.scr_wdata.eq(emb_byte.as_signed()),
                        self.scr_wen.eq(emb_e < ins.n),
                    ]
                    m.d.sync += emb_e.eq(emb_e + 1)
                    with m.If(emb_b == bpw - 1):
                        m.d.sync += [emb_b.eq(0), emb_have.eq(0)]
                    with m.Else():
                        m.d.sync += emb_b.eq(emb_b + 1)
            with m.State("SMP_RD"):
                m.d.comb += [self.scr_raddr.eq(ins.aux), self.scr_raddr2.eq(ins.aux + 1)]
                m.next = "SMP_LD"
            with m.State("SMP_LD"):
                # The state words are on the read ports; prime pass 1 with p[0].
                m.d.comb += self.scr_raddr.eq(ins.src)
                m.d.sync += [lfsr.eq(lfsr_next), sj.eq(0), total.eq(0), cum.eq(0), sidx.eq(0)]
                m.next = "SMP_P1"
            with m.State("SMP_P1"):
                m.d.comb += self.scr_raddr.eq(ins.src + Mux(sj_last, 0, sj + 1))
                m.d.sync += [total.eq(total + p_in), sj.eq(Mux(sj_last, 0, sj + 1))]
                with m.If(sj_last):
                    m.next = "SMP_THR"
            with m.State("SMP_THR"):
                m.d.comb += self.scr_raddr.eq(ins.src)
                m.d.sync += thr.eq((lfsr[32 - SAMPLE_U_BITS:] * total) >> SAMPLE_U_BITS)
                m.next = "SMP_P2"
            with m.State("SMP_P2"):
                m.d.comb += self.scr_raddr.eq(ins.src + sj + 1)
                m.d.sync += [cum.eq(cum + p_in), sj.eq(sj + 1)]
                with m.If(cum + p_in > thr):
                    m.d.sync += sidx.eq(sj)
                    m.next = "SMP_WB"
                with m.Elif(sj_last):
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
                m.next = "FETCH"
            with m.State("VEC"):
                with m.If((vw + vo_valid) >= vrows):
                    m.next = "FETCH"
            with m.State("ARGMAX"):
                m.d.comb += self.out_raddr.eq(ins.src + aj)
                m.d.sync += [aj.eq(aj + 1), adv.eq(aj < ins.n), ajd.eq(aj)]
                with m.If(take):
                    m.d.sync += [best.eq(value), bidx.eq(ajd)]
                with m.If((adv & (ajd == ins.n - 1)) | (ins.n == 0)):
                    m.d.sync += self.result.eq(Mux(ins.n == 0, 0, new_idx))
                    m.next = "FETCH"
        return m
