"""A pool of 16 x 16 multipliers (one SB_MAC16 / MULT18X18 each) that units borrow.

The vector units, the Requantizer and the sequencer's EMBED and SAMPLE steps never run at
the same time (one instruction at a time; a unit's pipeline has drained before the next
instruction starts), so they need not own their multipliers: each borrows *slots* of one
:class:`MulPool`, and the build carries as many SB_MAC16 as the most demanding client
needs at once (the Norm unit's eight), not the sum over the units (21 for the LM before).

How a client uses it (``hw/norm.py`` and the others)::

    mul = pool.client("norm", en=active)      # active: the unit holds or takes a beat
    p = mul(x, y)                             # the exact product, combinational
    r = pipe.reg(p)                           # registered by the client, on its own ce

``mul(a, b)`` returns ``a * b`` exactly, for signed or unsigned operands of any width up to
:data:`MAX_A_BITS` x 16 bits (``b`` the narrower one, at most 16 bits; the operands are
swapped if needed). ``a`` is cut into 16-bit chunks (the low ones unsigned, the top one of
``a``'s signedness); each chunk times ``b`` is one slot, and the chunk products are added,
shifted, in LUTs: the split that Yosys's ``mul2dsp`` would do, written once so that the
chunks can be shared. A slot multiplies two 16-bit operands of a fixed signedness
(SB_MAC16's ``A_SIGNED`` / ``B_SIGNED`` are parameters): ``ss``, ``su`` (signed x unsigned)
or ``uu``; a client's chunk of type T goes to the first slot of type T it does not use
already, so the pool has, per type, the most any one client needs. Slots are chosen when
the pool elaborates, and shared only when one multiplier a chunk would need more than
``share_above`` (default :data:`SHARE_ABOVE` = 8, the UP5K's SB_MAC16s): below that, every
chunk gets its own, with no multiplexer in front of it.

Each slot's operands are the AND-OR of its users' operands, each gated by that user's
``en``: the contract is that **at most one client has ``en`` high in any cycle** (the
sequencer runs one instruction at a time; a unit's ``en`` is "a beat is offered or any of
its pipeline stages is valid"), or by the product's own narrower gate (``mul(a, b, en=v)``,
e.g. its stage's valid bit). A slot with one user takes that user's operands directly.
The product is combinational; the client registers it (so a stalled client holds its
product in its own pipeline register, and the pool keeps no product). ``pool.conflict`` is 1
in any cycle that breaks the contract (for formal harnesses: formal/units.py's sequencer
task asserts it stays 0).

A unit built on its own (a unit bench, an out-of-context build) makes a private pool with
itself as the only client; in an accelerator the sequencer makes one pool for all of them
(:func:`hw.vector_units.vector_units_for`).

The pool also shares barrel shifters the same way: ``mul.shift(v, s)`` is
:func:`hw.vector.rhu_halve` ``(2v) >> s`` by a run-time ``s`` (the expensive half of a
round-half-up shift, e.g. the output tails of Norm, Activation and Eltwise), on a *shifter
slot* that clients which never run together share (same ``en`` contract, same concurrency
declarations; a client's shifts go, widest first, to the first slot it does not use
already). A shifter slot is as wide as its widest user; a slot with one user is that
user's own shifter (a unit's private pool: each of its shifts its own). Shifters are shared
whatever ``share_above`` says: the multiplexer in front of a shared one costs about two
LUT4 a bit, a barrel shifter about one a bit per shift-amount bit. ``mul.shift_reg(v, s,
ce=, rounded=)`` (or a ``mul.shifter()`` handle's ``.reg``, which hw/vector.py's
rhu_pipelined, rhu_sat_tail and shift_exp take) is the shift registered on the slot's own
register, and its rounding ``(t + 1) >> 1`` registered a stage later: one register and one
incrementer a slot, shared by its registered users (the pool's only state).

Order: every client registers its products while it elaborates, so the pool must be
elaborated after all its clients (added as a submodule after them); a product asked for
later raises RuntimeError.
"""
from __future__ import annotations

from amaranth.hdl import (Cat, Const, Elaboratable, Module, Mux, Shape, Signal, Value, signed,
                          unsigned)

__all__ = ["MulPool", "SLOT_BITS", "MAX_A_BITS", "borrow"]

