"""ContentStore.put_file(move=True): an upload's own temp copy is renamed into the store, with the
same bytes under their sha256, the mode and fresh time of a copy; elsewhere it is copied."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from app.web.core.storage import ContentStore


def _source(folder: Path, data: bytes) -> tuple[Path, str]:
    path = folder / "upload.dcm"
    path.write_bytes(data)
    old = time.time() - 3600
    os.utime(path, (old, old))  # received an hour ago
    return path, hashlib.sha256(data).hexdigest()


def test_a_moved_file_is_the_same_blob_a_copy_would_be(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    moved_src, sha = _source(tmp_path / "a", data)
    copied_src, _ = _source(tmp_path / "b", data)
    moving, copying = ContentStore(tmp_path / "s1"), ContentStore(tmp_path / "s2")

    assert moving.put_file(moved_src, sha, "src", move=True) == (f"{sha}.src", True)
    assert copying.put_file(copied_src, sha, "src") == (f"{sha}.src", True)
    assert not moved_src.exists() and copied_src.read_bytes() == data  # a copy leaves its source
    for store in (moving, copying):
        path = store.path_for(f"{sha}.src")
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_mtime > time.time() - 60  # fresh for the sweep's grace period
    assert not [p for p in (tmp_path / "s1").rglob("*") if p.name.startswith(".incoming-")]


def test_a_blob_already_stored_is_reused_and_the_file_left(tmp_path: Path) -> None:
    data = b"the same bytes twice"
    store = ContentStore(tmp_path / "store")
    first, sha = _source(tmp_path, data)
    assert store.put_file(first, sha, "src", move=True) == (f"{sha}.src", True)
    again, _ = _source(tmp_path, data)
    assert store.put_file(again, sha, "src", move=True) == (f"{sha}.src", False)
    assert again.read_bytes() == data and store.read_bytes(f"{sha}.src") == data


def test_on_another_filesystem_the_file_is_copied(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    data = os.urandom(10_000)
    with tempfile.TemporaryDirectory(dir=shm) as other:
        source, sha = _source(Path(other), data)
        store = ContentStore(tmp_path / "store")
        assert store.put_file(source, sha, "src", move=True) == (f"{sha}.src", True)
        assert source.read_bytes() == data  # not moved across filesystems: copied, and left
        assert store.read_bytes(f"{sha}.src") == data


def test_a_fan_out_folder_removed_behind_the_store_s_back_is_made_again(tmp_path: Path) -> None:
    import shutil

    store = ContentStore(tmp_path / "store")
    key, created = store.put_bytes(b"first", "png")
    assert created
    shutil.rmtree(tmp_path / "store" / key[:2])  # the store object still thinks it is there
    again, created = store.put_bytes(b"first", "png")
    assert (again, created) == (key, True) and store.read_bytes(key) == b"first"
    shutil.rmtree(tmp_path / "store" / key[:2])
    source, sha = _source(tmp_path, b"first")
    assert store.put_file(source, sha, "src", move=True) == (f"{sha}.src", True)
    assert store.read_bytes(f"{sha}.src") == b"first"
