"""Host link: the frame codec and driver in Python, and the RTL (UART + frame parser) in
Verilator, driven through cocotbext-uart by the same driver (sim/test_hostlink_cocotb.py).

The RTL bench puts a small accelerator model behind the host port (``FakeAccelerator``:
four memories, a run that takes ``RUN_CYCLES``), so the link is tested on its own."""
import binascii
import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ternac.hw.hostlink import UARTHostlink, connect_accelerator
from ternac.hostdriver import (MAX_WORDS, PROTOCOL_VERSION, SYNC_RESPONSE, Command,
                               DeviceError, HostDriver, LinkError, LinkTimeout, Reply, Space,
                               StatusFlag, crc16, decode_frame, drive_sync, encode_frame)

DIVISOR = 8
TIMEOUT_CYCLES = 40 * DIVISOR * 10      # 40 byte times
RUN_CYCLES = 37
SLOW_RUN_CYCLES = 40_000
LIMITS = {0: 80, 1: 24, 2: 16, 3: 32}    # SCRATCH holds more than one frame's worth
CONFIG_HASH = 0xC0FFEE42


# -- Python: codec and driver against a scripted transport -----------------------------

def test_crc_matches_binascii_and_residue_is_zero():
    rng = random.Random(3)
    for _ in range(50):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)
        frame = encode_frame(Command.WRITE_MEM, data)
        assert crc16(frame[1:]) == 0
    assert crc16(b"123456789") == 0x29B1       # CRC-16/CCITT-FALSE check value


def test_frame_round_trip_and_rejects():
    f = encode_frame(Reply.ACK, b"\x01\x02", sync=SYNC_RESPONSE)
    assert decode_frame(f) == (0, b"\x01\x02")
    with pytest.raises(LinkError, match="CRC"):
        decode_frame(f[:-1] + bytes([f[-1] ^ 1]))
    with pytest.raises(LinkError, match="length"):
        decode_frame(f + b"\x00")
    with pytest.raises(ValueError, match="65535"):
        encode_frame(1, bytes(70000))


class ScriptedTransport:
    """Answers each request with the next scripted response (bytes) or None (silence)."""
    is_async = False

    def __init__(self, responses):
        self.responses = list(responses)
        self.sent, self.rx, self.drains = [], b"", 0

    def write(self, data):
        self.sent.append(bytes(data))
        r = self.responses.pop(0)
        self.rx += r if r is not None else b""

    def read(self, n, long=False):
        if len(self.rx) < n:
            self.rx = b""
            raise LinkTimeout("scripted silence")
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def drain(self):
        self.drains += 1
        self.rx = b""


def _ack(payload=b""):
    return encode_frame(Reply.ACK, payload, sync=SYNC_RESPONSE)


def test_driver_retries_then_names_the_error():
    ident = (0x12345678).to_bytes(4, "little") + bytes([1]) + MAX_WORDS.to_bytes(2, "little")
    # noise before the response, a timeout, a BAD_CRC, then the answer
    t = ScriptedTransport([None, encode_frame(Reply.BAD_CRC, sync=SYNC_RESPONSE),
                           b"\x00\x13" + _ack(ident)])
    drv = HostDriver(t, retries=2)
    assert drv.identify().config_hash == 0x12345678
    assert t.drains == 2 and len(t.sent) == 3
    with pytest.raises(LinkError, match="another configuration"):
        HostDriver(ScriptedTransport([_ack(ident)])).check_identity(0x1)
    t = ScriptedTransport([encode_frame(Reply.BUSY, sync=SYNC_RESPONSE)])
    with pytest.raises(DeviceError, match="WRITE_MEM with BUSY"):
        HostDriver(t).write_mem(0, 0, [1])


def test_driver_frames_weights_and_program():
    t = ScriptedTransport([_ack()] * 4)
    drv = HostDriver(t, word_bits=48)       # 2 slices a word, padded to the 4-address stride
    drv.load_weights([(1 << 47) | 5, 7], base=3)
    (frame,) = t.sent
    code, payload = decode_frame(frame, sync=frame[0])
    assert code == Command.WRITE_MEM and payload[0] == 3
    assert int.from_bytes(payload[1:5], "little") == 12
    words = [int.from_bytes(payload[i:i + 4], "little") for i in range(5, len(payload), 4)]
    assert words == [5, 1 << 15, 0, 0, 7, 0, 0, 0]
    t = ScriptedTransport([_ack()] * 2)
    HostDriver(t).load_program([(1 << 127) | 1] * 17)     # 68 slices: two frames
    assert [len(f) for f in t.sent] == [6 + 5 + 4 * MAX_WORDS, 6 + 5 + 16]


