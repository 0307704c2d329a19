"""geomhead.atomic: complete files or none, ordinary permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from geomhead import atomic
from geomhead.atomic import atomic_path, write_json


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temporary left behind"


def test_written_files_get_umask_permissions_not_0600(tmp_path: Path) -> None:
    write_json({"a": 1}, tmp_path / "m.json")
    mode = stat.S_IMODE((tmp_path / "m.json").stat().st_mode)
    assert mode == 0o666 & ~atomic._UMASK, oct(mode)
