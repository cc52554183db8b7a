"""Property building blocks for the harnesses: the valid/ready contract of
:mod:`amaranth.lib.stream` on both sides of a unit, transfer counters, and access to a
unit's internal signals for the induction invariants.

The contract (DESIGN.md "Streams"; the same rules as AXI-Stream's TVALID/TREADY, which
ZipCPU's ``faxis_master``/``faxis_slave`` property sets check):

* once ``valid`` is high it stays high until the cycle ``ready`` is also high (the
  transfer);
* while ``valid`` is high and ``ready`` low, the payload does not change;
* ``valid`` never depends on ``ready`` combinationally (checked structurally,
  :func:`formal.sby.comb_paths`).

On a unit's input streams these are *assumed* (the environment keeps them); on its output
streams they are *asserted*. ``ready`` is free (``AnySeq``), so every pattern of stalls is
covered; a sink may be given a fairness bound (``ready`` low at most ``max_stall`` cycles
in a row) where a liveness property needs one.

Every property is an Amaranth ``Assert``/``Assume``/``Cover`` (amaranth.hdl, 0.5) whose
message names it; the SBY driver reports failures by that name.
"""
from __future__ import annotations

import re

from amaranth.hdl import (Assert, Assume, Cat, Elaboratable, Fragment, Module,
                          ResetSignal, Signal, Value)
from amaranth.asserts import AnyConst, AnySeq      # Amaranth 0.5: not in amaranth.hdl
from amaranth.hdl._ast import SignalSet, Switch    # to list a module's signals

__all__ = ["Harness", "elaborate_tree", "probe", "probe_all", "fsm_state", "past",
           "fsm_valid", "assume_source", "assert_source", "drive_sink", "transfers", "counter",
           "AnyConst", "AnySeq"]


class Harness(Elaboratable):
    """The design under proof: ``build(m)`` adds the unit and its properties to ``m``.

    The only ports are ``clk`` and ``rst``; reset is assumed low (the registers start at
    their ``init`` values, which is the state reset gives), every other input of the unit
    is an ``AnySeq``/``AnyConst`` driven inside the harness.
    """

    def __init__(self, build, name: str = "harness"):
        self._build = build
        self.name = name

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal(), "reset low")
        self._build(m)
        return m


def elaborate_tree(elaboratable, platform=None):
    """Elaborate ``elaboratable`` and, recursively, its submodules, so that their internal
    signals can be probed and the same objects are what gets converted.

    Returns the elaborated :class:`Module` (a non-Module elaboration, e.g. a Memory, is
    returned as it is). Add the result as the submodule, not the component.
    """
    if hasattr(elaboratable, "_MustUse__silence"):
        elaboratable._MustUse__silence = True
    out = Fragment.get(elaboratable, platform) if not hasattr(elaboratable, "elaborate") \
        else elaboratable.elaborate(platform)
    if isinstance(out, Module):
        out._flush()
        for name, (sub, loc) in list(out._named_submodules.items()):
            out._named_submodules[name] = (elaborate_tree(sub, platform), loc)
        out._anon_submodules = [(elaborate_tree(sub, platform), loc)
                                for sub, loc in out._anon_submodules]
    return out


def _walk(stmts, found):
    for st in stmts:
        if isinstance(st, Switch):
            found.update(st.test._rhs_signals())
            for _patterns, body, _loc in st.cases:
                _walk(body, found)
        elif hasattr(st, "_lhs_signals"):
            found.update(st._lhs_signals())
            found.update(st._rhs_signals())
        # an FSM's pending "next = ..." (late bound) names no signal of its own


def _signals(module):
    found = SignalSet()
    for stmts in module._statements.values():
        _walk(stmts, found)
    _walk(module._top_comb_statements, found)
    return found


def _submodule(module, path):
    for part in path:
        module = module._named_submodules[part][0]
    return module


def probe_all(module, pattern: str, *, sub: tuple = ()) -> list:
    """Every signal of ``module`` (or of its named submodule ``sub``, a path of names)
    whose name matches the regular expression ``pattern`` in full, sorted by name (a
    trailing number in numeric order).

    Raises
    ------
    LookupError if none matches: the unit changed, and its harness must follow.
    """
    mod = _submodule(module, sub)
    rx = re.compile(pattern)
    hits = {id(s): s for s in _signals(mod) if rx.fullmatch(s.name)}
    if not hits:
        raise LookupError(f"no signal matching {pattern!r} in {type(mod).__name__} "
                          f"{'.'.join(sub) or '(top)'}")

    def key(s):
        num = re.search(r"(\d+)$", s.name)
        return (re.sub(r"\d+$", "", s.name), int(num.group(1)) if num else -1)
    return sorted(hits.values(), key=key)


