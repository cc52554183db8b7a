"""Sequencer: fetches the compiled program and drives the streamer, the engine and the
vector units. Executes exactly the semantics of golden/isa.py (the interpreter's spec)."""
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.isa import FIELDS, INSTR_BITS, Flag, Op
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
    """

    def __init__(self, *, lanes, acc_bits, prog_depth, scratch_depth, out_depth, weight_depth):
        self._lanes = lanes
        self._acc_bits = acc_bits
        self._weight_depth = weight_depth
        self._prog_depth = prog_depth
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(1),
            "result": Out(32), "cycles": Out(32),
            "prog_addr": Out(range(prog_depth)), "prog_data": In(INSTR_BITS),
            "scr_raddr": Out(range(scratch_depth)), "scr_rdata": In(16),
            "scr_waddr": Out(range(scratch_depth)), "scr_wdata": Out(16), "scr_wen": Out(1),
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
        m.d.comb += [requant.m.eq(ins.m), requant.s.eq(ins.s), requant.relu.eq(relu)]

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
            self.scr_wdata.eq(requant.o.payload.y),          # sign-extended to 16 bits
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
                    with m.Case(Op.ARGMAX):
                        m.d.sync += [aj.eq(0), adv.eq(0), bidx.eq(0), best.eq(0)]
                        m.next = "ARGMAX"
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
            with m.State("ARGMAX"):
                m.d.comb += self.out_raddr.eq(ins.src + aj)
                m.d.sync += [aj.eq(aj + 1), adv.eq(aj < ins.n), ajd.eq(aj)]
                with m.If(take):
                    m.d.sync += [best.eq(value), bidx.eq(ajd)]
                with m.If((adv & (ajd == ins.n - 1)) | (ins.n == 0)):
                    m.d.sync += self.result.eq(Mux(ins.n == 0, 0, new_idx))
                    m.next = "FETCH"
        return m
