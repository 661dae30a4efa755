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


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_umask_is_read_without_setting_it_where_proc_reports_it(tmp_path: Path, umask, monkeypatch) -> None:
    # Setting the umask to read it would briefly change it for every thread of the process.
    umask(0o027)

    def refuse(mask: int) -> int:
        raise AssertionError(f"os.umask({mask:o}) called")

    monkeypatch.setattr(os, "umask", refuse)
    target = tmp_path / "out.png"
    write_atomic(target, lambda tmp: Path(tmp).write_bytes(b"data"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_umask_falls_back_to_os_umask_without_proc(tmp_path: Path, umask, monkeypatch) -> None:
    import builtins

    real_open = builtins.open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc/"):
            raise FileNotFoundError(file)
        return real_open(file, *args, **kwargs)

    umask(0o007)
    monkeypatch.setattr(builtins, "open", no_proc)
    target = tmp_path / "out.png"
    write_atomic(target, lambda tmp: Path(tmp).write_bytes(b"data"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o660


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
