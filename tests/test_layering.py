"""The dependency rules of DESIGN.md, checked on every module of the package.

Every ``.py`` file of golden/, hw/, sim/, boards/ and ternac/ (installed as ternac.golden.*,
ternac.hw.*, ternac.sim.*, ternac.boards.*, ternac.*) is parsed with ``ast``; every import
in it, at module level or inside a function, must point down (or sideways within its own
layer) in this table:

    rank  layer      modules
    0     golden     ternac.golden.*   the integer golden models and numeric rules
    1     compiler   ternac.config, errors, protocol, hostdriver, session, lower,
                     cliargs, boards.facts  what the RTL is generated from, the host side of
                                       the link and the command lines' argument types,
                                       below the RTL
    2     hw         ternac.hw.*       the Amaranth RTL
    3     boards     ternac.boards.*   board tops, builds, programming
    3     sim        ternac.sim.*      Verilator/cocotb simulation; sim may import boards
                                       (the co-simulation runs a board's core), boards never
                                       imports sim
    4     front      ternac.cli, lm_cli, boards_cli, runner, bench_numerics, baselines
                                       command lines, backend dispatch, reports, benches

A module of ternac/ that is not in the table fails the test: classify it in ``LAYER``.
Further rules: golden never imports Amaranth; hw never imports torch (checked statically
and, transitively, by importing every module); nothing below hw imports Amaranth; the wire
protocol (ternac.protocol) imports only the standard library, and it, the host driver and
the sessions load neither torch nor Amaranth; no import names the bare folders golden, hw,
sim or boards (they are ternac.golden, ...); the import graph has no cycle.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

#: Source folder -> the package it installs as (pyproject.toml [tool.setuptools.package-dir]).
FOLDERS = {"golden": "ternac.golden", "hw": "ternac.hw", "sim": "ternac.sim",
           "boards": "ternac.boards", "ternac": "ternac"}

#: Rank of each layer: an import may point to a lower rank, or to its own layer.
RANK = {"golden": 0, "compiler": 1, "hw": 2, "boards": 3, "sim": 3, "front": 4}
#: Imports allowed between two layers of the same rank: (importer, imported).
SIDEWAYS = {("sim", "boards")}

#: The layer of each module: a package entry covers the package and everything in it; the
#: exact entries (ternac/*.py, and modules placed below their folder) win over a package's.
LAYER = {
    # packages
    "ternac.golden": "golden",
    "ternac.hw": "hw",
    "ternac.boards": "boards",
    "ternac.sim": "sim",
    # ternac/ itself: the root package (kept empty of imports) and each module
    "ternac": "golden",
    "ternac.config": "compiler",
    "ternac.errors": "compiler",
    "ternac.protocol": "compiler",
    "ternac.hostdriver": "compiler",
    "ternac.session": "compiler",
    "ternac.lower": "compiler",
    "ternac.cli": "front",
    "ternac.lm_cli": "front",
    "ternac.boards_cli": "front",
    "ternac.runner": "front",
    "ternac.bench_numerics": "front",
    "ternac.baselines": "front",
    "ternac.power": "front",
    "ternac.report": "front",
    "ternac.sweep": "front",
    "ternac.bench": "front",
    "ternac.simcli": "front",
    # argument types shared by every command line, sim/ and boards/ entry points too
    # (standard library only)
    "ternac.cliargs": "compiler",
    # pure data placed below its folder: board and device facts (no imports of the package)
    "ternac.boards.facts": "compiler",
}
PACKAGES = ("ternac.golden", "ternac.hw", "ternac.boards", "ternac.sim")
BARE = {"golden", "hw", "sim", "boards"}


def _modules() -> dict[str, pathlib.Path]:
    """Every module of the package: dotted name -> file."""
    mods = {}
    for folder, pkg in FOLDERS.items():
        for f in sorted((REPO / folder).glob("*.py")):
            mods[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return mods


MODULES = _modules()


def layer_of(mod: str) -> str | None:
    """The layer of a module of the package (None: not classified)."""
    if mod in LAYER:
        return LAYER[mod]
    for pkg in PACKAGES:
        if mod.startswith(pkg + "."):
            return LAYER[pkg]
    return None


def _is_package(mod: str) -> bool:
    return MODULES[mod].name == "__init__.py"


def _where(mod: str, line: int) -> str:
    f = MODULES[mod]
    return f"{f.relative_to(REPO) if f.is_relative_to(REPO) else f}:{line}"


def imports(mod: str) -> list[tuple[int, str, bool]]:
    """Every import in ``mod``: (line, imported name, is a package module) with relative
    imports resolved, ``from P import m`` read as module ``P.m`` where that is a module,
    and a bare sibling of a sim/ module (the simulator puts sim/ on the path, so
    ``from streams import ...`` in a bench is ternac.sim.streams) as that sibling."""
    tree = ast.parse(MODULES[mod].read_text(), str(MODULES[mod]))
    here = mod if _is_package(mod) else mod.rpartition(".")[0]
    out = []

    def add(line, name, names=()):
        if name.split(".")[0] in BARE:
            out.append((line, name, False))     # reported by test_no_bare_folder_imports
            return
        if mod.startswith("ternac.sim.") and f"ternac.sim.{name}" in MODULES:
            name = f"ternac.sim.{name}"
        if not (name == "ternac" or name.startswith("ternac.")):
            out.append((line, name, False))
            return
        subs = [f"{name}.{n}" for n in names if f"{name}.{n}" in MODULES]
        for s in subs:
            out.append((line, s, True))
        if len(subs) < len(names) or not names:
            out.append((line, name, True))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(node.lineno, a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            add(node.lineno, name, [a.name for a in node.names])
    return out


def test_the_package_is_found():
    assert len(MODULES) > 60 and all(m in MODULES for m in ("ternac.golden.isa", "ternac.hw.top",
                                                            "ternac.sim.runner", "ternac.cli"))


def test_every_module_is_classified():
    missing = [m for m in MODULES if layer_of(m) is None]
    assert not missing, (f"modules without a layer: {missing}; add each to LAYER in "
                         f"tests/test_layering.py (see the table in its docstring)")


def test_imports_point_down():
    bad = []
    for mod in MODULES:
        src = layer_of(mod)
        for line, name, internal in imports(mod):
            if not internal:
                continue
            if name not in MODULES:
                bad.append(f"{_where(mod, line)}: imports {name}, which is not a module of "
                           f"the package")
                continue
            dst = layer_of(name)
            if src is None or dst is None:
                continue        # unclassified: test_every_module_is_classified says so
            ok = (RANK[dst] < RANK[src] or dst == src or (src, dst) in SIDEWAYS)
            if not ok:
                bad.append(f"{_where(mod, line)}: {mod} ({src}, rank {RANK[src]}) imports "
                           f"{name} ({dst}, rank {RANK[dst]})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_bare_folder_imports():
    bad = [f"{_where(m, line)}: imports {name}; write ternac.{name}"
           for m in MODULES for line, name, _ in imports(m) if name.split(".")[0] in BARE]
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    graph = {m: sorted({n for _, n, internal in imports(m) if internal and n in MODULES and n != m})
             for m in MODULES}
    # A package's __init__ is imported before its modules anyway: leave those edges out.
    graph = {m: [n for n in deps if not m.startswith(n + ".")] for m, deps in graph.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m)


def _third_party(mod: str) -> set[str]:
    return {name.split(".")[0] for _, name, internal in imports(mod) if not internal}


@pytest.mark.parametrize("lay, banned", [("golden", "amaranth"), ("compiler", "amaranth"),
                                         ("hw", "torch")])
def test_layer_does_not_import(lay, banned):
    bad = [m for m in MODULES if layer_of(m) == lay and banned in _third_party(m)]
    assert not bad, f"{lay} modules import {banned}: {bad}"


def test_protocol_is_standard_library_only():
    extra = _third_party("ternac.protocol") - set(sys.stdlib_module_names) - {"__future__"}
    assert not extra, f"ternac.protocol imports {sorted(extra)}"
    assert not [n for _, n, internal in imports("ternac.protocol") if internal]


def _first_to_load(modules: list[str], banned: str) -> str:
    """Import ``modules`` in order in a fresh interpreter; the first one after which a
    ``banned`` top-level package is loaded, or "" if none."""
    src = ("import sys\n"
           f"for m in {modules!r}:\n"
           "    __import__(m)\n"
           f"    if any(k.split('.')[0] == {banned!r} for k in sys.modules):\n"
           "        print(m); break\n")
    r = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_hw_loads_no_torch():
    """Transitively: importing every hw module (in turn) never loads torch."""
    hw = [m for m in MODULES if layer_of(m) == "hw"]
    assert _first_to_load(hw, "torch") == ""


def test_golden_loads_no_amaranth():
    golden = [m for m in MODULES if layer_of(m) == "golden"]
    assert _first_to_load(golden, "amaranth") == ""


@pytest.mark.parametrize("banned", ["torch", "amaranth"])
def test_host_side_loads_neither_torch_nor_amaranth(banned):
    assert _first_to_load(["ternac.protocol", "ternac.hostdriver", "ternac.session"],
                          banned) == ""


def test_hw_builds_vector_units_without_torch():
    r = subprocess.run([sys.executable, "-c",
                        "import sys\n"
                        "from ternac.config import AccelConfig\n"
                        "from ternac.hw.vector_units import vector_units_for\n"
                        "vector_units_for(AccelConfig(vector=('activation','norm','eltwise',"
                        "'shiftmax')))\n"
                        "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_the_checker_catches_violations(tmp_path, monkeypatch):
    """The rules fail on modules that break them (so the tests above can fail): a small
    fake package stands in for the real one."""
    def mod(name, text=""):
        f = tmp_path / f"{name}.py"
        f.write_text(text)
        return f
    fake = {"ternac": mod("root"), "ternac.golden": mod("golden_init"),
            "ternac.hw": mod("hw_init"), "ternac.hw.top": mod("top"), "ternac.cli": mod("cli"),
            "ternac.golden.bad": mod("bad", "import amaranth\nfrom golden import isa\n"
                                            "def f():\n    from ternac.cli import main\n"
                                            "    from ternac.hw import top\n")}
    monkeypatch.setitem(globals(), "MODULES", fake)
    found = {name for _, name, _ in imports("ternac.golden.bad")}
    assert found == {"amaranth", "golden", "ternac.cli", "ternac.hw.top"}
    with pytest.raises(AssertionError, match=r"ternac.golden.bad \(golden, rank 0\) imports "
                                             r"ternac.cli \(front, rank 4\)"):
        test_imports_point_down()
    with pytest.raises(AssertionError, match="write ternac.golden"):
        test_no_bare_folder_imports()
    with pytest.raises(AssertionError, match="golden modules import amaranth"):
        test_layer_does_not_import("golden", "amaranth")
    del fake["ternac.golden.bad"]
    test_imports_point_down()
    fake["ternac.newthing"] = mod("newthing")
    with pytest.raises(AssertionError, match=r"modules without a layer: \['ternac.newthing'\]"):
        test_every_module_is_classified()
    del fake["ternac.newthing"]
    # a cycle inside one layer (allowed by rank): ternac.hw.a -> ternac.hw.b -> ternac.hw.a
    fake["ternac.hw.a"] = mod("a", "from .b import x\n")
    fake["ternac.hw.b"] = mod("b", "def f():\n    from ternac.hw import a\n")
    test_imports_point_down()
    with pytest.raises(AssertionError, match="import cycle: ternac.hw.a -> ternac.hw.b -> "
                                             "ternac.hw.a"):
        test_import_graph_has_no_cycle()
