"""Atomic writes: a failed write leaves the previous file and no temporary file; permissions follow umask."""

import json
import os
import stat

import pytest

from vsr.atomic import atomic_open, write_json, write_with


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    write_json({"psnr": 25.0}, path)
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as f:
        f.write('{"psnr": ')
        raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"psnr": 25.0}
    with pytest.raises(OSError):
        write_with(lambda tmp: (_ for _ in ()).throw(OSError("disk full")), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json([1], tmp_path / "a.json")
        plain = tmp_path / "b.json"
        plain.write_text("[1]")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
