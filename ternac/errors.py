"""Errors a user can cause, and the set the CLI turns into one sentence and exit code 2.

Each of these carries a message that is one complete sentence naming the bad input and the
numbers involved; the CLI prints it as ``ternac: error: <message>`` without a traceback
(../shared/STYLE.md: "Errors a user can cause ... are one clear sentence and a non-zero
exit, never a traceback").
"""
from __future__ import annotations

from golden.image import ImageError

__all__ = ["ImageError", "CompileError", "CheckpointError", "InputError", "BackendError",
           "USER_ERRORS", "one_line"]


class CompileError(ValueError):
    """A model that does not fit the accelerator configuration or the ISA's fields."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, not ternary, wrong shapes."""


class InputError(ValueError):
    """A command-line argument or input file the user gave that cannot be used."""


class BackendError(RuntimeError):
    """A backend (e.g. the Verilator simulation) could not run, for a reason the user can fix."""


#: Exceptions the CLI reports as ``ternac: error: ...`` with exit code 2. Loaders' own
#: ValueErrors are converted to CheckpointError / InputError where they are called, so an
#: unexpected ValueError (a bug) still shows its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ImageError, CompileError, CheckpointError,
                                                InputError, BackendError, FileNotFoundError)


def one_line(exc: BaseException) -> str:
    """The message of a user error as a single line (an OSError as 'path: reason')."""
    if isinstance(exc, OSError) and exc.strerror:
        msg = f"{exc.filename}: {exc.strerror.lower()}" if exc.filename else exc.strerror
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())
