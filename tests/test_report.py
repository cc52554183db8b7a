"""ternac report: a report built from small inputs through the real code path (a small build
report, a tiny RTL run's figures and a small activity count are injected; the CPU baseline is
measured for real on the digits model at batch 1), written out and read back: report.html
parsed with the standard library's HTML parser, every <img> an embedded PNG, every number of
its tables equal to report.json, a kind for every figure."""
from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser

import pytest

from ternac import report as R

BUILD = {
    "board": "icebreaker", "model": "digits", "device": "iCE40UP5K-SG48", "lanes": 8,
    "clock_MHz_constrained": 12.0, "fmax_MHz_achieved": 14.89, "timing_met": True, "pll": False,
    "resources": {"LUT": {"used": 3314, "available": 5280}, "FF": {"used": 1657, "available": 5280},
                  "EBR": {"used": 19, "available": 30}, "SPRAM": {"used": 1, "available": 4},
                  "DSP": {"used": 5, "available": 8}, "IO": {"used": 10, "available": 39}},
    "critical_path": {"delay_ns": 67.0, "logic_levels": 26},
}
RTL = {"cycles": 2240, "cycles_min": 2240, "cycles_max": 2240, "runs": 2, "mismatching": 0,
       "trits": 17024}
CYCLE_MODEL = {"total": 2240, "total_min": 2240, "exact": True,
               "by_op": {"MATVEC": 2200, "ARGMAX": 31, "HALT": 3, "EMBED": 6}}
ACTIVITY = {"cycles": 2240, "ff_bits": 1267, "ff_toggles": 76768, "ff_alpha": 0.02705,
            "logic_bits": 8948, "logic_toggles": 1598730, "logic_alpha": 0.07976,
            "memories": {"t.weights.mem": {"width": 16, "depth": 4096, "read_ports": 1,
                                           "reads": 2177, "read_cycles": 2240, "writes": 0},
                         "t.scratch": {"width": 16, "depth": 1024, "read_ports": 2,
                                       "reads": 2180, "read_cycles": 4480, "writes": 192}},
            "multipliers": {"t.seq.requant.m": {"a_bits": 18, "b_bits": 16, "ops": 239}},
            "vars": 743}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from ternac.baselines import measure_cpu
    cpu = measure_cpu(workloads=("digits_int",), batches=(1,), repeats=1, block_s=0.02,
                      warmup=1, threads=1, max_point_s=2.0)
    rep = R.make_report("icebreaker", "digits", progress=False, command="pytest",
                        inject={"build": BUILD, "rtl": RTL, "cycle_model": CYCLE_MODEL,
                                "activity": ACTIVITY, "cpu": cpu})
    out = tmp_path_factory.mktemp("report")
    R.write_report(rep, out)
    return rep, out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.links, self.scripts = [], [], [], []
        self._key, self._text = None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag in ("link", "script", "iframe", "object", "embed"):
            self.links.append((tag, a))
        elif tag == "td" and "data-key" in a:
            self._key, self._text = a["data-key"], []

    def handle_data(self, data):
        if self._key is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._key is not None:
            self.cells.append((self._key, "".join(self._text)))
            self._key = None


def _page(out) -> _Page:
    p = _Page()
    p.feed((out / "report.html").read_text())
    return p


def test_images_are_embedded_pngs(made):
    rep, out = made
    p = _page(out)
    assert len(p.imgs) == 5
    for img in p.imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert w > 100 and h > 100
    assert not p.links, "the page must need no external file"


def test_every_table_number_equals_report_json(made):
    rep, out = made
    disk = json.loads((out / "report.json").read_text())
    figs = disk["figures"]
    p = _page(out)
    assert len(p.cells) > 80
    for key, text in p.cells:
        assert key in figs, key
        shown = float(text.replace(",", ""))
        v = figs[key]
        if isinstance(v, int):
            assert shown == v, (key, text, v)
        else:
            # 4 significant digits are shown: equal within half a unit of the last one
            assert math.isclose(shown, v, rel_tol=5e-4, abs_tol=5e-4 * abs(v) + 1e-12), (key, text, v)
        assert text == R.fmt(v)
    # the Markdown shows the same
    md = (out / "report.md").read_text()
    for key, text in p.cells:
        assert f"| {text} |" in md


