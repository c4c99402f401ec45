"""Where the non-Python project folders (migrations/, templates/, static/) are.

From a source checkout or editable install they sit beside the ``app`` package;
in a non-editable install (the Docker image) they sit in the working directory.
"""

from __future__ import annotations

from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[3]


def project_dir(name: str) -> Path:
    for root in (_SOURCE_ROOT, Path.cwd()):
        candidate = root / name
        if candidate.is_dir():
            return candidate
    return _SOURCE_ROOT / name
