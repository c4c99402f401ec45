"""Content-addressed file storage: a blob's key is the sha256 of its bytes plus a suffix.

Identical images uploaded twice are stored once. Writes are atomic (temp file
then rename), so a crash never leaves a truncated blob under a valid key.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, bool]:
        """Store ``data``; returns (key, created) where created is False if it was already stored."""
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix}"
        path = self.path_for(key)
        if path.is_file():
            return key, False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key, True

    def put_file(self, source: Path, sha256: str, suffix: str) -> tuple[str, bool]:
        """Store a copy of ``source`` whose sha256 the caller already knows."""
        key = f"{sha256}.{suffix}"
        path = self.path_for(key)
        if path.is_file():
            return key, False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key, True

    def read_bytes(self, key: str) -> bytes:
        return self.path_for(key).read_bytes()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def all_keys(self) -> set[str]:
        """Every stored key (for tests and maintenance; walks the whole tree)."""
        return {p.name for p in self.root.glob("*/*/*") if _KEY.match(p.name)}