def test_kinds_cover_every_figure(made):
    rep, out = made
    disk = json.loads((out / "report.json").read_text())
    assert set(disk["kinds"]) == set(disk["figures"])
    assert set(disk["kinds"].values()) <= set(R.KINDS)
    k = disk["kinds"]
    assert k["rtl_cycles_per_inference"] == "measured"
    assert k["inferences_per_s"] == "derived"
    assert k["power_mW"] == k["uJ_per_inference"] == k["pJ_per_trit_mac"] == "modelled"
    assert k["model_cycles_per_inference"] == "modelled"
    assert all(v == "literature" for kk, v in k.items() if kk.startswith("lit_"))
    assert any(kk.startswith("cpu_digits_int_batch1") for kk in k)
    assert any(kk.startswith("gpu_digits_int_best") for kk in k)


def test_arithmetic(made):
    from ternac import power
    rep, _ = made
    f = rep["figures"]
    assert f["inferences_per_s"] == pytest.approx(12e6 / 2240)
    assert f["trit_macs_per_s"] == pytest.approx(12e6 / 2240 * 17024)
    assert f["LUT_utilization"] == pytest.approx(3314 / 5280)
    assert f["power_mW_low"] <= f["power_mW"] <= f["power_mW_high"]
    assert f["uJ_per_inference"] == pytest.approx(f["power_mW"] * 2240 / (12 * 1000))
    assert f["pJ_per_trit_mac"] == pytest.approx(f["uJ_per_inference"] * 1e6 / 17024)
    rates = power.rates_from_activity(ACTIVITY, "ice40", "spram", 5)
    est = power.estimate("ice40", 12.0, {k: v["used"] for k, v in BUILD["resources"].items()
                                         if k != "IO"}, rates)
    assert f["power_mW"] == pytest.approx(est["point_mW"])
    assert f["model_over_rtl_cycles"] == 1.0
    # the GPU figures are the committed file's, and the report says so
    gpu = json.loads((R.REPO / "results" / "gpu_h200.json").read_text())
    assert f["gpu_digits_int_best_inferences_per_s"] == gpu["workloads"]["digits_int"]["best"]["inferences_per_s"]
    assert any("committed" in n and "gpu_h200.json" in n for n in rep["notes"])
    assert any("No vendor power estimator" in n for n in rep["notes"])


def test_model_that_does_not_fit_is_one_sentence(tmp_path, capsys):
    from ternac.cli import main
    assert main(["report", "--board", "icebreaker", "--model", "shakespeare",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ternac: error: the shakespeare model does not fit the iCEBreaker")
    assert "\n" not in err
    assert not (tmp_path / "r" / "report.json").exists()
    (tmp_path / "f").write_text("x")
    assert main(["report", "--board", "ulx3s", "--model", "digits", "--out", str(tmp_path / "f")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("kw, says", [
    ({"tokens": 0}, "--tokens must be a whole number from 1 to 64 (Verilator runs, each "
                    "compared with golden), not 0"),
    ({"inferences": 65}, "--inferences must be a whole number from 1 to 64"),
    ({"inferences": 1.5}, "--inferences must be a whole number from 1 to 64"),
    ({"lanes": 6}, "lanes must be a multiple of 4 from 4 to 128, not 6"),
    ({"lanes": 0}, "lanes must be a multiple of 4 from 4 to 128, not 0"),
])
def test_make_report_refuses_what_the_parser_does(kw, says):
    """The API takes the CLI's ranges, in its sentences; a bad lane count is that (lanes 0
    was the default, 6 'does not fit'), before any build or run."""
    with pytest.raises(R.ReportError) as e:
        R.make_report("icebreaker", "digits", progress=False, **kw)
    assert str(e.value).startswith(says) and "does not fit" not in str(e.value)


def test_fallback_board():
    board, note = R._board_for("icebreaker", "shakespeare", 32, True)
    assert board == "ulx3s" and note["asked"] == "icebreaker" and note["reason"]
    assert R._board_for("ulx3s", "digits", 8, False) == ("ulx3s", None)


def test_fmt_reads_back():
    for v in (0.0, 1, 12345678, 3.14159, 0.000123456, 5501385.127, 2.5e-7, 42.0, 999.96):
        t = R.fmt(v)
        assert math.isclose(float(t.replace(",", "")), v, rel_tol=5e-4), (v, t)
