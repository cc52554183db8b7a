"""Fault injection on the host link (sim/faults.py; issue 12 item 3) and the driver's
argument checks (issue 12 item 6).

* The driver refuses an out-of-range word, value, space or address with one sentence
  (``ternac.errors.InputError``) before any byte is sent.
* It retries a request the device rejected as corrupted (BAD_CRC, BAD_LENGTH,
  BAD_COMMAND; RUN too, since a rejected frame has no effect), and fails with one sentence
  when a RUN's response is lost (it may have run).
* A fixed-seed slice of the co-simulated campaign (the real UART host link in Verilator, a
  stub accelerator behind it): every fault kind in both directions, no silent corruption,
  no hang; and the campaign's checks catch deliberately broken drivers (a driver that
  ignores the CRC returns corrupted reads; one that writes one address off writes outside
  the request).
* A board slice: the digits session on the real accelerator with faults, every logit
  equal to golden.
"""
import pytest

from ternac.errors import InputError
from ternac.hostdriver import (MAX_WORDS, SYNC_RESPONSE, Command, DeviceError, HostDriver,
                               LinkError, LinkTimeout, Reply, Space, decode_frame,
                               encode_frame)

SEED = 1
SLICE = 260             # 20 of each of the 13 (direction, kind) faults


class Scripted:
    """Answers each request with the next scripted response (bytes) or None (silence)."""
    is_async = False

    def __init__(self, responses=()):
        self.responses = list(responses)
        self.sent, self.rx, self.drains = [], b"", 0

    def write(self, data):
        self.sent.append(bytes(data))
        r = self.responses.pop(0) if self.responses else None
        self.rx += r or b""

    def read(self, n, long=False):
        if len(self.rx) < n:
            self.rx = b""
            raise LinkTimeout("no response byte within 1 s (scripted)")
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def drain(self):
        self.drains += 1
        self.rx = b""


def _ack(payload=b""):
    return encode_frame(Reply.ACK, payload, sync=SYNC_RESPONSE)


def _reply(code):
    return encode_frame(code, sync=SYNC_RESPONSE)


def _one_sentence(msg):
    return "\n" not in msg and msg.count(". ") == 0 and len(msg) < 300


class _Cfg:
    """The sizes HostDriver reads from an AccelConfig (space_limits, word_bits)."""
    scratch_depth, out_depth, prog_depth, weight_depth, word_bits = 64, 16, 8, 32, 16


@pytest.mark.parametrize("call, match", [
    (lambda d: d.write_scratch(0, [70000]), r"scratch value 0 is 70000, outside the -32768..32767"),
    (lambda d: d.write_scratch(0, [1, -32769]), r"scratch value 1 is -32769"),
    (lambda d: d.write_scratch(0, [1.5]), r"scratch value 0 must be an integer"),
    (lambda d: d.write_scratch(-1, [1]), r"1 words at address -1 do not fit the SCRATCH space"),
    (lambda d: d.write_mem(Space.SCRATCH, 0, [1 << 16]), r"SCRATCH word 0 is 65536, outside"),
    (lambda d: d.write_mem(Space.OUT, 0, [1 << 32]), r"OUT word 0 is 4294967296, outside"),
    (lambda d: d.write_mem(Space.OUT, 0, [True]), r"must be an integer, not the bool"),
    (lambda d: d.write_mem(7, 0, [1]), r"address space 7 is not one of 0 \(SCRATCH\)"),
    (lambda d: d.write_mem(Space.OUT, -1, [1]), r"at address -1 do not fit the OUT space"),
    (lambda d: d.write_mem(Space.OUT, 1 << 20, [1]), r"do not fit the OUT space \(addresses 0..1048575\)"),
    (lambda d: d.read_mem(Space.OUT, -1, 1), r"at address -1 do not fit"),
    (lambda d: d.read_mem(Space.OUT, 0, -2), r"cannot read -2 words"),
    (lambda d: d.read_scratch(2**40, 1), r"do not fit the SCRATCH space"),
    (lambda d: d.load_program([1 << 128]), r"instruction word 0 is 3402823669209384634633746074317682114\d+, outside"),
    (lambda d: d.load_program([-1]), r"instruction word 0 is -1, outside"),
])
def test_driver_refuses_bad_arguments_before_sending(call, match):
    t = Scripted()
    with pytest.raises(InputError, match=match) as e:
        call(HostDriver(t, word_bits=16))
    assert t.sent == [], "nothing may be sent for a refused call"
    assert _one_sentence(str(e.value)), str(e.value)


