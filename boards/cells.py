"""Where an iCE40 design's logic cells go: LUT4s and lonely flip-flops per module.

nextpnr-ice40 packs a design into logic cells (ICESTORM_LC: one LUT4, one flip-flop and a
carry each). A flip-flop shares a cell with a LUT4 only when its D input is driven by a LUT4
whose output drives nothing else (the cell has one output: the LUT's or the flip-flop's), so
a flip-flop fed by another flip-flop (a delay line), by a block RAM, SPRAM or SB_MAC16 output,
or by a LUT4 with other loads takes a cell of its own. The cell count is then about LUT4s +
those flip-flops (+ carry-only cells and chain legalisation, which nextpnr reports); this
module reads the flattened netlist Yosys writes for place and route (``top.json`` of a build
folder, kept in ``<folder>.failed`` when the design does not fit) and says where both are.

Attribution is by cell name: Yosys names a LUT4 after the net it drives and a flip-flop
after its output, and the names carry the Amaranth hierarchy (``core.accel.seq.engine...``),
so a cell goes to the deepest submodule its name starts with. A LUT4 that Yosys named after a
net of another module (a multiplexer in front of a memory's write port is named after the
memory) lands there: the figures per module are approximate, the totals exact.

Usage::

    python -m ternac.boards.cells build/icebreaker-L32.failed/top.json [--top 20] [--json F]
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys

__all__ = ["lonely_flip_flops", "cells_by_module", "main"]

#: A name component that is a submodule (Amaranth's anonymous ``U$n``, the named ones of the
#: accelerator and board tops, and numbered memory slices) rather than a signal.
_SUBMODULE = re.compile(r"^(U\$\d+|engine|requant|streamer|fifo|div|isqrt|scratch\w*|bank\d+|"
                        r"(?:activation|norm|eltwise|shiftmax|dot)(?:_\d+)?|mulpool|"
                        r"outbuf|prog|weights|mem\d*|link|uart_\w+|accel|seq|core|\d+)$")


def _netlist(path) -> dict:
    try:
        j = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable Yosys JSON netlist ({exc})") from None
    mods = j.get("modules") or {}
    if not mods:
        raise ValueError(f"{path} holds no module")
    return mods.get("top") or next(iter(mods.values()))


def _drivers(cells: dict):
    drv, sinks = {}, collections.Counter()
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c.get("connections", {}).items():
            for b in bits:
                if not isinstance(b, int):
                    continue
                if dirs.get(port) == "output":
                    drv[b] = (name, c["type"])
                else:
                    sinks[b] += 1
    return drv, sinks


def _kind(cell: dict, drv: dict, sinks) -> str:
    """``packed``, or what makes a flip-flop lonely: the type driving D (``SB_LUT4*`` for a
    LUT4 with other loads, ``const`` for a constant)."""
    d = cell["connections"].get("D", [None])[0]
    if not isinstance(d, int) or d not in drv:
        return "const"
    t = drv[d][1]
    if t == "SB_LUT4":
        return "packed" if sinks[d] == 1 else "SB_LUT4*"
    return t


def _module(name: str) -> str:
    out = []
    for part in re.sub(r"_SB_.*", "", name).split(".")[:-1]:
        if not _SUBMODULE.match(part):
            break
        out.append(part)
    return ".".join(out) or "(top)"


def lonely_flip_flops(path) -> dict:
    """Flip-flops of an iCE40 netlist that cannot share a logic cell with a LUT4.

    Parameters
    ----------
    path : str or pathlib.Path   a flattened ``synth_ice40`` JSON netlist (``write_json``)

    Returns
    -------
    dict: ``packed`` (int, flip-flops a LUT4 feeds alone), ``lonely`` (int), ``by_signal``
    (list of ``{signal, driver, count}``, most first: the flip-flop's name with its bit
    number and Yosys suffix removed, and what drives D: a cell type, ``SB_LUT4*`` for a LUT4
    with other loads, ``const``).

    Raises
    ------
    ValueError if ``path`` is not a readable netlist.
    """
    cells = _netlist(path)["cells"]
    drv, sinks = _drivers(cells)
    tally, packed, lonely = collections.Counter(), 0, 0
    for name, c in cells.items():
        if not c["type"].startswith("SB_DFF"):
            continue
        k = _kind(c, drv, sinks)
        if k == "packed":
            packed += 1
            continue
        lonely += 1
        tally[(re.sub(r"\d+$", "", re.sub(r"_SB_.*", "", name)), k)] += 1
    return {"packed": packed, "lonely": lonely,
            "by_signal": [{"signal": s, "driver": k, "count": n}
                          for (s, k), n in tally.most_common()]}


def cells_by_module(path) -> dict:
    """LUT4s and lonely flip-flops of an iCE40 netlist per module (see the module docstring).

    Returns
    -------
    dict: ``modules`` (list of ``{module, cells, LUT4, lonely_FF, packed_FF, blocks}``, most
    cells first; ``cells`` = LUT4 + lonely_FF, the logic cells before carry-only cells and
    chain legalisation; ``blocks`` the SB_RAM40_4K / SB_SPRAM256KA / SB_MAC16 named there),
    ``total`` (the same keys summed).

    Raises
    ------
    ValueError if ``path`` is not a readable netlist.
    """
    cells = _netlist(path)["cells"]
    drv, sinks = _drivers(cells)
    per = collections.defaultdict(collections.Counter)
    for name, c in cells.items():
        t, mod = c["type"], _module(name)
        if t == "SB_LUT4":
            per[mod]["LUT4"] += 1
        elif t.startswith("SB_DFF"):
            per[mod]["packed_FF" if _kind(c, drv, sinks) == "packed" else "lonely_FF"] += 1
        elif t in ("SB_RAM40_4K", "SB_SPRAM256KA", "SB_MAC16"):
            per[mod][t] += 1
    rows, total = [], collections.Counter()
    for mod, v in per.items():
        row = {"module": mod, "cells": v["LUT4"] + v["lonely_FF"], "LUT4": v["LUT4"],
               "lonely_FF": v["lonely_FF"], "packed_FF": v["packed_FF"],
               "blocks": {k: v[k] for k in ("SB_RAM40_4K", "SB_SPRAM256KA", "SB_MAC16") if v[k]}}
        rows.append(row)
        total.update({k: row[k] for k in ("cells", "LUT4", "lonely_FF", "packed_FF")})
    rows.sort(key=lambda r: (-r["cells"], r["module"]))
    return {"modules": rows, "total": dict(total)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ternac.boards.cells",
                                 description="Logic cells of an iCE40 build per module, and the "
                                             "flip-flops that take a cell of their own.")
    ap.add_argument("netlist", help="a build's flattened Yosys netlist, e.g. "
                                    "build/icebreaker-L32.failed/top.json")
    from ternac.cliargs import whole
    ap.add_argument("--top", type=whole("--top", 1), default=20, help="rows to print (default 20)")
    ap.add_argument("--json", help="also write both tables here")
    a = ap.parse_args(argv)
    try:
        mods, ffs = cells_by_module(a.netlist), lonely_flip_flops(a.netlist)
    except ValueError as exc:
        print(f"cells: error: {exc}", file=sys.stderr)
        return 2
    print(f"{'module':44s} {'cells':>6s} {'LUT4':>6s} {'lonely FF':>9s} {'packed FF':>9s}")
    for r in mods["modules"][:a.top]:
        print(f"{r['module'][:44]:44s} {r['cells']:6d} {r['LUT4']:6d} {r['lonely_FF']:9d} "
              f"{r['packed_FF']:9d}")
    t = mods["total"]
    print(f"{'total':44s} {t.get('cells', 0):6d} {t.get('LUT4', 0):6d} "
          f"{t.get('lonely_FF', 0):9d} {t.get('packed_FF', 0):9d}")
    print(f"\nflip-flops in a cell of their own: {ffs['lonely']} (packed with a LUT4: "
          f"{ffs['packed']}); most:")
    for r in ffs["by_signal"][:a.top]:
        print(f"{r['count']:6d}  {r['driver']:14s} {r['signal']}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"modules": mods, "flip_flops": ffs},
                                                   indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