#: Operand bits of one slot (one SB_MAC16: 16 x 16 -> 32).
SLOT_BITS = 16
#: Widest first operand ``a`` of a pooled product (three chunks).
MAX_A_BITS = 48
#: Chunk products are shared only when one multiplier each would need more than this:
#: the iCE40 UP5K's 8 SB_MAC16 (boards/facts.py; hw/ cannot import boards/). Below it, no
#: operand multiplexers (and Yosys may absorb the operand registers into the DSP).
SHARE_ABOVE = 8


class _Slot:
    def __init__(self, index: int, kind: str, prefix: str):
        self.kind = kind                       # "ss", "su" or "uu"
        sa, sb = kind[0] == "s", kind[1] == "s"
        self.a_shape = signed(SLOT_BITS) if sa else unsigned(SLOT_BITS)
        self.b_shape = signed(SLOT_BITS) if sb else unsigned(SLOT_BITS)
        self.p = Signal(signed(2 * SLOT_BITS) if (sa or sb) else unsigned(2 * SLOT_BITS),
                        name=f"{prefix}_p{index}")
        self.uses = []                         # [(client, a, b)]
        self.gates = []                        # each use's gate (the product's own en)
        self.chunk_ps = []                     # the users' product signals
        self.zero = []                         # each use's (a, b) zero while its gate is low


class _Client:
    def __init__(self, pool: "MulPool", name: str, en):
        self._pool, self.name, self.en = pool, name, Value.cast(en)
        self.slots = []                        # slots this client uses (each once)

    def __call__(self, a, b, *, name: str | None = None, en=None, zero_idle: str = "") -> Value:
        """The exact product ``a * b`` (shape: that of Amaranth's ``a * b``), built from
        this client's slots of the pool. Combinational; register it in the client.

        ``en`` (1 bit, default the client's ``en``): this product's own gate on a shared
        slot, e.g. the valid bit of the pipeline stage whose registers are its operands. It
        must be 1 in every cycle the product's value is used, and only while the client's
        ``en`` is (``pool.conflict`` is also 1 in a cycle it is not). One flip-flop
        instead of the unit's "busy" OR keeps the unit's control out of the path into
        the multiplier (the ECP5 L=128 build's critical path, 652d610).

        ``zero_idle`` ("", "a", "b" or "ab"): the client guarantees that those operands are
        0 in every cycle the product's gate (``en``, else the client's) is low, e.g.
        pipeline registers cleared with their stage's valid bit (hw.vector ``Pipe.reg(...,
        valid=)``). A shared slot then ORs them in without a gate (a LUT4 fewer a bit
        where several users share it); ``pool.conflict`` is 1 in a cycle the promise is
        broken, so the formal harnesses check it."""
        if zero_idle not in ("", "a", "b", "ab"):
            raise ValueError(f"zero_idle is '', 'a', 'b' or 'ab', not {zero_idle!r}")
        return self._pool._product(self, Value.cast(a), Value.cast(b), name or "mul",
                                   None if en is None else Value.cast(en),
                                   ("a" in zero_idle, "b" in zero_idle))

    def shifter(self, *, zero_idle: bool = False) -> "_Shifter":
        """This client's handle on the pool's shifters (see :class:`_Shifter`): called, the
        combinational :meth:`shift`; ``.reg(...)``, the shift registered on the slot's own
        register (:meth:`shift_reg`)."""
        return _Shifter(self, zero_idle)

    def shift_reg(self, v, s, *, ce, name: str | None = None, zero_idle: bool = False,
                  rounded: bool = False):
        """:meth:`shift` registered once, on ``ce`` (the client's pipeline clock enable), in
        the shifter slot's own register, shared by the slot's registered users: ``t`` (of
        :meth:`shift`'s shape), one stage after ``v, s``; with ``rounded``, also ``r =
        (t + 1) >> 1`` (hw.vector.rhu_round, of ``t``'s shape) one more stage later, as
        ``(t, r)``.

        The slot's registers load in every cycle except when an enabled registered user's
        ``ce`` is low, so while this client is enabled they hold exactly what registers of
        its own would (at most one client of a slot is enabled: the pool's contract); while
        it is not, they hold other clients' words, which only its bubbles see (an enabled
        client's pipeline holds all its beats). The registers have no reset. One register
        (and incrementer) a slot, not one a client: Yosys merges equal registers only where
        the clients' clock enables are equal, and one incrementer feeding two clients'
        registers packs with neither (measured, the LM: 80 flip-flops without a LUT)."""
        t = self.shift(v, s, name=name, zero_idle=zero_idle)
        tr = Signal(t.shape(), name=f"{t.name}_t")
        rr = Signal(t.shape(), name=f"{t.name}_r") if rounded else None
        self._pool._shift_regs[id(t)] = (self, Value.cast(ce), tr, rr)
        return (tr, rr) if rounded else tr

    def shift(self, v, s, *, name: str | None = None, zero_idle: bool = False) -> Value:
        """``(2 v) >> s`` exactly (:func:`hw.vector.rhu_halve` by a run-time ``s``): shape
        ``len(v) + 1`` bits of ``v``'s signedness; ``s`` unsigned. Combinational, on a
        shifter slot of the pool; register it in the client.

        ``zero_idle``: the client guarantees ``v == 0`` in every cycle its ``en`` is low
        (``v`` a pipeline register cleared with its stage's valid bit, hw.vector
        ``Pipe.reg(..., valid=)``); a shared slot then ORs ``v`` in without gating it (one
        LUT4 a bit fewer where three clients share a slot)."""
        return self._pool._shift(self, Value.cast(v), Value.cast(s), name or "shift",
                                 bool(zero_idle))