def test_driver_checks_addresses_against_the_config():
    t = Scripted([_ack()] * 2)
    drv = HostDriver(t, cfg=_Cfg())
    drv.write_scratch(60, [1, 2, 3, 4])                   # the last four of 64 words
    with pytest.raises(InputError, match=r"5 words at address 60 do not fit the SCRATCH "
                                         r"space \(addresses 0..63\)"):
        drv.write_scratch(60, [1, 2, 3, 4, 5])
    with pytest.raises(InputError, match=r"16-bit weight word 1 is 65536"):
        drv.load_weights([1, 1 << 16])
    with pytest.raises(InputError, match=r"do not fit the WEIGHTS space \(addresses 0..127\)"):
        drv.load_weights([1], base=32)
    with pytest.raises(InputError, match=r"the weight base word is -1"):
        drv.load_weights([1], base=-1)
    with pytest.raises(InputError, match=r"do not fit the OUT space \(addresses 0..15\)"):
        drv.read_out(10, 7)
    assert len(t.sent) == 1
    # values at the edges of the ranges are sent
    t = Scripted([_ack()] * 3)
    drv = HostDriver(t, cfg=_Cfg())
    drv.write_scratch(0, [-32768, 32767])
    drv.write_mem(Space.OUT, 15, [(1 << 32) - 1])
    drv.load_weights([(1 << 16) - 1], base=31)
    assert len(t.sent) == 3
    _, payload = decode_frame(t.sent[0], sync=t.sent[0][0])
    assert payload[5:] == bytes([0, 0x80, 0, 0, 0xFF, 0x7F, 0, 0])


@pytest.mark.parametrize("reply", [Reply.BAD_CRC, Reply.BAD_LENGTH, Reply.BAD_COMMAND])
def test_driver_retries_a_request_rejected_as_corrupted(reply):
    """A stray sync byte in front of a WRITE_MEM makes the device answer BAD_LENGTH from
    the false header (this failed the write before): the request is sent again."""
    t = Scripted([_reply(reply), _ack()])
    HostDriver(t, retries=2).write_mem(Space.OUT, 0, [1, 2])
    assert len(t.sent) == 2 and t.sent[0] == t.sent[1] and t.drains == 1
    t = Scripted([_reply(reply)] * 3)
    with pytest.raises(DeviceError, match=rf"WRITE_MEM with {reply.name}: 3 attempts") as e:
        HostDriver(t, retries=2).write_mem(Space.OUT, 0, [1])
    assert len(t.sent) == 3 and _one_sentence(str(e.value))
    # RUN too: a rejected frame did not run
    result = (7).to_bytes(4, "little") + (99).to_bytes(4, "little")
    t = Scripted([_reply(reply), _ack(result)])
    assert HostDriver(t, retries=2).run() == (7, 99)
    assert len(t.sent) == 2


def test_driver_does_not_retry_named_errors():
    for reply in (Reply.BUSY, Reply.BAD_ADDRESS):
        t = Scripted([_reply(reply)] * 3)
        with pytest.raises(DeviceError, match=f"READ_MEM with {reply.name}$"):
            HostDriver(t, retries=2).read_mem(Space.OUT, 0, 1)
        assert len(t.sent) == 1


def _status(tag, result=0, cycles=0, flags=0x02):
    return _ack(result.to_bytes(4, "little") + cycles.to_bytes(4, "little")
                + bytes([flags | (tag << 6), 0]))


def _run_tag_sent(frame):
    code, payload = decode_frame(frame, sync=frame[0])
    assert code == Command.RUN and len(payload) == 1
    return payload[0] >> 1


