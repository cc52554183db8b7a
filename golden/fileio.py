"""Writing files atomically, written once for every writer of the package (weight images,
JSON reports, compiled programs).

Standard library only: every layer may import it (tests/test_layering.py).
"""
from __future__ import annotations

import os
import stat
import tempfile

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text written as UTF-8) to ``path`` atomically: into a
    temporary file in the same folder, flushed to disk, then renamed over ``path``.

    An existing file at ``path`` is replaced only once the new one is complete; on any
    error it is left as it was and the temporary file is removed. A symbolic link at
    ``path`` is written through (its target is replaced, the link stays). The new file
    keeps the replaced file's permission bits, else gets ``0o666`` less the umask, as
    ``open(path, "w")`` would (not the temporary file's ``0o600``).

    Raises
    ------
    OSError (of the same kind, with ``filename`` = ``path``, never the temporary file's
    name) if the folder does not exist or is not writable, or the write fails.
    """
    path = os.fspath(path)
    target = os.path.realpath(path)        # through a symlink, onto its target
    folder = os.path.dirname(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, path) from None
        raise