@pytest.mark.parametrize("prog, what", [
    ("shiftmax", r"SHIFTMAX\) is an operation the accelerator is built without"),
    ("past", "past the end of the 3840-word scratch memory"),
    ("nohalt", "never reaches a HALT"),
])
def test_driver_with_cfg_refuses_a_program_the_build_cannot_run(prog, what):
    """With the build's AccelConfig, load_program runs ternac.lower.check_program on the
    decoded words first: a program it refuses is an InputError of one sentence and no
    frame is sent (the device would halt with an error, or wrap an address)."""
    from ternac.config import LM_CONFIG
    from ternac.errors import InputError
    from ternac.golden.isa import Instr, Op, encode_program
    progs = {
        "shiftmax": [Instr(Op.SHIFTMAX, src=0, dst=100, n=8, m=1, s=1), Instr(Op.HALT)],
        "past": [Instr(Op.ADD, src=3830, aux=0, dst=100, n=16, m=1, wbase=1), Instr(Op.HALT)],
        "nohalt": [Instr(Op.ADD, src=0, aux=20, dst=100, n=16, m=1, wbase=1)],
    }
    t = ScriptedTransport([])
    with pytest.raises(InputError, match=what) as e:
        HostDriver(t, cfg=LM_CONFIG).load_program(encode_program(progs[prog]))
    assert "\n" not in str(e.value) and str(e.value).endswith("; nothing was sent")
    assert t.sent == []
    # Without the config the driver cannot know the build: the words are sent.
    t = ScriptedTransport([_ack()])
    HostDriver(t).load_program(encode_program(progs[prog]))
    assert len(t.sent) == 1


class AsyncScriptedTransport(ScriptedTransport):
    """The scripted transport with coroutines, as cocotbext-uart's transport has."""
    is_async = True

    async def write(self, data):
        ScriptedTransport.write(self, data)

    async def read(self, n, long=False):
        return ScriptedTransport.read(self, n, long)

    async def drain(self):
        ScriptedTransport.drain(self)


def _digits_script(chash, logits, result, cycles, rejected=0):
    """The device's answers to a digits session of one input, the program in one frame."""
    ident = chash.to_bytes(4, "little") + bytes([PROTOCOL_VERSION]) + MAX_WORDS.to_bytes(2, "little")
    out = b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in logits)
    status0 = _ack(bytes(8) + bytes([0, 0]))    # the session's first STATUS (run tag 0)
    return [_ack(ident), status0, _ack(), None, _ack(),
            _ack(result.to_bytes(4, "little") + cycles.to_bytes(4, "little")), _ack(out),
            _ack(bytes(8) + bytes([StatusFlag.DONE, rejected]))]


def test_one_session_runs_sync_and_async():
    """ternac.session.digits_session over the one trampoline (drive_sync / drive_async):
    the same requests and the same result over a synchronous and an asynchronous transport,
    a timed-out write_scratch retried in both; link errors at the end are reported."""
    import asyncio

    from ternac.session import digits_session
    p = {"config_hash": 0xC0FFEE42, "word_bits": 16, "load_weights": False, "weights": [],
         "program": [1, 2], "inputs": [[1, -2, 3]], "input_addr": 5, "logits_addr": 0,
         "n_logits": 3}
    expect = {"logits": [[-5, 7, 0]], "results": [2], "cycles": [1234],
              "status": {"flags": int(StatusFlag.DONE), "rejected": 0}, "repeated": 0}
    ts = ScriptedTransport(_digits_script(0xC0FFEE42, [-5, 7, 0], 2, 1234))
    assert HostDriver(ts).run_session(digits_session(p)) == expect
    ta = AsyncScriptedTransport(_digits_script(0xC0FFEE42, [-5, 7, 0], 2, 1234))
    assert asyncio.run(HostDriver(ta).run_session(digits_session(p))) == expect
    assert ts.sent == ta.sent and len(ts.sent) == 8 and ts.drains == ta.drains == 1
    code, payload = decode_frame(ts.sent[3], sync=ts.sent[3][0])
    assert code == Command.WRITE_MEM and payload[0] == Space.SCRATCH
    assert payload[5:] == b"".join((v & 0xFFFF).to_bytes(4, "little") for v in (1, -2, 3))
    bad = ScriptedTransport(_digits_script(0xC0FFEE42, [0, 0, 0], 0, 1, rejected=1))
    with pytest.raises(LinkError, match="1 rejected frames"):
        HostDriver(bad).run_session(digits_session(p))


