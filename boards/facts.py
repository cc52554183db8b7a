"""Board and device facts, stated once: every other module reads them from here.

A pure module (no Amaranth, no torch), so the resource model (``boards/resources.py``), the
builds (``boards/build.py``), programming (``boards/program.py``), the CLI
(``ternac/boards_cli.py``) and the co-simulation (``sim/board_cosim.py``) can all import it
cheaply.

* :data:`DEVICES`: the FPGA dies, with their capacities (``lut4``, ``ff``, ``ebr``,
  ``spram``, ``dsp``: counts of cells; ``ebr_kbit``, ``spram_kbit``: Kbit a block) from
  the vendors' datasheets (literature), the primitive names, and the clock an
  out-of-context unit build is constrained at.
* :data:`FAMILIES`: what a family's block RAM can be configured as (depth x width a
  block), used to count blocks from a memory's depth and width.
* :data:`BOARDS`: the boards, with their device, package, oscillator and default clock,
  clock and button resources, bitstream file, programmer board name, UART, and where the
  weights live.

Sources: Lattice iCE40 UltraPlus Family Data Sheet (FPGA-DS-02008), Table 1.1 (UP5K:
5,280 LUT4s, 30 sysMEM EBR of 4 Kbit, 4 SPRAM of 256 Kbit, 8 DSP blocks); Lattice ECP5 and
ECP5-5G Family Data Sheet (FPGA-DS-02012), Table 1.1 (LFE5U-85: 84K LUTs, i.e. 83,640,
208 EBR of 18 Kbit, 156 18x18 multipliers). nextpnr's utilization report gives the same
``available`` figures (``tests/test_resources.py`` checks it against every measured build
in ``boards/unit_costs.json``).
"""
from __future__ import annotations

import dataclasses

__all__ = ["Device", "Board", "DEVICES", "DEVICE_ALIASES", "FAMILIES", "BOARDS", "device",
           "board", "board_of_device", "DEFAULT_BAUD"]

#: Host-link baud rate every board build uses unless told otherwise.
DEFAULT_BAUD = 115200


@dataclasses.dataclass(frozen=True)
class Device:
    """One FPGA die.

    Attributes
    ----------
    key : str            short name on the command line (``--device``)
    name : str           in words, for messages
    family : str         ``FAMILIES`` key (``ice40`` / ``ecp5``)
    platform_device, package, speed : str
                         as amaranth-boards' platform states them (``platform.device`` ...)
    part : str           the full part number written into reports
    lut4, ff, ebr, spram, dsp : int
                         capacities (cells); ``ebr_kbit`` / ``spram_kbit`` Kbit a block
    lut_cell, ebr_cell, spram_cell, dsp_cell : str
                         the primitive names, for messages
    ooc_mhz : float      clock an out-of-context unit build is constrained at (fast enough
                         that nextpnr optimises for speed)
    """
    key: str
    name: str
    family: str
    platform_device: str
    package: str
    speed: str | None
    part: str
    lut4: int
    ff: int
    ebr: int
    ebr_kbit: int
    spram: int
    spram_kbit: int
    dsp: int
    lut_cell: str
    ebr_cell: str
    spram_cell: str | None
    dsp_cell: str
    ooc_mhz: float

    def capacity(self) -> dict:
        """``{LUT, FF, EBR, SPRAM, DSP}``: cells of each kind on the die."""
        return {"LUT": self.lut4, "FF": self.ff, "EBR": self.ebr, "SPRAM": self.spram,
                "DSP": self.dsp}

    def words(self, kind: str) -> str:
        """A resource kind (``LUT`` ...) in this device's words, e.g. ``SB_MAC16 DSPs``."""
        return {"LUT": "LUT4s", "FF": "flip-flops", "EBR": f"{self.ebr_cell} blocks",
                "SPRAM": f"{self.spram_cell} blocks", "DSP": f"{self.dsp_cell} DSPs"}[kind]


DEVICES: dict[str, Device] = {
    "up5k": Device(
        key="up5k", name="iCE40 UP5K", family="ice40", platform_device="iCE40UP5K",
        package="SG48", speed=None, part="iCE40UP5K-SG48", lut4=5280, ff=5280, ebr=30,
        ebr_kbit=4, spram=4, spram_kbit=256, dsp=8, lut_cell="SB_LUT4",
        ebr_cell="SB_RAM40_4K", spram_cell="SB_SPRAM256KA", dsp_cell="SB_MAC16", ooc_mhz=48.0),
    "ecp5-85": Device(
        key="ecp5-85", name="ECP5-85F", family="ecp5", platform_device="LFE5U-85F",
        package="BG381", speed="6", part="LFE5U-85F-6BG381C", lut4=83640, ff=83640, ebr=208,
        ebr_kbit=18, spram=0, spram_kbit=0, dsp=156, lut_cell="LUT4", ebr_cell="DP16KD",
        spram_cell=None, dsp_cell="MULT18X18D", ooc_mhz=100.0),
}
#: Other names accepted for a device.
DEVICE_ALIASES = {"85f": "ecp5-85"}

