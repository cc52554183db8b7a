"""cocotb stream drivers for amaranth.lib.stream ports (``<name>__valid``, ``__ready``,
``__payload``): a source with its idle generator (valid held low between beats), a sink with
its backpressure generator (ready dropped), a passive protocol monitor on every stream, the
stall modes the benches rotate through, and struct payload packing.

One copy of these helpers serves every bench (STYLE.md, Glasgow habit).
"""
from __future__ import annotations

import itertools
import json
import os
import random

from cocotb.triggers import RisingEdge

__all__ = ["pack", "unpack", "StreamSource", "StreamSink", "StreamMonitor", "ProtocolMonitor",
           "ProtocolViolation", "stream_names", "instance_streams", "stream_fields", "MODES",
           "STALL_P", "FAST_RUNS", "SLOW_RUNS", "ROTATION", "segment_modes", "bench_inputs",
           "bench_output", "bench_progress", "to_signed", "start_clock"]

#: The probability of a pause cycle in the stall modes.
STALL_P = 0.3
#: The stall modes of a stream bench: ``(idle, backpressure)`` probabilities: the sources
#: hold valid low between beats (idle), the sinks drop ready (backpressure), both, neither.
MODES = {"none": (0.0, 0.0), "idle": (STALL_P, 0.0), "backpressure": (0.0, STALL_P),
         "both": (STALL_P, STALL_P)}


def pack(layout, **fields) -> int:
    """Pack field values into the integer of an Amaranth ``data.StructLayout`` (LSB first)."""
    word = 0
    for name, value in fields.items():
        f = layout[name]
        word |= (int(value) & ((1 << f.width) - 1)) << f.offset
    return word


def to_signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def unpack(layout, word: int) -> dict:
    """Unpack an integer into ``{field: value}``; signed fields come back signed."""
    out = {}
    for name, f in layout:
        v = (word >> f.offset) & ((1 << f.width) - 1)
        shape = f.shape
        signed = getattr(shape, "signed", False)
        out[name] = to_signed(v, f.width) if signed else v
    return out


class _Pauses:
    """An endless sequence of pause decisions, one a cycle: ``True`` pauses (a source holds
    valid low between beats, a sink drops ready). ``spec`` is None or 0 (never), a
    probability ``0 < p < 1`` (seeded ``rng``), or any iterable of 0/1 (cycled, as
    cocotbext-axi's ``itertools.cycle([1, 1, 1, 0])`` pause generators)."""

    def __init__(self, spec, rng: random.Random):
        self.p = 0.0
        self.it = None
        if spec is None or isinstance(spec, (int, float)):
            self.p = float(spec or 0.0)
            if not 0.0 <= self.p < 1.0:
                raise ValueError(f"a pause probability must be in [0, 1), not {spec!r}")
        else:
            self.it = itertools.cycle([bool(v) for v in spec])
        self.rng = rng

    def __next__(self) -> bool:
        if self.it is not None:
            return next(self.it)
        return self.p > 0 and self.rng.random() < self.p


class StreamSource:
    """Drives a stream input of the DUT (``<name>__valid``, ``__payload``; reads
    ``__ready``), keeping the stream contract: once valid is high it stays high with the same
    payload until the transfer. ``idle`` pauses the source between beats (valid low for a
    cycle; see :class:`_Pauses`: None, a probability, or a 0/1 pattern; seeded ``rng``).
    ``stall`` is the old name of ``idle`` (a probability)."""

    def __init__(self, dut, name: str, clk, *, idle=None, stall: float = 0.0,
                 rng: random.Random | None = None):
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.rng = rng or random.Random(0)
        self.idle = _Pauses(idle if idle is not None else stall, self.rng)
        self.valid.value = 0

    def set_idle(self, idle) -> None:
        """Pause between beats as ``idle`` says from now on (the same ``rng``)."""
        self.idle = _Pauses(idle, self.rng)

    async def send(self, beats):
        """Send every beat of ``beats`` (ints), one transfer each; returns when the last is
        taken, with valid low."""
        beats = list(beats)
        k = 0
        offered = False
        while k < len(beats):
            if not offered:
                if next(self.idle):
                    self.valid.value = 0
                else:
                    self.valid.value = 1
                    self.payload.value = beats[k]
                    offered = True
            await RisingEdge(self.clk)
            if offered and int(self.ready.value):
                k += 1
                offered = False
        self.valid.value = 0


