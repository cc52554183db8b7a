"""Writing files atomically, written once for every writer of the package (weight images,
JSON reports, compiled programs).

Standard library only: every layer may import it (tests/test_layering.py).
"""
from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text written as UTF-8) to ``path`` atomically: into a
    temporary file in the same folder, flushed to disk, then renamed over ``path``.

    An existing file at ``path`` is replaced only once the new one is complete; on any
    error it is left as it was and the temporary file is removed.

    Raises
    ------
    OSError (of the same kind, with ``filename`` = ``path``, never the temporary file's
    name) if the folder does not exist or is not writable, or the write fails.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, path) from None
        raise