def test_lost_run_response_is_resolved_by_the_run_tag():
    result = (7).to_bytes(4, "little") + (99).to_bytes(4, "little")
    # The device accepted the RUN (its STATUS shows this RUN's tag): STATUS's result.
    t = Scripted([_status(2), None, _status(3, 7, 99)])
    drv = HostDriver(t, retries=2)
    drv.status()
    assert drv.run() == (7, 99)
    assert len(t.sent) == 3 and _run_tag_sent(t.sent[1]) == 3
    # It did not (the previous tag): the RUN is sent again, with the same tag.
    t = Scripted([_status(3), None, _status(3), _ack(result)])
    drv = HostDriver(t, retries=2)
    drv.status()
    assert drv.run() == (7, 99)
    assert [_run_tag_sent(t.sent[i]) for i in (1, 3)] == [1, 1]
    # The first RUN after power-up (tag 0 seen): it did not arrive if the tag is still 0.
    t = Scripted([_status(0), None, _status(0), _ack(result)])
    drv = HostDriver(t, retries=2)
    drv.status()
    assert drv.run() == (7, 99) and len(t.sent) == 4


def test_lost_run_response_fails_in_one_sentence_when_unresolvable():
    # No tag seen yet on this driver: whether it ran is unknown; the RUN is not resent.
    t = Scripted([None, _status(1)])
    drv = HostDriver(t, retries=2)
    with pytest.raises(LinkTimeout, match=r"^the response to RUN was lost or corrupted "
                                          r"\(.*\) and this driver has not seen the device's "
                                          r"run tag yet, so whether it ran is unknown$") as e:
        drv.run()
    assert len(t.sent) == 2 and _one_sentence(str(e.value))
    # The device took it (its tag) but shows it neither running nor done: a reset cut it
    # short (the device keeps the tag across a reset).
    t = Scripted([_status(2), None, _status(3, flags=0)])
    drv = HostDriver(t, retries=2)
    drv.status()
    with pytest.raises(LinkError, match="the device took it but shows it neither running "
                                        "nor done: a reset cut it short or cleared its "
                                        "result$"):
        drv.run()
    assert len(t.sent) == 3
    # A tag that is neither (the device was powered off and on): unknown.
    t = Scripted([_status(2), None, _status(0)])
    drv = HostDriver(t, retries=2)
    drv.status()
    with pytest.raises(LinkError, match="reports run tag 0, neither the previous 2 nor this "
                                        "RUN's 3, so whether it ran is unknown$"):
        drv.run()
    assert len(t.sent) == 3
    # A corrupted RUN response (CRC) is as ambiguous as a lost one.
    bad = bytearray(_ack(bytes(8)))
    bad[6] ^= 1
    t = Scripted([bytes(bad), _status(1)])
    with pytest.raises(LinkError, match="the response to RUN was lost or corrupted"):
        HostDriver(t).run()
    # the STATUS after a lost response first waits out the device's partial-frame timeout
    # and drops stale input
    t = Scripted([None, _status(1), _ack()])
    drv = HostDriver(t, retries=2)
    with pytest.raises(LinkError):
        drv.run()
    drv.write_mem(Space.OUT, 0, [1])
    assert t.drains == 1 and len(t.sent) == 3


def test_driver_names_the_command_and_attempts_after_silence():
    t = Scripted([None, None, None])
    with pytest.raises(LinkTimeout, match=r"^IDENTIFY got no valid response in 3 attempts "
                                          r"\(last: no response byte") as e:
        HostDriver(t, retries=2).identify()
    assert t.drains == 2 and _one_sentence(str(e.value))


# -- the co-simulated campaign ------------------------------------------------------------------

@pytest.fixture(scope="module")
def campaign_slice():
    from ternac.sim.faults import run_faults
    rep = run_faults(SEED, SLICE, progress=False)
    print(f"seed {SEED}: {rep['totals']} in {rep['wall_s']} s")
    return rep