class StreamSink:
    """Consumes a stream output of the DUT, dropping ready in the cycles that
    ``backpressure`` pauses (:class:`_Pauses`; seeded ``rng``). ``stall`` is the old name of
    ``backpressure`` (a probability)."""

    def __init__(self, dut, name: str, clk, *, backpressure=None, stall: float = 0.0,
                 rng: random.Random | None = None):
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.rng = rng or random.Random(1)
        self.backpressure = _Pauses(backpressure if backpressure is not None else stall,
                                    self.rng)
        self.ready.value = 0

    def set_backpressure(self, backpressure) -> None:
        """Drop ready as ``backpressure`` says from now on (the same ``rng``)."""
        self.backpressure = _Pauses(backpressure, self.rng)

    async def recv(self, n: int) -> list[int]:
        """The payloads of the next ``n`` transfers; ready is low again on return."""
        got = []
        while len(got) < n:
            r = 0 if next(self.backpressure) else 1
            self.ready.value = r
            await RisingEdge(self.clk)
            if r and int(self.valid.value):
                got.append(int(self.payload.value))
        self.ready.value = 0
        return got


class ProtocolViolation(AssertionError):
    """A stream broke the valid/ready contract (raised by :class:`StreamMonitor`)."""


class StreamMonitor:
    """Passive monitor of one valid/ready stream of the DUT (the idea of cocotbext-axi's
    AXI-stream monitor): sampled at every rising clock edge (the values the design's flops
    take), it checks the contract of ``amaranth.lib.stream``:

    * once ``valid`` is high and ``ready`` low, ``valid`` stays high until the transfer
      (the edge with ``valid & ready``);
    * the payload does not change while ``valid`` is high and ``ready`` low.

    It drives nothing. ``fields`` is ``[(name, offset, width), ...]`` of the payload (LSB
    first; :func:`stream_fields` gives it from the component), so a violation names the
    field that moved; without it the whole payload is one field ``payload``. ``beats``
    counts transfers; ``violations`` holds one dict per broken rule and field (``stream``,
    ``cycle``, ``field``, ``was``, ``now``, ``message``)."""

    def __init__(self, dut, name: str, *, fields=None, label: str | None = None):
        self.name = label or name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        width = len(self.payload)
        self.fields = [tuple(f) for f in fields] if fields else [("payload", 0, width)]
        self.beats = 0
        self.violations: list[dict] = []
        self._held = None        # payload offered and refused at the last edge
        self._held_cycle = None

    def _record(self, cycle, field, was, now, what):
        msg = (f"stream {self.name!r}: {what} at cycle {cycle}, while valid was high and "
               f"ready low since cycle {self._held_cycle} with no transfer")
        self.violations.append({"stream": self.name, "cycle": cycle, "field": field,
                                "was": was, "now": now, "message": msg})

    def sample(self, cycle: int) -> None:
        """Check the values at this edge (``cycle``: the edge's number, for messages)."""
        v = int(self.valid.value)
        p = None
        if self._held is not None:
            if not v:
                self._record(cycle, "valid", 1, 0, "valid dropped")
            else:
                p = int(self.payload.value)
                if p != self._held:
                    n = len(self.violations)
                    for fname, off, w in self.fields:
                        a = (self._held >> off) & ((1 << w) - 1)
                        b = (p >> off) & ((1 << w) - 1)
                        if a != b:
                            self._record(cycle, fname, a, b,
                                         f"payload field {fname!r} changed from {a:#x} to {b:#x}")
                    if len(self.violations) == n:      # bits outside every named field
                        self._record(cycle, "payload", self._held, p,
                                     f"payload changed from {self._held:#x} to {p:#x}")
        if not v:
            self._held = None
            return
        if int(self.ready.value):
            self.beats += 1
            self._held = None
            return
        if self._held is None:
            self._held_cycle = cycle
        self._held = int(self.payload.value) if p is None else p


