"""Content-addressed file storage: a blob's key is the sha256 of its bytes plus a suffix.

Identical images uploaded twice are stored once. Writes are atomic (temp file
then rename), so a crash never leaves a truncated blob under a valid key.

A blob's modification time says when it was last written *or reused*: storing bytes that are
already there touches the blob, so the startup sweep (app.web.services.sweep), which spares
blobs younger than a grace period, never removes one that an upload is about to name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

_INCOMING = ".incoming-"
_CHUNK = 1 << 20
_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Fan-out folders this object has made or met: an upload writes dozens of blobs, and each
        # mkdir is a system call (and a GIL hand-over) that mostly finds the folder there.
        self._folders: set[Path] = set()

    def _ensure_folder(self, folder: Path) -> None:
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)

    def _incoming(self, folder: Path) -> tuple[int, str]:
        """A new temp file in ``folder`` (made if missing): its descriptor and path."""
        self._ensure_folder(folder)
        try:
            return tempfile.mkstemp(dir=folder, prefix=_INCOMING)
        except FileNotFoundError:  # removed since (by hand): made again
            folder.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(dir=folder, prefix=_INCOMING)

    def path_for(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    @staticmethod
    def _reuse(path: Path) -> bool:
        """True when the blob is stored already; then touched, so the sweep's grace period restarts."""
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, bool]:
        """Store ``data``; returns (key, created) where created is False if it was already stored."""
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix}"
        path = self.path_for(key)
        if self._reuse(path):
            return key, False
        fd, tmp = self._incoming(path.parent)
        try:
            try:
                # Written straight to the descriptor: a file object would add an fstat and an
                # isatty call to every blob.
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key, True

    def put_file(self, source: Path, sha256: str, suffix: str, *, move: bool = False) -> tuple[str, bool]:
        """Store a copy of ``source`` whose sha256 the caller already knows.

        ``move=True``: the caller gives ``source`` up (an upload's private temp copy), so on the
        same filesystem it is renamed into place, not copied: one metadata operation instead of
        reading and writing the whole file. Its bytes are unchanged; it gets the mode and the
        fresh modification time a copy would have. Elsewhere it is copied (and left).
        """
        key = f"{sha256}.{suffix}"
        path = self.path_for(key)
        if self._reuse(path):
            return key, False
        if move and self._move_in(source, path):
            return key, True
        fd, tmp = self._incoming(path.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key, True

    def _move_in(self, source: Path, path: Path) -> bool:
        """Rename ``source`` to ``path``; False when they are on different filesystems."""
        self._ensure_folder(path.parent)
        try:
            os.chmod(source, 0o600)  # what mkstemp gives a copied blob
            try:
                os.replace(source, path)
            except FileNotFoundError:  # the folder was removed since (by hand): made again
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, path)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return False
            raise
        os.utime(path)  # written now, for the sweep's grace period (as a copy would be)
        return True

    def read_bytes(self, key: str) -> bytes:
        return self.path_for(key).read_bytes()

    def open_blob(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The blob's bytes as a stream (FileNotFoundError when it is not stored)."""
        return self.path_for(key).open("rb")

    def put_checked(self, key: str, source: BinaryIO) -> int | None:
        """Store ``source``'s bytes under ``key`` (replacing what is there), hashing while copying:
        the number of bytes, or None when they do not match the key (then nothing was stored)."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_INCOMING)
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as handle:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
                    size += len(chunk)
            if digest.hexdigest() != key.split(".", 1)[0]:
                Path(tmp).unlink()
                return None
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def all_keys(self) -> set[str]:
        """Every stored key (for tests and maintenance; walks the whole tree)."""
        return {p.name for p in self.root.glob("*/*/*") if _KEY.match(p.name)}

    def _entries(self) -> Iterator[Path]:
        return self.root.glob("*/*/*")

    def keys_older_than(self, age_s: float) -> set[str]:
        """Keys of blobs last written or reused more than ``age_s`` seconds ago."""
        cutoff = time.time() - age_s
        old = set()
        for path in self._entries():
            if _KEY.match(path.name) and _mtime(path) < cutoff:
                old.add(path.name)
        return old

    def delete_if_older(self, key: str, age_s: float) -> bool:
        """Delete the blob unless it was written or reused within ``age_s`` seconds (checked again
        right before: an upload may have reused it since the sweep listed it)."""
        path = self.path_for(key)
        if _mtime(path) >= time.time() - age_s:
            return False
        path.unlink(missing_ok=True)
        return True

    def remove_stale_incoming(self, age_s: float) -> int:
        """Remove half-written temp files (a crash between write and rename) older than ``age_s``."""
        cutoff = time.time() - age_s
        removed = 0
        for path in self._entries():
            if path.name.startswith(_INCOMING) and _mtime(path) < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _mtime(path: Path) -> float:
    """Modification time; +inf when the file is gone, so that it never counts as old."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
