"""Amaranth components an error stopped before elaboration, dropped without Amaranth's
``UnusedElaboratable`` warning (the command lines' error path: ternac.cli, ternac.boards_cli).
"""
from __future__ import annotations

import sys

__all__ = ["forget_unused_design"]


def forget_unused_design(exc: BaseException) -> None:
    """Drop, silently, the Amaranth components that the user error ``exc`` stopped before
    they were elaborated (a board top whose UART divisor or PLL is refused in its
    constructor): the locals of the frames ``exc`` (and the exceptions chained to it)
    passed through are cleared and collected with Amaranth's ``UnusedElaboratable``
    warning ignored, so the error's one sentence is all that is printed. Only for the
    error path of a command: in a run that goes on, the warning means a component built
    and forgotten (a bug) and is left alone. Does nothing if Amaranth was not loaded."""
    if "amaranth" not in sys.modules:
        return
    import gc
    import traceback
    import warnings

    from amaranth.hdl import Elaboratable, UnusedElaboratable
    if getattr(UnusedElaboratable, "_MustUse__silence", False):
        return      # Amaranth warns only once something was elaborated in the process
    tracebacks, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        tracebacks.append(e.__traceback__)
        todo += [e.__context__, e.__cause__]

    def holds_design(tb) -> bool:
        # A component as a local (a constructor's self, a build's top) or in a local
        # container; only then is the collection (tens of ms) worth making.
        while tb is not None:
            for v in tb.tb_frame.f_locals.values():
                items = v.values() if isinstance(v, dict) else v if isinstance(
                    v, (list, tuple, set)) else (v,)
                if any(isinstance(x, Elaboratable) for x in items):
                    return True
            tb = tb.tb_next
        return False
    if not any(holds_design(tb) for tb in tracebacks):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        for tb in tracebacks:
            traceback.clear_frames(tb)
            while tb is not None:
                # Reading f_locals above left a snapshot of the locals on each frame;
                # reading it again after clear() empties it, dropping the components.
                tb.tb_frame.f_locals
                tb = tb.tb_next
        gc.collect()