def stream_names(dut) -> list[str]:
    """The streams of a cocotb DUT handle: every ``X`` with ports ``X__valid``,
    ``X__ready`` and ``X__payload`` (Amaranth's flattened stream ports), sorted."""
    names = {h._name for h in dut}
    return sorted(n[:-len("__valid")] for n in names
                  if n.endswith("__valid") and {n[:-5] + "ready", n[:-5] + "payload"} <= names)


def instance_streams(verilog: str, top: str) -> tuple[list, list]:
    """The streams at the ports of every module instance under ``top`` in Amaranth's
    Verilog ``verilog`` (whose submodules are modules named ``\\<top>.<path>``, instance
    ``<path>``): ``(found, partial)``. ``found`` lists ``[path, name]`` for each stream
    whose ``name__valid``, ``name__ready`` and ``name__payload`` are all ports of the
    instance at ``path`` (dotted: ``"seq.engine"``); ``partial`` lists ``"path.name"`` of
    the streams with only some of them at the ports (Yosys drops a constant ready of an
    always-ready stream, or names the port after the wire it drives, e.g. a FIFO's
    ``r_en``): those are not monitored. A stream inside a module that no instance port
    carries is not seen at all."""
    import re
    found, partial = [], []
    for m in re.finditer(r"^module\s+\\" + re.escape(top) + r"\.(\S+)\s*\(([^)]*)\);",
                         verilog, re.M):
        path = m.group(1)
        ports = {p.strip() for p in m.group(2).split(",")}
        bases = sorted({p.rsplit("__", 1)[0] for p in ports
                        if p.endswith(("__valid", "__ready", "__payload"))})
        for base in bases:
            have = [f"{base}__{t}" in ports for t in ("valid", "ready", "payload")]
            if all(have):
                found.append([path, base])
            elif have[0] or have[1]:
                partial.append(f"{path}.{base}")
    return found, partial


def _child(scope, name: str):
    """The sub-scope ``name`` of a cocotb hierarchy handle; an unnamed Amaranth submodule
    (Verilog instance ``\\U$4``) is found by its name as the simulator spells it."""
    try:
        return getattr(scope, name)
    except AttributeError:
        pass
    from cocotb.handle import HierarchyObject
    subs = {h._name: h for h in scope if isinstance(h, HierarchyObject)}
    for spelled in (name, "\\" + name, "\\" + name + " ", name.replace("$", "__024")):
        if spelled in subs:
            return subs[spelled]
    raise AttributeError(f"{scope._name} has no instance {name!r} (it has {sorted(subs)})")


class ProtocolMonitor:
    """A :class:`StreamMonitor` on each of ``names`` (default: every stream of the DUT,
    :func:`stream_names`; ``internal``, the ``(found, partial)`` of :func:`instance_streams`
    for a model built with every signal visible, the streams at the ports of the instances
    inside it), sampled by one coroutine on the rising edges of ``clk``; the
    edge count since :meth:`start` is the cycle in its messages. ``fields`` maps a stream's name
    to its payload fields (:func:`stream_fields`). With ``fail`` (default), the first
    violation raises :class:`ProtocolViolation` in the monitor's task, which fails the
    cocotb test with its message (stream, cycle, field)."""

    def __init__(self, dut, clk, *, names=None, fields=None, fail: bool = True,
                 internal=None):
        fields = fields or {}
        self.clk = clk
        self.fail = fail
        self.partial = []
        if internal is not None:     # instance_streams: ([[path, name], ...], partial)
            found, self.partial = internal
            self.monitors = []
            for path, n in found:
                scope = dut
                for part in path.split("."):
                    scope = _child(scope, part)
                self.monitors.append(StreamMonitor(scope, n, fields=fields.get(f"{path}.{n}"),
                                                   label=f"{path}.{n}"))
        else:
            self.monitors = [StreamMonitor(dut, n, fields=fields.get(n))
                             for n in (stream_names(dut) if names is None else names)]
        self.cycle = 0
        self.task = None

    def start(self):
        import cocotb
        self.task = cocotb.start_soon(self._run())
        return self

    async def _run(self):
        monitors = self.monitors
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            for m in monitors:
                m.sample(self.cycle)
                if self.fail and m.violations:
                    raise ProtocolViolation(m.violations[0]["message"])

    @property
    def violations(self) -> list[dict]:
        return [v for m in self.monitors for v in m.violations]

    def report(self) -> dict:
        """``{"streams": {name: transfers}, "violations": [...], "cycles": edges seen}``."""
        return {"streams": {m.name: m.beats for m in self.monitors},
                "violations": self.violations, "cycles": self.cycle,
                "partial": list(self.partial)}


