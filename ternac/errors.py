"""Errors a user can cause, and the set the CLI turns into one sentence and exit code 2.

Each of these carries a message that is one complete sentence naming the bad input and the
numbers involved; the CLI prints it as ``ternac: error: <message>`` without a traceback
(../shared/STYLE.md: "Errors a user can cause ... are one clear sentence and a non-zero
exit, never a traceback").
"""
from __future__ import annotations

from ternac.golden.errors import CheckpointImportError, ImageError

__all__ = ["ImageError", "CompileError", "CheckpointError", "InputError", "BackendError",
           "USER_ERRORS", "one_line", "check_output_file", "check_output_dir", "write_json",
           "staged_folder", "replace_folder", "check_distinct"]


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
                                                CheckpointImportError, InputError, BackendError,
                                                FileNotFoundError)


def one_line(exc: BaseException) -> str:
    """The message of a user error as a single line (an OSError as 'path: reason')."""
    if isinstance(exc, OSError) and exc.strerror:
        msg = f"{exc.filename}: {exc.strerror.lower()}" if exc.filename else exc.strerror
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def check_output_file(path, what: str = "output", *, make_folder: bool = False) -> None:
    """Check, before any work, that ``path`` can be written as a file: not empty, not a
    directory, in a writable folder (created first with ``make_folder``, like ``mkdir -p``).
    Raises InputError (one sentence)."""
    import os
    if path is None:
        return
    if not str(path).strip():
        raise InputError(f"the {what} path is empty")
    if os.path.isdir(path):
        raise InputError(f"the {what} {path} is a directory, not a file")
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder and not os.path.exists(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the folder {folder} for the {what} {path}: "
                             f"{(exc.strerror or str(exc)).lower()}") from None
    if not os.path.isdir(folder):
        raise InputError(f"the folder {folder} of the {what} {path} does not exist or is "
                         f"not a folder")
    if not _writable(folder):
        raise InputError(f"the folder {folder} of the {what} {path} is not writable")


def check_distinct(outputs, inputs=()) -> None:
    """Refuse, before any work, an output that would overwrite one of the command's inputs
    or another of its outputs: ``outputs`` and ``inputs`` are ``(what, path)`` pairs (a
    path None or empty is skipped), compared by ``os.path.realpath`` (a symbolic link to
    an input is that input). Raises InputError (one sentence) naming both."""
    import os
    seen: list[tuple[str, str, str]] = []
    for what, path in inputs:
        if path is not None and str(path).strip():
            seen.append((what, str(path), os.path.realpath(path)))
    for what, path in outputs:
        if path is None or not str(path).strip():
            continue
        real = os.path.realpath(path)
        for other, opath, oreal in seen:
            if real == oreal:
                raise InputError(f"the {what} {path} is the same file as the {other} {opath}, "
                                 f"which it would overwrite; write it to another path")
        seen.append((what, str(path), real))


def _writable(folder) -> bool:
    """Whether a file can be created in ``folder``: tried with a temporary file, removed at
    once (``os.access`` says yes to root on a read-only or virtual file system)."""
    import os
    import tempfile
    if not os.access(folder, os.W_OK):
        return False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ternac-probe.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def check_output_dir(path, what: str = "output folder") -> None:
    """Check that ``path`` is an existing folder or can be created in an existing one.
    Raises InputError (one sentence)."""
    import os
    if not str(path).strip():
        raise InputError(f"the {what} path is empty")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise InputError(f"the {what} {path} exists and is not a folder")
        if not _writable(path):
            raise InputError(f"the {what} {path} is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"the {what} {path} cannot be made: {parent} is not a folder")
    if not _writable(parent):
        raise InputError(f"the {what} {path} cannot be made: {parent} is not writable")


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON (indented by 2, a final newline) to ``path`` atomically
    (:func:`ternac.golden.fileio.atomic_write`: a temporary file in the same folder, then
    a rename), creating the folder like ``mkdir -p``; an existing file is replaced only
    once the new one is complete. Raises InputError for an unusable path."""
    import json

    from ternac.golden.fileio import atomic_write
    check_output_file(path, "JSON output", make_folder=True)
    try:
        atomic_write(path, json.dumps(obj, indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write the JSON output {path}: "
                         f"{(exc.strerror or str(exc)).lower()}") from None


def staged_folder(path) -> str:
    """A new empty folder beside ``path`` (so on the same file system), for work that is
    to replace ``path`` only once it is complete (:func:`replace_folder`). The parent
    folder is created like ``mkdir -p``. Returns the folder's path."""
    import os
    import tempfile
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.",
                            suffix=".partial", dir=parent)


def replace_folder(new, path) -> None:
    """Put the complete folder ``new`` at ``path``: an existing ``path`` is first renamed
    aside, ``new`` is renamed into place, then the old folder is deleted. Renames within one
    file system are atomic, so a reader finds the old folder or the new one, never a
    half-written one (between the two renames, for an instant, neither). Raises OSError if
    ``path`` exists and is not a folder."""
    import os
    import shutil
    import tempfile
    path = os.path.abspath(path)
    old = None
    if os.path.lexists(path):
        if not os.path.isdir(path) or os.path.islink(path):
            raise NotADirectoryError(f"{path} exists and is not a folder")
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old",
                               dir=os.path.dirname(path))
        os.rmdir(old)
        os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        if old is not None:
            os.rename(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
