"""Accelerator: the sequencer and its datapath with the scratchpad, output buffer, program
and weight memories, and a host port (the testbench, or a board's UART host link)."""
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ternac.golden.isa import INSTR_BITS
from ternac.golden.widths import SCRATCH_BITS
from ternac.config import AccelConfig
from ternac.protocol import HOST_ADDR_BITS, SPACE_BITS, WORD_STRIDE, Space
from .memory import BankedMemory, WeightMemory, write_slices
from .sequencer import Sequencer

__all__ = ["Accelerator", "SCRATCH_BANK"]

#: Words of a bank of the scratchpad's full copy when port a has a window (BankedMemory).
SCRATCH_BANK = 1024


class Accelerator(wiring.Component):
    """The ternac NPU for one :class:`~ternac.config.AccelConfig`.

    Memories: scratchpad (``scratch_depth`` x 16 bit; with ``scratch_a_depth`` below it, port
    a reads a second copy of only ``[0, scratch_a_depth)``), output buffer (``out_depth`` x
    ``out_bits``, read back sign-extended to 32),
    program (``prog_depth`` x 128 bit, initialised with ``program_words``; with
    ``cfg.prog_compact`` only the bits ``cfg.prog_stored`` names are stored, the others
    read as 0, and ValueError for ``program_words`` that set one) and weights
    (``weight_depth`` x ``cfg.word_bits`` bit: ``2*lanes`` for I2, ``8*lanes/5`` for T3,
    ``cfg.weight_format``; initialised with ``weight_words``; a board may pass its own
    ``weight_memory`` built from SPRAM, which the bitstream cannot initialise).

    Host port (usable while ``busy`` is low): ``host_space`` selects a
    :class:`~ternac.protocol.Space`; a write takes one cycle; a read returns
    ``host_rdata`` the cycle after ``host_re``. PROG and WEIGHTS words are addressed as
    ``4 * word + slice`` with 32-bit slices, least significant first; a WEIGHTS slice is
    written into its word's bits as it comes (slices past ``ceil(word_bits/32) - 1`` are
    ignored).

    Members
    -------
    host_addr : In(20), host_space : In(2), host_wdata : In(32), host_we : In(1),
    host_re : In(1), host_rdata : Out(32)
    start : In(1), busy : Out(1), done : Out(1), error : Out(1), result : Out(32),
    cycles : Out(32)
    """

    def __init__(self, cfg: AccelConfig, weight_words=(), program_words=(), *, weight_memory=None,
                 vector_units=None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        program_words = list(program_words)
        if len(program_words) > cfg.prog_depth:
            raise ValueError(f"program of {len(program_words)} instructions does not fit a "
                             f"program memory of {cfg.prog_depth}")
        why = cfg.prog_refusal(program_words)
        if why:
            raise ValueError(why)
        self.cfg = cfg
        self._program = program_words
        # Vector units: a list of (unit, {Op: mode}); by default the ones cfg.vector asks for.
        if vector_units is None:
            from .vector_units import vector_units_for
            vector_units = vector_units_for(cfg)
        self._vector_units = list(vector_units)
        self._weight_memory = weight_memory or WeightMemory(
            word_bits=cfg.word_bits, depth=cfg.weight_depth, init=weight_words)
        super().__init__({
            "host_addr": In(HOST_ADDR_BITS), "host_space": In(SPACE_BITS), "host_wdata": In(32),
            "host_we": In(1), "host_re": In(1), "host_rdata": Out(32),
            "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(1),
            "result": Out(32), "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.seq = seq = Sequencer(
            lanes=cfg.lanes, acc_bits=cfg.acc_bits, prog_depth=cfg.prog_depth,
            scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
            vector_units=self._vector_units, weight_format=cfg.weight_format, ops=cfg.op_set,
            out_bits=cfg.out_bits, mv_chain=cfg.mv_chain, op_chain=cfg.op_chain)
        # Port a's window (AccelConfig.scratch_a_depth): a copy of [0, window) of its own,
        # and the full copy in banks (hw/memory.py BankedMemory: what Yosys maps on the
        # fewest iCE40 blocks).
        window = cfg.scratch_a_window
        if window < cfg.scratch_depth:
            m.submodules.scratch = scratch = BankedMemory(width=SCRATCH_BITS,
                                                          depth=cfg.scratch_depth,
                                                          bank=SCRATCH_BANK)
            # The window in banks too: 1,280 words as 1,024 + 256 take 4 + 1 blocks behind a
            # 2:1 read multiplexer, where one memory of 256 x 16 blocks needs a 5:1 one.
            m.submodules.scratch_a = scratch_a = BankedMemory(width=SCRATCH_BITS, depth=window,
                                                              bank=SCRATCH_BANK)
        else:
            m.submodules.scratch = scratch = Memory(shape=SCRATCH_BITS,
                                                    depth=cfg.scratch_depth, init=[])
        m.submodules.outbuf = outbuf = Memory(shape=cfg.out_bits, depth=cfg.out_depth, init=[])
        # The program memory stores the instruction bits cfg.prog_stored names (all 128, or
        # with prog_compact only those the build can use, packed; the rest read as 0).
        stored = [lo + i for lo, bits, _ in cfg.prog_stored for i in range(bits)]
        packed = stored != list(range(INSTR_BITS))

        def pack(w):
            return sum(((w >> b) & 1) << i for i, b in enumerate(stored))

        m.submodules.prog = prog = Memory(shape=len(stored), depth=cfg.prog_depth,
                                          init=[pack(int(w)) for w in self._program])
        m.submodules.weights = wmem = self._weight_memory

        for name in ("start", "busy", "done", "error", "result", "cycles"):
            sig = getattr(self, name)
            if name == "start":
                m.d.comb += seq.start.eq(sig)
            else:
                m.d.comb += sig.eq(getattr(seq, name))

        busy = seq.busy
        host = ~busy
        space, addr = self.host_space, self.host_addr
        # WORD_STRIDE host addresses a PROG or WEIGHTS word: the low bits pick the slice.
        stride_bits = WORD_STRIDE.bit_length() - 1
        word, slc = addr[stride_bits:], addr[:stride_bits]

        if window == cfg.scratch_depth:
            scr_r, scr_w = scratch.read_port(), scratch.write_port()
            scr_r2 = scratch.read_port()
            # One memory, two read ports (Yosys builds a copy for each): port a and the host
            # read scr_r, port b reads scr_r2.
            m.d.comb += [scr_r2.addr.eq(seq.scr_raddr2), seq.scr_rdata2.eq(scr_r2.data),
                         scr_r.addr.eq(Mux(busy, seq.scr_raddr, addr)),
                         seq.scr_rdata.eq(scr_r.data)]
        else:
            # The full copy serves port b and the host; the window's copy serves port a
            # (its address taken modulo its width: the compiler keeps port a's reads inside
            # the window, ternac.lower.check_program). Writes go to both where they can.
            scr_r = SimpleNamespace(addr=scratch.raddr, data=scratch.rdata)
            scr_w = SimpleNamespace(addr=scratch.waddr, data=scratch.wdata, en=scratch.wen)
            scr_ra = SimpleNamespace(addr=scratch_a.raddr, data=scratch_a.rdata)
            scr_wa = SimpleNamespace(addr=scratch_a.waddr, data=scratch_a.wdata,
                                     en=scratch_a.wen)
            m.d.comb += [scr_r.addr.eq(Mux(busy, seq.scr_raddr2, addr)),
                         seq.scr_rdata2.eq(scr_r.data),
                         scr_ra.addr.eq(seq.scr_raddr), seq.scr_rdata.eq(scr_ra.data),
                         scr_wa.addr.eq(scr_w.addr), scr_wa.data.eq(scr_w.data),
                         scr_wa.en.eq(scr_w.en & (scr_w.addr < window))]
        out_r, out_w = outbuf.read_port(), outbuf.write_port()
        prg_r = prog.read_port()
        # Host writes come as 32-bit slices: a packed word's bits are written through a
        # per-bit enable (the iCE40 block's write mask), each from its slice's bit.
        prg_w = prog.write_port(granularity=1 if packed else 32)
        prg_we = host & self.host_we & (space == Space.PROG)
        prg_word = Signal(INSTR_BITS)
        if packed:
            bits = [Const(0, 1)] * INSTR_BITS
            for i, b in enumerate(stored):
                bits[b] = prg_r.data[i]
            m.d.comb += [prg_word.eq(Cat(*bits)),
                         prg_w.data.eq(Cat(*[self.host_wdata[b % 32] for b in stored])),
                         prg_w.en.eq(Cat(*[prg_we & (slc == b // 32) for b in stored]))]
        else:
            m.d.comb += [prg_word.eq(prg_r.data),
                         prg_w.data.eq(self.host_wdata.replicate(INSTR_BITS // 32)),
                         prg_w.en.eq(Mux(prg_we, 1 << slc, 0))]

        m.d.comb += [
            scr_w.addr.eq(Mux(busy, seq.scr_waddr, addr)),
            scr_w.data.eq(Mux(busy, seq.scr_wdata, self.host_wdata)),
            scr_w.en.eq(Mux(busy, seq.scr_wen, self.host_we & (space == Space.SCRATCH))),

            # Words of out_bits (AccelConfig.out_bits): the low bits written, read back
            # sign-extended to 32.
            out_r.addr.eq(Mux(busy, seq.out_raddr, addr)),
            seq.out_rdata.eq(out_r.data.as_signed()),
            out_w.addr.eq(Mux(busy, seq.out_waddr, addr)),
            out_w.data.eq(Mux(busy, seq.out_wdata, self.host_wdata)),
            out_w.en.eq(Mux(busy, seq.out_wen, self.host_we & (space == Space.OUT))),

            prg_r.addr.eq(Mux(busy, seq.prog_addr, word)),
            seq.prog_data.eq(prg_word),
            prg_w.addr.eq(word),

            wmem.raddr.eq(Mux(busy, seq.w_raddr, word)),
            seq.w_rdata.eq(wmem.rdata),
        ]

        # WEIGHTS writes: each 32-bit slice goes into its bits of the word as it comes (the
        # weight memory's per-slice wen: an SPRAM column's WREN, a block RAM's write
        # enable), so nothing is staged (the LM's 64-bit words staged slice 0 in 32
        # flip-flops, each in a logic cell of its own on the iCE40).
        slices = write_slices(cfg.word_bits)
        wr_weights = host & self.host_we & (space == Space.WEIGHTS)
        m.d.comb += [
            wmem.waddr.eq(word),
            wmem.wdata.eq(self.host_wdata.replicate(slices)[:cfg.word_bits]),
            wmem.wen.eq(Cat(*[wr_weights & (slc == k) for k in range(slices)])),
        ]

        # Host reads: one cycle after host_re, select the space read.
        rspace = Signal(SPACE_BITS)
        rslc = Signal(stride_bits)
        with m.If(self.host_re):
            m.d.sync += [rspace.eq(space), rslc.eq(slc)]
        wpad = Signal(128)
        m.d.comb += wpad.eq(wmem.rdata)
        with m.Switch(rspace):
            with m.Case(Space.SCRATCH):
                m.d.comb += self.host_rdata.eq(scr_r.data.as_signed())
            with m.Case(Space.OUT):
                m.d.comb += self.host_rdata.eq(out_r.data.as_signed())
            with m.Case(Space.PROG):
                m.d.comb += self.host_rdata.eq(prg_word.word_select(rslc, 32))
            with m.Case(Space.WEIGHTS):
                m.d.comb += self.host_rdata.eq(wpad.word_select(rslc, 32))
        return m
