"""Formal proofs of the stream units (formal/, SymbiYosys from pip) in ``make test``.

Every fast task of :data:`formal.units.TASKS` must PASS (k-induction or BMC, as the task
says); the slow ones (the host link's and the sequencer's bounded liveness at full depth)
run in ``make formal``, the sequencer here at a shallower bounded depth. Each proof can
fail: deliberately broken units (an output payload that glitches while stalled, an
engine accumulator one bit too narrow, a valid that waits for ready) must be reported as
FAIL with the broken property named and a counterexample.
"""
import pathlib
import sys

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

# formal/ is a development tool next to tests/ (not installed with the package)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from formal.__main__ import run_task  # noqa: E402
from formal.sby import comb_paths  # noqa: E402
from formal.units import TASKS  # noqa: E402

FAST = [name for name, t in TASKS.items() if t.fast]


@pytest.mark.parametrize("name", FAST)
def test_proof(name, tmp_path):
    t = TASKS[name]
    res = run_task(t, workdir=tmp_path)
    print(res.summary())
    assert res.status == "PASS", f"{res.summary()}\n{res.trace or res.log_tail}"
    assert res.mode == t.mode and res.depth == t.depth


def test_sequencer_bounded(tmp_path):
    """The sequencer's bounded liveness at a shallower BMC depth (make formal: full)."""
    res = run_task(TASKS["sequencer_live"], workdir=tmp_path, depth=24)
    print(res.summary())
    assert res.status == "PASS", f"{res.summary()}\n{res.trace or res.log_tail}"


#: (task, cover depth): each harness covers a case deep in the unit's behaviour (a transfer
#: after a stall with the pipeline full, a tile's last result, a received byte, ...).
COVERS = [("engine", 10), ("streamer_i2", 12), ("requant", 10), ("eltwise", 14),
          ("uart_rx", 50), ("dot", 14), ("sequencer_live", 26), ("sequencer_live_dot", 40),
          ("norm", 20), ("mulpool", 1), ("mulpool_exact", 1), ("sequencer_live_epi", 24)]


@pytest.mark.parametrize("name, depth", COVERS)
def test_not_vacuous(name, depth, tmp_path):
    """The environment's assumptions leave the interesting behaviour reachable (a proof
    under contradictory assumptions would pass vacuously): SBY cover mode reaches every
    Cover of the harness."""
    res = run_task(TASKS[name], workdir=tmp_path, mode="cover", depth=depth)
    print(res.summary())
    assert res.status == "PASS", f"{res.summary()}\n{res.log_tail}"


#: The same for the sequencer with the Activation (its SIGMOID pair completes), with the
#: Norm (a teeing epilogue into the Norm, a prologue's tile 0, a reuse RMSNORM's results, a
#: tee's RMSNORM decoded) and with mv_chain (a chained MATVEC completes): a minute or more
#: each, make test-slow.
SLOW_COVERS = [("sequencer_live_act", 48), ("sequencer_norm_pool", 28),
               ("sequencer_live_chain", 30)]


@pytest.mark.slow
@pytest.mark.parametrize("name, depth", SLOW_COVERS)
def test_not_vacuous_slow(name, depth, tmp_path):
    res = run_task(TASKS[name], workdir=tmp_path, mode="cover", depth=depth)
    print(res.summary())
    assert res.status == "PASS", f"{res.summary()}\n{res.log_tail}"


#: (task, broken variant, a property that must be reported failing, BMC depth that reaches
#: the first output: the pipeline's latency, a UART frame, a short host-link request)
BROKEN = [
    ("streamer_i2", "unstable", "o: payload stable while stalled", 8),
    ("requant", "unstable", "o: payload stable while stalled", 10),
    ("eltwise", "unstable", "o: payload stable while stalled", 12),
    ("uart_rx", "unstable", "o: payload stable while stalled", 50),
    ("hostlink_tx", "unstable", "tx: payload stable while stalled", 12),
    ("engine", "narrow", "exact sum", 12),
    # a reuse vector streamed once to a unit that does not see reuse: it waits for pass 1
    ("norm", "reuse_dropped", "one output per final-pass element", 20),
    # the requantizer and the epilogue's unit not declared concurrent: they share a slot
    ("mulpool", "undeclared", "rq: slot operands are its own", 1),
    ("mulpool_exact", "undeclared", "rq: product equals a*b", 1),
    # the Activation's / the Norm's bubble-cleared registers (zero_idle operands of the
    # shared multiplier pool) not cleared inside the sequencer: the pool reports a conflict
    ("sequencer_live_act", "dirty_idle", "multiplier pool: no conflict", 8),
    ("sequencer_norm_pool", "dirty_idle", "multiplier pool: no conflict", 8),
]


@pytest.mark.parametrize("name, variant, broken_property, depth", BROKEN)
def test_broken_unit_fails(name, variant, broken_property, depth, tmp_path):
    res = run_task(TASKS[name], workdir=tmp_path, variant=variant, mode="bmc", depth=depth)
    print(res.summary())
    print(res.trace)
    assert res.status == "FAIL", res.summary()
    assert any(broken_property in f for f in res.failed), res.failed
    assert "step" in res.trace and len(res.trace.splitlines()) >= 2   # the counterexample


@pytest.mark.slow
def test_epilogue_liveness_can_fail(tmp_path):
    """A MATVEC with epi whose next word is not an epilogue op (golden.interpreter refuses
    the program) waits for rows no unit produces: the bounded liveness of
    sequencer_live_epi is reported failing (BMC 50 cycles, ~75 s: make test-slow)."""
    res = run_task(TASKS["sequencer_live_epi"], workdir=tmp_path, variant="any_epilogue",
                   mode="bmc", depth=50)
    print(res.summary())
    assert res.status == "FAIL", res.summary()
    assert "every instruction completes in the bound" in res.failed, res.failed


@pytest.mark.slow
def test_activation_liveness_can_fail(tmp_path):
    """sequencer_live_act's bound claimed 6 cycles short (40): a MATVEC with an Activation
    epilogue takes longer, and the bounded liveness is reported failing (BMC 50 cycles,
    ~25 s: make test-slow)."""
    res = run_task(TASKS["sequencer_live_act"], workdir=tmp_path, variant="tight",
                   mode="bmc", depth=50)
    print(res.summary())
    assert res.status == "FAIL", res.summary()
    assert "every instruction completes in the bound" in res.failed, res.failed


class _ValidWaitsForReady(wiring.Component):
    """A broken source: its valid is high only while the sink is ready."""
    o: Out(stream.Signature(8))
    i: In(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full & self.o.ready),
                     self.o.payload.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += full.eq(1)
        with m.Elif(self.o.valid):
            m.d.sync += full.eq(0)
        return m


def test_comb_path_check():
    """The structural check finds valid depending on ready, and passes the real units."""
    bad = comb_paths(_ValidWaitsForReady(), [("o__ready", "o__valid"),
                                             ("i__valid", "i__ready")])
    assert bad == {("o__ready", "o__valid"): False, ("i__valid", "i__ready"): True}
    for name in ("requant", "engine", "streamer_i2", "eltwise"):
        unit, pairs = TASKS[name].comb()
        assert all(comb_paths(unit, pairs).values()), name


def test_cover_can_fail(tmp_path):
    """Too shallow to reach a tile's last result: cover mode reports FAIL."""
    res = run_task(TASKS["engine"], workdir=tmp_path, mode="cover", depth=2)
    assert res.status == "FAIL", res.summary()
