"""The dependency rules of DESIGN.md: golden/ never imports Amaranth; hw/ never imports
torch (it sizes its datapaths from golden.widths and golden.isa, which are torch-free)."""
import subprocess
import sys

import pytest

HW = ["ternac.hw.top", "ternac.hw.verilog", "ternac.hw.vector_units", "ternac.hw.activation", "ternac.hw.norm", "ternac.hw.eltwise",
      "ternac.hw.shiftmax", "ternac.hw.uart", "ternac.hw.spram", "ternac.hw.hostlink"]
GOLDEN = ["ternac.golden.numerics", "ternac.golden.packing", "ternac.golden.isa", "ternac.golden.image", "ternac.golden.mlp",
          "ternac.golden.intops", "ternac.golden.vecops", "ternac.golden.interpreter", "ternac.golden.lm", "ternac.golden.lm_int",
          "ternac.golden.sampler"]


def _imports(modules, code):
    src = f"import sys\nfor m in {modules!r}: __import__(m)\n{code}"
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True)


@pytest.mark.parametrize("mod", HW)
def test_hw_does_not_import_torch(mod):
    r = _imports([mod], "print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", f"{mod} imports torch"


def test_hw_builds_vector_units_without_torch():
    r = _imports(["ternac.hw.vector_units", "ternac.config"],
                 "from ternac.config import AccelConfig\n"
                 "from ternac.hw.vector_units import vector_units_for\n"
                 "vector_units_for(AccelConfig(vector=('activation','norm','eltwise','shiftmax')))\n"
                 "print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_golden_does_not_import_amaranth():
    r = _imports(GOLDEN, "print(any(k.split('.')[0] == 'amaranth' for k in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
