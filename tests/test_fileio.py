"""golden.fileio.atomic_write: complete-or-nothing, through symlinks, with the permission
bits ``open(path, "w")`` would give (not the temporary file's 0o600)."""
from __future__ import annotations

import os
import stat

import pytest

from ternac.golden.fileio import atomic_write


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644
    assert _mode(tmp_path / "b.json") == 0o600
    assert (tmp_path / "a.json").read_text() == "{}"


def test_replaced_file_keeps_its_mode(tmp_path):
    p = tmp_path / "r.bin"
    p.write_bytes(b"old")
    os.chmod(p, 0o640)
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new" and _mode(p) == 0o640


def test_symlink_is_written_through(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made.json")
    atomic_write(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "made.json").read_text() == "x"


def test_a_missing_folder_names_the_users_path_and_leaves_nothing(tmp_path):
    p = tmp_path / "no" / "such" / "f.json"
    with pytest.raises(FileNotFoundError) as e:
        atomic_write(p, "{}")
    assert e.value.filename == str(p)
    assert list(tmp_path.iterdir()) == []