def probe(module, name: str, *, sub: tuple = ()) -> Signal:
    """The one signal named ``name`` (exactly) in ``module``/``sub``.

    Raises
    ------
    LookupError if there is none or more than one.
    """
    hits = probe_all(module, re.escape(name), sub=sub)
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} signals named {name!r}")
    return hits[0]


def fsm_state(module, state: str, *, fsm: str = "fsm", sub: tuple = ()) -> Value:
    """``1`` while the FSM ``fsm`` of ``module`` is in ``state`` (by the state signal's
    decoder, so the encoding is the unit's own)."""
    sig = probe(module, f"{fsm}_state", sub=sub)
    for code in range(1 << len(sig)):
        try:
            label = sig.decoder(code)
        except KeyError:
            continue
        if label.split("/")[0] == state:
            return sig == code
    raise LookupError(f"FSM {fsm!r} has no state {state!r}")


def fsm_valid(module, *, fsm: str = "fsm", sub: tuple = ()) -> Value:
    """``1`` while the FSM's state signal holds one of its states' encodings (an induction
    invariant: the unused encodings are unreachable)."""
    sig = probe(module, f"{fsm}_state", sub=sub)
    codes = []
    for code in range(1 << len(sig)):
        try:
            sig.decoder(code)
        except KeyError:
            continue
        codes.append(code)
    return sig <= max(codes) if codes == list(range(len(codes))) else \
        Cat(sig == c for c in codes).any()


def past(m, value, *, name: str, init=0) -> Signal:
    """``value`` one cycle ago (``init`` in the first cycle)."""
    value = Value.cast(value)
    sig = Signal(value.shape(), name=name, init=init)
    m.d.sync += sig.eq(value)
    return sig


def counter(m, inc, *, bits: int, name: str, dec=None) -> Signal:
    """A counter of the cycles ``inc`` is high (minus those ``dec`` is high), ``bits``
    wide, never wrapping in a proof of the stated depth."""
    c = Signal(bits, name=name)
    m.d.sync += c.eq(c + inc - (dec if dec is not None else 0))
    return c


def transfers(port) -> Value:
    return port.valid & port.ready


def _payload(port) -> Value:
    return Value.cast(port.payload)


def assume_source(m, port, *, name: str, valid=None, payload=None) -> None:
    """The environment drives the input stream ``port`` (a unit's ``In`` stream) and keeps
    the contract: ``valid`` held until the transfer, payload stable while stalled.

    ``valid``/``payload`` default to fresh ``AnySeq`` values; pass expressions to restrict
    them (further ``Assume`` on ``port.payload`` work too).
    """
    pl = _payload(port)
    m.d.comb += [port.valid.eq(AnySeq(1) if valid is None else valid),
                 pl.eq(AnySeq(len(pl)) if payload is None else payload)]
    stalled = past(m, port.valid & ~port.ready, name=f"{name}_stalled")
    held = past(m, pl, name=f"{name}_held")
    with m.If(stalled):
        m.d.comb += [Assume(port.valid, f"{name}: env holds valid"),
                     Assume(pl == held, f"{name}: env holds payload")]


def drive_sink(m, port, *, name: str, max_stall: int | None = None) -> None:
    """The environment takes the output stream ``port`` with a free ``ready``; with
    ``max_stall``, ``ready`` is never low for more than ``max_stall`` cycles in a row while
    ``valid`` is high (a fair sink, for liveness)."""
    m.d.comb += port.ready.eq(AnySeq(1))
    if max_stall is not None:
        waited = Signal(range(max_stall + 2), name=f"{name}_waited")
        with m.If(port.valid & ~port.ready):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        with m.If(waited >= max_stall):
            m.d.comb += Assume(port.ready | ~port.valid, f"{name}: fair sink")


def assert_source(m, port, *, name: str) -> None:
    """The unit keeps the contract on its output stream ``port``: ``valid`` held until the
    transfer, payload stable while ``valid`` and not ``ready``."""
    pl = _payload(port)
    stalled = past(m, port.valid & ~port.ready, name=f"{name}_stalled")
    held = past(m, pl, name=f"{name}_held")
    with m.If(stalled):
        m.d.comb += [Assert(port.valid, f"{name}: valid held until the transfer"),
                     Assert(pl == held, f"{name}: payload stable while stalled")]