def test_campaign_slice_no_silent_corruption_no_hang(campaign_slice):
    from ternac.sim.faults import FAULTS
    rep = campaign_slice
    t = rep["totals"]
    assert t["injected"] == SLICE
    # a read-back that differs from the memory model counts as a silent corruption too
    assert t["silently_corrupted"] == len(rep["corruptions"]) == 0, rep["corruptions"]
    assert t["readback_mismatches"] == 0, rep["corruptions"]
    assert t["hung"] == 0, rep["hangs"]
    assert set(rep["by_fault"]) == {f"{d}/{k}" for d, k in FAULTS}
    for key, s in rep["by_fault"].items():
        assert s["injected"] == SLICE // len(FAULTS), key
        assert s["recovered"] + s["masked"] + s["failed_clearly"] == s["injected"], key
        assert s["detected"] == s["recovered"] + s["failed_clearly"], key
        assert s["detected"] > 0, key
    # every operation but RUN recovers from every fault it met (RUN may have run)
    assert t["recovered"] > 0.8 * t["injected"]
    for msg in rep["errors"]:
        assert "\n" not in msg and "Traceback" not in msg, msg
    assert rep["readbacks"] >= 2 and max(rep["max_op_us"].values()) * 1e3 <= rep["line"]["max_op_ns"]


@pytest.mark.parametrize("broken, what", [("no_crc", "READ_MEM word"),
                                          ("addr_plus_one", "outside the request")])
def test_campaign_catches_a_broken_driver(broken, what):
    from ternac.sim.faults import run_faults
    rep = run_faults(SEED, 52, progress=False, broken=broken)
    assert rep["totals"]["silently_corrupted"] > 0, rep["totals"]
    assert any(what in c for c in rep["corruptions"]), rep["corruptions"][:5]


def test_campaign_counts_a_read_back_that_differs(tmp_path, monkeypatch):
    """A deliberately broken memory model (``lost_write``: the set-up's first write batch
    loses its last word in the model, not in the device): the set-up's read-back differs,
    it is counted as a silent corruption in the totals, and ``main`` (``make faults``)
    exits 1."""
    import json

    import ternac.sim.faults as faults
    real = faults.run_faults
    monkeypatch.setattr(faults, "run_faults", lambda seed, n, progress=True: real(
        seed, n, progress=False, broken="lost_write"))
    out = tmp_path / "faults.json"
    assert faults.main(["--seed", str(SEED), "--faults", "13", "--board-inputs", "0", "--quiet",
                        "--json", str(out)]) == 1
    rep = json.loads(out.read_text())
    assert rep["broken_driver"] == "lost_write"
    t = rep["totals"]
    assert t["readback_mismatches"] >= 1, (t, rep["corruptions"][:5])
    assert any(c.startswith("read-back of space") for c in rep["corruptions"]), rep["corruptions"]
    assert t["silently_corrupted"] == len(rep["corruptions"]) >= t["readback_mismatches"], t


def test_board_slice_real_accelerator_matches_golden_under_faults():
    """The digits session on the real board core (UART host link + Accelerator, L=8), a
    fault in every inference (none in a repeated one) and before the set-up calls: every
    logit equals the integer golden model, no host-port write outside its request, the
    device answers after every fault."""
    from ternac.sim.faults import run_board_faults
    rep = run_board_faults(SEED, 8, fault_rate=1.0, progress=False)
    print(rep)
    assert rep["injected"] >= 8
    assert rep["logits_compared"] == 80 and rep["logit_mismatches"] == 0
    assert rep["outside_writes"] == [] and rep["hung"] == 0


def test_a_response_of_the_wrong_length_is_refused_at_once():
    """A corrupted length field (here 200 for a STATUS) is refused without waiting for 200
    bytes, and the request sent again."""
    body = bytes([Reply.ACK]) + (200).to_bytes(2, "little") + bytes(10)
    bad = bytes([SYNC_RESPONSE]) + body + b"\x00\x00"
    ok = _ack(bytes(8) + bytes([0x02, 0]))
    t = Scripted([bad, ok])
    assert HostDriver(t, retries=1).status().done
    assert len(t.sent) == 2 and t.drains == 1
