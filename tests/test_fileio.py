"""Atomic writes: the result replaces the target whole, with the mode a plain open() would give it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from realtime._fileio import write_atomic


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path: Path, umask, mask: int, mode: int) -> None:
    umask(mask)
    target = tmp_path / "out.png"
    write_atomic(target, lambda tmp: Path(tmp).write_bytes(b"data"))
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert os.umask(mask) == mask  # reading the umask left it as it was


def test_failed_write_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        write_atomic(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="output directory .*nope does not exist"):
        write_atomic(tmp_path / "nope" / "out.png", lambda tmp: None)