#: Block RAM of each family: ``ebr_modes`` the (depth, width) shapes one block takes
#: (iCE40 SB_RAM40_4K: Lattice "Memory Usage Guide for iCE40 Devices", TN1250; ECP5 DP16KD,
#: up to 512 x 36 in pseudo dual-port mode: "ECP5 Memory Usage Guide", TN1264), ``spram``
#: the (depth, width) of one SPRAM ("iCE40 SPRAM Usage Guide", TN1314), ``pnr`` / ``pack``
#: the place-and-route and pack commands, ``synth_opts`` what ``synth_*`` is given.
FAMILIES = {
    "ice40": {"ebr_modes": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
              "spram": (16384, 16), "pnr": "nextpnr-ice40", "pack": "icepack",
              "synth_opts": "-dsp"},
    "ecp5": {"ebr_modes": ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18),
                           (512, 36)),
             "spram": None, "pnr": "nextpnr-ecp5", "pack": "ecppack", "synth_opts": ""},
}


@dataclasses.dataclass(frozen=True)
class Board:
    """One board.

    Attributes
    ----------
    key : str            ``--board`` name
    name : str           in words
    device : str         ``DEVICES`` key
    module : str         the Python module of its top (``ICEBreakerTop`` / ``ULX3STop``)
    top : str            the top's class name in ``module``
    osc_mhz : float      the oscillator (MHz)
    default_mhz : float  the core clock a build uses by default (a PLL makes it when it
                         differs from ``osc_mhz``)
    clock : str          amaranth-boards resource of the oscillator
    button : str         amaranth-boards resource of the reset button
    bitstream : str      file name of the packed bitstream
    programmer : str     openFPGALoader's ``-b`` board name
    iceprog : bool       ``iceprog`` can program it (writes the SPI flash)
    weights : str        where the weight memory lives: ``spram`` (loaded over the host
                         link) or ``ebr`` (baked into the bitstream)
    uart : str           the USB UART of the host link, in words
    baud : int           default host-link baud rate
    """
    key: str
    name: str
    device: str
    module: str
    top: str
    osc_mhz: float
    default_mhz: float
    clock: str
    button: str
    bitstream: str
    programmer: str
    iceprog: bool
    weights: str
    uart: str
    baud: int = DEFAULT_BAUD

    @property
    def dev(self) -> Device:
        return DEVICES[self.device]

    @property
    def family(self) -> str:
        return DEVICES[self.device].family


BOARDS: dict[str, Board] = {
    "icebreaker": Board(
        key="icebreaker", name="iCEBreaker", device="up5k", module="ternac.boards.icebreaker",
        top="ICEBreakerTop", osc_mhz=12.0, default_mhz=12.0, clock="clk12", button="button",
        bitstream="top.bin", programmer="ice40_generic", iceprog=True, weights="spram",
        uart="FT2232H channel B (/dev/ttyUSB1)"),
    "ulx3s": Board(
        key="ulx3s", name="ULX3S", device="ecp5-85", module="ternac.boards.ulx3s",
        top="ULX3STop", osc_mhz=25.0, default_mhz=40.0, clock="clk25", button="button_fire",
        bitstream="top.bit", programmer="ulx3s", iceprog=False, weights="ebr",
        uart="FT231X (/dev/ttyUSB0)"),
}


def board(key: str) -> Board:
    """The :class:`Board` called ``key``. Raises ValueError (one sentence) if unknown."""
    try:
        return BOARDS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {key!r}; choose one of {', '.join(BOARDS)}") from None


def device(key: str) -> Device:
    """The :class:`Device` called ``key`` (or an alias). Raises ValueError if unknown."""
    key = DEVICE_ALIASES.get(key, key)
    try:
        return DEVICES[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown device {key!r}; choose one of {', '.join(DEVICES)}") from None


def board_of_device(key: str) -> Board:
    """The board whose platform (pins, clock) an out-of-context build on ``key`` borrows."""
    dev = device(key)
    return next(b for b in BOARDS.values() if b.device == dev.key)