class _Shifter:
    """A client's shifter handle (:meth:`_Client.shifter`): ``sh(v, s)`` is
    :meth:`_Client.shift`; ``sh.reg(v, s, ce=, rounded=)`` is :meth:`_Client.shift_reg`,
    both with the handle's ``zero_idle``. hw.vector's rhu_pipelined / rhu_sat_tail /
    shift_exp take one as ``halve`` and then use the registered form."""

    def __init__(self, client: _Client, zero_idle: bool):
        self.client, self.zero_idle = client, bool(zero_idle)

    def __call__(self, v, s, *, name: str | None = None) -> Value:
        return self.client.shift(v, s, name=name, zero_idle=self.zero_idle)

    def reg(self, v, s, *, ce, name: str | None = None, rounded: bool = False):
        return self.client.shift_reg(v, s, ce=ce, name=name, zero_idle=self.zero_idle,
                                     rounded=rounded)


class MulPool(Elaboratable):
    """Shared 16 x 16 multipliers; see the module docstring for the contract.

    Parameters
    ----------
    name : str   prefix of the pool's signals

    Attributes
    ----------
    n_slots : int         slots (SB_MAC16 on the UP5K) of the elaborated pool
    slot_kinds : list     the signedness of each slot: "ss", "su" or "uu"
    share_above : int     share slots only when one each would need more (default 8)
    """

    def __init__(self, *, name: str = "mulpool", share_above: int = SHARE_ABOVE):
        self._name = name
        self._share_above = share_above
        self._chunks: list = []                # (client, kind, a, b, product, gate)
        self._chunk_zero: dict = {}            # id(product): (a, b) zero while gated off
        self._slots: list[_Slot] = []
        self._clients: list[_Client] = []
        self._done = False
        # A pool that no design elaborates is harmless (its clients are never elaborated
        # either): no UnusedElaboratable warning for it.
        self._MustUse__silence = True
        self._concurrent: set = set()          # frozensets {name, name}: may run together
        #: 1 while two clients not declared concurrent are enabled at once: the contract
        #: broken (nothing in the design reads it; formal harnesses assert it stays 0).
        self.conflict = Signal(name=f"{name}_conflict")
        # (product signal, its sum of chunk products): assigned when the pool elaborates,
        # so that the pool's module drives every signal it creates.
        self._pending: list = []
        self._shifts: list = []                # (client, v, s, out signal)
        self._shift_slots: list = []           # [[(client, v, s, out), ...], ...]
        self._zero_idle: set = set()           # id(out) of shifts whose v is 0 while idle
        self._shift_regs: dict = {}            # id(out): (client, ce, t, r) of shift_reg

    @property
    def n_shift_slots(self) -> int:
        """Barrel shifters of the elaborated pool (:meth:`_Client.shift`)."""
        return len(self._shift_slots)

    def shift_usage(self) -> dict:
        """``{client name: [shifter slot index, ...]}`` of the elaborated pool."""
        return {c.name: [k for k, sl in enumerate(self._shift_slots)
                         if any(u[0] is c for u in sl)] for c in self._clients}

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def slot_kinds(self) -> list:
        return [s.kind for s in self._slots]

    def usage(self) -> dict:
        """``{client name: [slot index, ...]}``: which slots each client borrows."""
        return {c.name: [self._slots.index(s) for s in c.slots] for c in self._clients}

    def concurrent(self, a: str, b: str) -> None:
        """Clients ``a`` and ``b`` may be active in the same cycle (a MATVEC's requantizer
        and the vector unit of its fused epilogue): they never share a slot. Declare it
        before either asks for a product."""
        self._concurrent.add(frozenset((a, b)))

    def _conflict(self, c: _Client, slot: _Slot) -> bool:
        return any(frozenset((c.name, u.name)) in self._concurrent for u, _, _ in slot.uses)

    def client(self, name: str, *, en) -> _Client:
        """A client of the pool whose operands count while ``en`` is high (1 bit)."""
        if self._done:
            if name not in {c.name for c in self._clients}:
                raise RuntimeError(f"the multiplier pool {self._name!r} was elaborated before "
                                   f"its client {name!r}: add the pool after its clients")
            # The design is elaborated again (a second conversion): its clients come back
            # in the same order; start over.
            self._slots, self._clients, self._pending, self._chunks = [], [], [], []
            self._chunk_zero = {}
            self._shifts, self._shift_slots, self._zero_idle = [], [], set()
            self._shift_regs = {}
            self._done = False
        c = _Client(self, name, en)
        self._clients.append(c)
        return c

    # -- products --------------------------------------------------------------------------
    def _slot_for(self, client: _Client, kind: str) -> _Slot:
        for s in self._slots:
            if s.kind == kind and s not in client.slots and not self._conflict(client, s):
                break
        else:
            s = _Slot(len(self._slots), kind, self._name)
            self._slots.append(s)
        client.slots.append(s)
        return s

    def _chunk_product(self, client, a: Value, b: Value, gate=None,
                       zero=(False, False)) -> Value:
        """One slot's product ``a * b`` for operands of at most 16 bits (any signedness);
        the slot is chosen when the pool elaborates (:meth:`_allocate`)."""
        sa, sb = a.shape().signed, b.shape().signed
        if sb and not sa:                      # canonical order: signed operand first
            a, b, sa, sb = b, a, sb, sa
            zero = zero[::-1]
        kind = ("s" if sa else "u") + ("s" if sb else "u")
        p = Signal(signed(2 * SLOT_BITS) if (sa or sb) else unsigned(2 * SLOT_BITS),
                   name=f"{self._name}_{client.name}_c{len(self._chunks)}")
        self._chunks.append((client, kind, a, b, p, gate))
        self._chunk_zero[id(p)] = tuple(zero)
        return p

    def _allocate(self) -> None:
        """Slots for every chunk product: one each when that needs no more than
        ``share_above`` multipliers (no operand multiplexers: the digits accelerator's 5),
        else shared, first fit by type (the LM's 21 chunk products on 8 slots)."""
        self._slots = []
        for c in self._clients:
            c.slots = []
        share = len(self._chunks) > self._share_above
        for client, kind, a, b, p, gate in self._chunks:
            if share:
                slot = self._slot_for(client, kind)
            else:
                slot = _Slot(len(self._slots), kind, self._name)
                self._slots.append(slot)
                client.slots.append(slot)
            slot.uses.append((client, a, b))
            slot.gates.append(gate)
            slot.chunk_ps.append(p)
            slot.zero.append(self._chunk_zero[id(p)])

    def _shift(self, client, v: Value, s: Value, name: str, zero_idle: bool = False) -> Value:
        if self._done:
            raise RuntimeError(f"the multiplier pool {self._name!r} was elaborated before "
                               f"{client.name!r} asked for a shift: add the pool after "
                               f"its clients")
        if s.shape().signed:
            raise ValueError(f"{client.name}: a shift amount is unsigned")
        out = Signal(Shape(len(v) + 1, v.shape().signed),
                     name=f"{self._name}_{client.name}_{name}")
        self._shifts.append((client, v, s, out))
        if zero_idle:
            self._zero_idle.add(id(out))
        return out

    @staticmethod
    def _shift_width(v: Value) -> int:
        """Signed bits that hold ``v`` (one more for an unsigned one)."""
        return len(v) + (0 if v.shape().signed else 1)

    def _allocate_shifts(self) -> None:
        """Shifter slots: each client's shifts, widest first, into the first slot it does
        not use already and no client concurrent with it uses."""
        self._shift_slots = []
        for c in self._clients:
            mine = [u for u in self._shifts if u[0] is c]
            mine.sort(key=lambda u: -self._shift_width(u[1]))
            for u in mine:
                for sl in self._shift_slots:
                    if not any(o[0] is c or frozenset((c.name, o[0].name)) in self._concurrent
                               for o in sl):
                        sl.append(u)
                        break
                else:
                    self._shift_slots.append([u])

    def _slot_registers(self, m, k: int, sl: list, value: Value) -> None:
        """The registers of shifter slot ``k`` for its :meth:`_Client.shift_reg` users:
        ``value`` (the slot's shift, the exact integer of whichever user is enabled)
        registered, and rounded and registered; each user takes the low bits of its width
        (the same integers: each user's shift fits its own width, and the low bits of
        ``(t + 1) >> 1`` depend only on the low bits of ``t``)."""
        regs = [(out, self._shift_regs[id(out)]) for _, _, _, out in sl
                if id(out) in self._shift_regs]
        if not regs:
            return
        # Hold only while an enabled registered user stalls.
        hold = Cat(*[c.en.any() & ~ce for _, (c, ce, _, _) in regs]).any()
        t = Signal(value.shape(), name=f"{self._name}_st{k}", reset_less=True)
        with m.If(~hold):
            m.d.sync += t.eq(value)
        r = None
        if any(rr is not None for _, (_, _, _, rr) in regs):
            r = Signal(value.shape(), name=f"{self._name}_st{k}r", reset_less=True)
            with m.If(~hold):
                m.d.sync += r.eq((t + 1) >> 1)
        for out, (_, _, tr, rr) in regs:
            m.d.comb += tr.eq(t[:len(tr)])
            if rr is not None:
                m.d.comb += rr.eq(r[:len(rr)])

    def _product(self, client, a: Value, b: Value, name: str, gate=None,
                 zero=(False, False)) -> Value:
        if self._done:
            raise RuntimeError(f"the multiplier pool {self._name!r} was elaborated before "
                               f"{client.name!r} asked for a product: add the pool after "
                               f"its clients")
        if len(b) > len(a):
            a, b = b, a
            zero = zero[::-1]
        if len(b) > SLOT_BITS:
            raise ValueError(f"{client.name}: a pooled product needs one operand of at most "
                             f"{SLOT_BITS} bits, not {len(a)} x {len(b)}")
        if len(a) > MAX_A_BITS:
            raise ValueError(f"{client.name}: a pooled product's wide operand has at most "
                             f"{MAX_A_BITS} bits, not {len(a)}")
        # Amaranth's product shape: signed if either is, len(a) + len(b) bits.
        out_shape = Shape(len(a) + len(b), a.shape().signed or b.shape().signed)
        total = None
        w = len(a)
        lo = 0
        while lo < w:
            hi = min(lo + SLOT_BITS, w)
            top = hi == w
            chunk = a[lo:hi]
            chunk = chunk.as_signed() if (top and a.shape().signed) else chunk.as_unsigned()
            if len(chunk) == 1:                # a 1-bit chunk (0/1 or 0/-1): no multiplier
                part = Mux(chunk[0], -b if chunk.shape().signed else b, 0)
            else:
                part = self._chunk_product(client, chunk, b, gate, zero)
            term = part if lo == 0 else (part << lo)
            total = term if total is None else total + term
            lo = hi
        out = Signal(out_shape, name=f"{self._name}_{client.name}_{name}")
        self._pending.append((out, total))
        return out

    def elaborate(self, platform):
        m = Module()
        self._done = True
        self._allocate()
        self._allocate_shifts()
        for k, sl in enumerate(self._shift_slots):
            if len(sl) == 1:
                _, v, s, out = sl[0]
                m.d.comb += out.eq((v << 1) >> s)
                self._slot_registers(m, k, sl, out)
                continue
            # AND-OR of the users' operands (each sign- or zero-extended to the slot's
            # signed width and gated by its client's enable), one shifter, and each user
            # takes the low len(v) + 1 bits: the same integer, as (2v) >> s fits them.
            w = max(self._shift_width(v) for _, v, _, _ in sl)
            sw = max(len(s) for _, _, s, _ in sl)
            gv, gs = Const(0, w), Const(0, sw)
            for u, (c, v, s, out) in enumerate(sl):
                xv = Signal(signed(w), name=f"{self._name}_sv{k}_{c.name}{u}")
                m.d.comb += xv.eq(v)
                en = c.en.any()
                # A zero_idle operand is 0 whenever its client is not enabled: no gate.
                gv = gv | (xv.as_unsigned() if id(out) in self._zero_idle
                           else Mux(en, xv.as_unsigned(), 0))
                gs = gs | Mux(en, s, 0)
            sv = Signal(signed(w), name=f"{self._name}_sv{k}")
            ss = Signal(sw, name=f"{self._name}_ss{k}")
            res = Signal(signed(w + 1), name=f"{self._name}_sr{k}")
            m.d.comb += [sv.eq(gv), ss.eq(gs), res.eq((sv << 1) >> ss)]
            self._slot_registers(m, k, sl, res)
            for _, v, _, out in sl:
                m.d.comb += out.eq(res[:len(out)])
        for k, s in enumerate(self._slots):
            a = Signal(s.a_shape, name=f"{self._name}_a{k}")
            b = Signal(s.b_shape, name=f"{self._name}_b{k}")
            if len(s.uses) == 1:
                _, ua, ub = s.uses[0]
                m.d.comb += [a.eq(ua), b.eq(ub)]
            else:
                # AND-OR of the users' operands, each extended to the slot's width first
                # (sign or zero, by its own signedness) and gated by its client's enable.
                ga, gb = Const(0, SLOT_BITS), Const(0, SLOT_BITS)
                for u, ((c, ua, ub), gate, (za, zb)) in enumerate(zip(s.uses, s.gates,
                                                                         s.zero)):
                    xa = Signal(s.a_shape, name=f"{self._name}_a{k}_{c.name}{u}")
                    xb = Signal(s.b_shape, name=f"{self._name}_b{k}_{c.name}{u}")
                    en = c.en.any() if gate is None else gate.any()
                    m.d.comb += [xa.eq(ua), xb.eq(ub)]
                    # A zero_idle operand is 0 whenever its gate is low: no gate.
                    ga = ga | (xa.as_unsigned() if za else Mux(en, xa.as_unsigned(), 0))
                    gb = gb | (xb.as_unsigned() if zb else Mux(en, xb.as_unsigned(), 0))
                m.d.comb += [a.eq(ga), b.eq(gb)]
            m.d.comb += s.p.eq(a * b)
            m.d.comb += [p.eq(s.p) for p in s.chunk_ps]
        for out, total in self._pending:
            m.d.comb += out.eq(total)
        clash = []
        for i, a in enumerate(self._clients):
            for b in self._clients[i + 1:]:
                if frozenset((a.name, b.name)) not in self._concurrent:
                    clash.append(a.en.any() & b.en.any())
        # A product's own gate open while its client is not enabled breaks the contract.
        for client, _, a, b, p, gate in self._chunks:
            if gate is not None:
                clash.append(gate.any() & ~client.en.any())
            # A zero_idle operand that is not 0 while its gate is low breaks the promise.
            off = ~(client.en.any() if gate is None else gate.any())
            za, zb = self._chunk_zero[id(p)]
            if za:
                clash.append(off & a.any())
            if zb:
                clash.append(off & b.any())
        # A zero_idle shift's operand that is not 0 while its client is idle breaks the
        # promise its shared shifter relies on (ORed in without a gate).
        for client, v, _, out in self._shifts:
            if id(out) in self._zero_idle:
                clash.append(~client.en.any() & v.any())
        m.d.comb += self.conflict.eq(Cat(*clash).any() if clash else 0)
        return m


def borrow(m, pool: MulPool | None, name: str, en) -> _Client:
    """A client of ``pool`` named ``name`` with enable ``en``; with ``pool`` None, of a
    private pool added to ``m`` as a submodule (a unit built on its own: one client, so
    its operands go straight to its slots)."""
    if pool is None:
        pool = MulPool(name=f"{name}_mul")
        m.submodules[f"{name}_mulpool"] = pool
    return pool.client(name, en=en)
