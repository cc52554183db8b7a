"""Clock and reset for the board tops: PLL parameter search (iCE40 SB_PLL40, ECP5 EHXPLLL)
and a power-on / button / PLL-lock reset synchronised into the ``sync`` domain.

The PLL searches follow the device rules that icepll and ecppll (Project IceStorm /
Project Trellis) use: iCE40 PFD 10..133 MHz, VCO 533..1066 MHz (iCE40 LP/HX/UltraPlus
family handbook, "sysCLOCK PLL"); ECP5 PFD 3.125..400 MHz, VCO 400..800 MHz (Lattice
TN1263).
"""
from __future__ import annotations

import dataclasses

from amaranth import ClockDomain, ClockSignal, Const, Instance, Module, ResetSignal, Signal, Value
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["ICE40PLL", "ECP5PLL", "ice40_pll", "ecp5_pll", "add_sync_domain", "ice40_pll_instance",
           "ecp5_pll_instance"]


@dataclasses.dataclass(frozen=True)
class ICE40PLL:
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_out_mhz: float


@dataclasses.dataclass(frozen=True)
class ECP5PLL:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_out_mhz: float


def ice40_pll(f_in_mhz: float, f_out_mhz: float, *, tolerance: float = 0.01) -> ICE40PLL:
    """SB_PLL40 divider settings (simple feedback) closest to ``f_out_mhz``.

    f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ).

    Raises
    ------
    ValueError if no setting lands within ``tolerance`` (a fraction) of the request.
    """
    best = None
    for divr in range(16):
        f_pfd = f_in_mhz / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                err = abs(f_out - f_out_mhz)
                if best is None or err < best[0]:
                    fr = next(i for i, lim in enumerate((17, 26, 44, 66, 101), 1) if f_pfd < lim) \
                        if f_pfd < 101 else 6
                    best = (err, ICE40PLL(divr, divf, divq, fr, f_out))
    if best is None or best[0] > tolerance * f_out_mhz:
        raise ValueError(f"the iCE40 PLL cannot make {f_out_mhz:g} MHz from {f_in_mhz:g} MHz "
                         f"(closest {best[1].f_out_mhz:.3f} MHz)" if best else
                         f"the iCE40 PLL cannot make {f_out_mhz:g} MHz from {f_in_mhz:g} MHz")
    return best[1]


def ecp5_pll(f_in_mhz: float, f_out_mhz: float, *, tolerance: float = 0.01) -> ECP5PLL:
    """EHXPLLL divider settings (CLKOP feedback) closest to ``f_out_mhz``.

    f_out = f_in / CLKI_DIV * CLKFB_DIV; VCO = f_out * CLKOP_DIV.

    Raises
    ------
    ValueError if no setting lands within ``tolerance`` of the request.
    """
    best = None
    for clki in range(1, 129):
        f_pfd = f_in_mhz / clki
        if not 3.125 <= f_pfd <= 400:
            continue
        for fb in range(1, 81):
            f_out = f_pfd * fb
            for op in range(1, 129):
                f_vco = f_out * op
                if not 400 <= f_vco <= 800:
                    continue
                # Closest frequency first, then the VCO nearest the middle of its range.
                err = (round(abs(f_out - f_out_mhz), 9), abs(f_vco - 600))
                if best is None or err < best[0]:
                    best = (err, ECP5PLL(clki, fb, op, f_out))
    if best is None or best[0][0] > tolerance * f_out_mhz:
        raise ValueError(f"the ECP5 PLL cannot make {f_out_mhz:g} MHz from {f_in_mhz:g} MHz")
    return best[1]


def add_sync_domain(m: Module, clk, *, reset=Const(0), locked=Const(1), por_cycles: int):
    """Create the ``sync`` domain clocked by ``clk``, held in reset for ``por_cycles`` after
    configuration (iCE40 BRAM reads as zero for ~3 us after configuration), while
    ``reset`` is high, and until the PLL ``locked``; the release is synchronised."""
    m.domains.sync = ClockDomain("sync")
    m.domains.por = ClockDomain("por", reset_less=True, local=True)
    m.d.comb += [ClockSignal("sync").eq(clk), ClockSignal("por").eq(clk)]
    timer = Signal(range(por_cycles + 1))
    ready = Signal()
    with m.If(timer == por_cycles):
        m.d.por += ready.eq(1)
    with m.Else():
        m.d.por += timer.eq(timer + 1)
    arst = Signal()
    m.d.comb += arst.eq(~ready | Value.cast(reset)[0] | ~Value.cast(locked)[0])
    m.submodules.reset_sync = ResetSynchronizer(arst, domain="sync")
    return ResetSignal("sync")


def ice40_pll_instance(pll: ICE40PLL, pad, clk_out, lock):
    """SB_PLL40_PAD fed straight from the clock pad ``pad`` (an IO port)."""
    return Instance(
        "SB_PLL40_PAD",
        p_FEEDBACK_PATH="SIMPLE",
        p_DIVR=pll.divr, p_DIVF=pll.divf, p_DIVQ=pll.divq,
        p_FILTER_RANGE=pll.filter_range,
        io_PACKAGEPIN=pad,
        i_RESETB=Const(1), i_BYPASS=Const(0),
        o_PLLOUTGLOBAL=clk_out, o_LOCK=lock,
    )


def ecp5_pll_instance(pll: ECP5PLL, f_in_mhz: float, clk_in, clk_out, lock):
    """EHXPLLL with CLKOP feedback (the settings ecppll writes)."""
    return Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{f_in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{pll.f_out_mhz:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=pll.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll.clkop_div,
        p_CLKOP_CPHASE=(pll.clkop_div - 1) // 2, p_CLKOP_FPHASE=0,
        p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=pll.clkfb_div,
        i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0), o_LOCK=lock,
    )
