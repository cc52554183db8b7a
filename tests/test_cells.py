"""ternac.boards.cells: which flip-flops of an iCE40 netlist take a logic cell of their own."""
import json

import pytest

from ternac.boards.cells import cells_by_module, lonely_flip_flops, main


def _cell(type_, **ports):
    """A Yosys JSON cell: ports given as (direction, [bits])."""
    return {"type": type_, "port_directions": {p: d for p, (d, _) in ports.items()},
            "connections": {p: b for p, (_, b) in ports.items()}}


def _netlist(tmp_path):
    o, i = "output", "input"
    cells = {
        # a LUT4 feeding one flip-flop alone: they share a cell
        "core.accel.seq.engine.acc0_SB_LUT4_O": _cell("SB_LUT4", I0=(i, [2]), O=(o, [10])),
        "core.accel.seq.engine.acc0_SB_DFF_Q": _cell("SB_DFF", D=(i, [10]), Q=(o, [11])),
        # a LUT4 feeding a flip-flop and another LUT4: the flip-flop is alone
        "core.accel.seq.U$3.x_SB_LUT4_O": _cell("SB_LUT4", I0=(i, [3]), O=(o, [20])),
        "core.accel.seq.U$3.x1_SB_DFFSR_Q": _cell("SB_DFFSR", D=(i, [20]), Q=(o, [21])),
        "core.accel.seq.U$3.y_SB_LUT4_O": _cell("SB_LUT4", I0=(i, [20]), O=(o, [22])),
        # a delay line: flip-flop after flip-flop
        "core.accel.seq.U$3.x2_SB_DFFSR_Q": _cell("SB_DFFSR", D=(i, [21]), Q=(o, [23])),
        "core.accel.seq.U$3.x3_SB_DFFSR_Q": _cell("SB_DFFSR", D=(i, [23]), Q=(o, [24])),
        # a product registered straight from the DSP
        "core.accel.seq.U$4.prod": _cell("SB_MAC16", A=(i, [4]), O=(o, [30])),
        "core.accel.seq.U$4.p0_SB_DFF_Q": _cell("SB_DFF", D=(i, [30]), Q=(o, [31])),
        "core.accel.seq.U$4.k_SB_DFF_Q": _cell("SB_DFF", D=(i, ["0"]), Q=(o, [32])),
    }
    p = tmp_path / "top.json"
    p.write_text(json.dumps({"modules": {"top": {"cells": cells}}}))
    return p


def test_lonely_flip_flops_by_what_drives_them(tmp_path):
    f = lonely_flip_flops(_netlist(tmp_path))
    assert (f["packed"], f["lonely"]) == (1, 5)
    got = {(r["signal"], r["driver"]): r["count"] for r in f["by_signal"]}
    assert got == {("core.accel.seq.U$3.x", "SB_LUT4*"): 1, ("core.accel.seq.U$3.x", "SB_DFFSR"): 2,
                   ("core.accel.seq.U$4.p", "SB_MAC16"): 1, ("core.accel.seq.U$4.k", "const"): 1}


def test_cells_by_module_sum_to_luts_and_lonely_flip_flops(tmp_path):
    m = cells_by_module(_netlist(tmp_path))
    rows = {r["module"]: r for r in m["modules"]}
    assert rows["core.accel.seq.U$3"]["cells"] == 2 + 3            # 2 LUT4, 3 lonely FF
    assert rows["core.accel.seq.engine"] == {"module": "core.accel.seq.engine", "cells": 1,
                                             "LUT4": 1, "lonely_FF": 0, "packed_FF": 1,
                                             "blocks": {}}
    assert rows["core.accel.seq.U$4"]["blocks"] == {"SB_MAC16": 1}
    assert m["total"] == {"cells": 8, "LUT4": 3, "lonely_FF": 5, "packed_FF": 1}


def test_a_bad_netlist_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{nope")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cells: error: ") and err.count("\n") == 1
    with pytest.raises(ValueError, match="no module"):
        bad.write_text("{}")
        cells_by_module(bad)
    out = tmp_path / "o.json"
    assert main([str(_netlist(tmp_path)), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["flip_flops"]["lonely"] == 5