def test_drive_sync_refuses_a_request_that_suspends():
    import asyncio

    def once():
        got = yield 21
        return got

    assert drive_sync(once(), lambda op: op * 2) == 42
    with pytest.raises(TypeError, match="use drive_async"):
        drive_sync(once(), lambda op: asyncio.sleep(0))


def test_serial_transport_reads_and_times_out():
    import serial
    from ternac.hostdriver import SerialTransport, open_serial
    t = SerialTransport("loop://", serial_obj=serial.serial_for_url("loop://", timeout=0.05),
                        timeout_s=0.2)
    t.write(b"\x5a\x00\x00")
    assert t.read(3) == b"\x5a\x00\x00"
    with pytest.raises(LinkTimeout, match="within 0.2 s"):
        t.read(1)
    with pytest.raises(LinkError, match="cannot open serial port '/dev/ttyNOPE'"):
        open_serial("/dev/ttyNOPE", 115200)


# -- RTL bench --------------------------------------------------------------------------

def FakeAccelerator():
    """The host-port stub of sim/faults.py (four 32-bit memories of LIMITS words, SCRATCH
    16-bit sign-extended on read, a run of RUN_CYCLES, SLOW_RUN_CYCLES while ``slow``,
    whose result counts the runs)."""
    from ternac.sim.faults import StubAccelerator
    return StubAccelerator(limits=LIMITS, run_cycles=RUN_CYCLES,
                           slow_run_cycles=SLOW_RUN_CYCLES)


class HostlinkBench(wiring.Component):
    """UART pins -> UARTHostlink -> FakeAccelerator."""

    def __init__(self):
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "slow": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = UARTHostlink(divisor=DIVISOR, limits=LIMITS,
                                                config_hash=CONFIG_HASH,
                                                timeout_cycles=TIMEOUT_CYCLES)
        m.submodules.accel = accel = FakeAccelerator()
        connect_accelerator(m, link.host, accel)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx), accel.slow.eq(self.slow)]
        return m


def test_hostlink_rtl_over_uart():
    from ternac.sim.runner import build, run_bench
    runner, bdir = build(HostlinkBench(), "hostlink_bench")
    run_bench(runner, bdir, "hostlink_bench", "test_hostlink_cocotb", inputs={
        "divisor": DIVISOR, "timeout_cycles": TIMEOUT_CYCLES, "config_hash": CONFIG_HASH,
        "limits": LIMITS, "run_cycles": RUN_CYCLES})


@pytest.mark.parametrize("name", ["LM_CONFIG", "LM_T3_CONFIG", "LM_ULX3S_CONFIG"])
def test_session_inputs_carry_the_build_config(name):
    """A session's plain inputs carry the build's AccelConfig (ternac.session "config"),
    and it comes back equal from JSON, so the co-simulated board's driver (sim/board_cosim.py
    _start) checks programs and address limits as the real board's (cfg=) does; a program
    the build cannot run is then refused before a frame goes out."""
    import json

    import ternac.config as config
    from ternac.errors import InputError
    from ternac.golden.isa import Instr, Op, encode
    from ternac.session import _board_inputs
    cfg = getattr(config, name)
    prog = [encode(Instr(Op.HALT))]
    p = json.loads(json.dumps(_board_inputs(cfg, prog, [], "icebreaker")))
    back = config.AccelConfig(**p["config"])
    assert back == cfg and hash(back) == hash(cfg)
    ts = ScriptedTransport([])
    with pytest.raises(InputError):     # SHIFTMAX is not built for the greedy LM
        HostDriver(ts, cfg=back).load_program([encode(Instr(Op.SHIFTMAX, n=4)),
                                               encode(Instr(Op.HALT))])
    assert ts.sent == []
