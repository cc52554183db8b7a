"""``python -m formal [--fast] [--list] [--json FILE] [TASK ...]``: run the formal tasks
of :data:`formal.units.TASKS` with SymbiYosys and print one line a task (status, mode,
depth, seconds); exit 1 if any task is not PASS."""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from .sby import Result, Toolchain, comb_paths, prove
from .units import TASKS


def run_task(t, *, workdir=None, variant=None, **kw) -> Result:
    """Run one task (its structural path check first, when it has one)."""
    harness = t.build(**({} if variant is None else {"broken": variant}))
    name = t.name if variant is None else f"{t.name}_{variant}"
    res = prove(name, harness, mode=kw.get("mode", t.mode), depth=kw.get("depth", t.depth),
                workdir=workdir)
    if t.comb is not None and variant is None:
        unit, pairs = t.comb()
        for (ready, valid), clean in comb_paths(unit, pairs).items():
            if not clean:
                res.status = "FAIL"
                res.failed.append(f"{valid} depends combinationally on {ready}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m formal", description=__doc__.split("\n")[0])
    ap.add_argument("tasks", nargs="*", help="task names (default: all)")
    ap.add_argument("--fast", action="store_true", help="only the tasks make test runs")
    ap.add_argument("--list", action="store_true", help="list the tasks and their properties")
    ap.add_argument("--json", type=pathlib.Path, help="write the results as JSON")
    ap.add_argument("--variant", help="run a deliberately broken variant (e.g. unstable, "
                    "narrow): every property must then fail somewhere")
    ap.add_argument("--depth", type=int, help="override the depth")
    ap.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("build/formal"))
    args = ap.parse_args(argv)
    unknown = [n for n in args.tasks if n not in TASKS]
    if unknown:
        print(f"unknown formal task {', '.join(unknown)}; choose from {', '.join(TASKS)}",
              file=sys.stderr)
        return 2
    chosen = [TASKS[n] for n in (args.tasks or TASKS)]
    if args.fast:
        chosen = [t for t in chosen if t.fast]
    if args.list:
        for t in chosen:
            print(f"{t.name} ({t.unit}; {t.mode}, depth {t.depth}{', fast' if t.fast else ''})")
            for p in t.properties:
                print(f"    - {p}")
        return 0
    Toolchain.shared()
    results = []
    t0 = time.monotonic()
    for t in chosen:
        kw = {"depth": args.depth} if args.depth else {}
        try:
            res = run_task(t, workdir=args.workdir, variant=args.variant, **kw)
        except (LookupError, AssertionError, ValueError, TypeError) as exc:
            # the harness no longer fits the unit (a renamed signal, a changed width)
            res = Result(name=t.name, mode=t.mode, depth=t.depth, status="ERROR", seconds=0.0,
                         failed=[f"harness: {exc}"])
        results.append((t, res))
        print(res.summary(), flush=True)
        if res.status != "PASS":
            print(res.log_tail if not res.trace else res.trace)
    ok = all(r.passed for _, r in results)
    print(f"{sum(r.passed for _, r in results)} passed, {sum(not r.passed for _, r in results)} "
          f"failed ({time.monotonic() - t0:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"kinds": {"seconds": "measured"}, "tasks": [
            {"name": t.name, "unit": t.unit, "mode": t.mode, "depth": t.depth,
             "engine": "smtbmc boolector", "status": r.status, "seconds": round(r.seconds, 2),
             "meaning": ("holds in every reachable state (k-induction closed)"
                         if t.mode == "prove" else
                         f"holds on every trace of {t.depth} cycles from reset (bounded)")
             if r.passed else "not proved",
             "properties": list(t.properties), "failed": r.failed} for t, r in results]},
            indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