def stream_fields(component) -> dict:
    """The payload fields of every stream port of an Amaranth ``wiring.Component``, for
    :class:`StreamMonitor`: ``{port: [(field, offset, width), ...]}``, nested struct fields
    dotted (``"a.b"``), a payload that is not a struct one field ``"payload"``. Port names
    are the flattened ones of the Verilog (``"i"``, ``"o"``, ``"cmd"``; a stream inside a
    sub-signature ``"x__y"``)."""
    from amaranth.lib import data, stream

    def layout_fields(shape, prefix, base):
        try:
            layout = data.Layout.cast(shape)
        except TypeError:
            layout = None
        if not isinstance(layout, data.StructLayout):
            from amaranth.hdl import Shape
            width = Shape.cast(shape).width if layout is None else layout.size
            return [(prefix or "payload", base, width)]
        out = []
        for fname, f in layout:
            out += layout_fields(f.shape, f"{prefix}.{fname}" if prefix else fname,
                                 base + f.offset)
        return out

    found = {}

    def walk(members, prefix):
        for name, member in members.items():
            if not member.is_signature:
                continue
            full = f"{prefix}__{name}" if prefix else name
            sig = member.signature
            if isinstance(sig, stream.Signature):
                found[full] = layout_fields(sig.members["payload"].shape, "", 0)
            else:
                walk(sig.members, full)

    walk(component.signature.members, "")
    return found


def start_clock(dut, period_ns: int = 10) -> None:
    """Start the clock of ``dut``: a ``cocotb.clock.Clock`` on ``dut.clk``, unless the design
    was built with its clock inside Verilator (``sim.runner.build(clock="hdl")``: the
    wrapper's ``ternac_clock_ns`` holds its period), which must then be ``period_ns``.

    Raises
    ------
    AssertionError if the built-in clock has another period.
    """
    try:
        hdl_ns = int(dut.ternac_clock_ns.value)
    except AttributeError:
        from cocotb.clock import Clock
        Clock(dut.clk, period_ns, unit="ns").start()
        return
    assert hdl_ns == period_ns, f"the design's clock runs at {hdl_ns} ns, the bench wants {period_ns} ns"


def bench_inputs() -> dict:
    """The JSON inputs handed to this bench by sim.runner.run_bench."""
    path = os.environ.get("TERNAC_BENCH_IN")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def bench_progress(record: dict) -> None:
    """Append ``record`` as a JSON line to the progress file sim.runner.run_bench watches
    (``TERNAC_BENCH_PROGRESS``), if it asked for one."""
    path = os.environ.get("TERNAC_BENCH_PROGRESS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def bench_output(obj: dict) -> None:
    """Hand results back to sim.runner.run_bench."""
    path = os.environ.get("TERNAC_BENCH_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(obj, f)


#: The runs of a stream bench in ``make test``: one without stalls (the cycle counts are
#: checked there) and one whose segments rotate through the stall modes
#: (:func:`segment_modes`), so every mode runs on every unit within two simulations. The
#: full cross product adds a run of every segment in each stalled mode (``make
#: test-slow``, tests marked slow).
FAST_RUNS = ("none", "rotate")
SLOW_RUNS = ("idle", "backpressure", "both")
ROTATION = ("idle", "backpressure", "both")


def segment_modes(run: str, n: int, offset: int = 0) -> list[str]:
    """The stall mode of each of ``n`` segments in the bench run ``run``: a mode of
    :data:`MODES` for all of them, or ``"rotate"``: :data:`ROTATION` in turn from
    ``offset``. Raises ValueError for another run, or a rotation over fewer segments than
    modes (it would leave a mode out)."""
    if run in MODES:
        return [run] * n
    if run != "rotate":
        raise ValueError(f"bench run must be 'rotate' or one of {', '.join(MODES)}, not {run!r}")
    if n < len(ROTATION):
        raise ValueError(f"a rotating run needs at least {len(ROTATION)} segments, not {n}")
    return [ROTATION[(offset + j) % len(ROTATION)] for j in range(n)]
