"""Where the web app's non-Python folders (migrations/, templates/, static/) are: see app.paths."""

from __future__ import annotations

from pathlib import Path

from app.paths import resource_dir


def project_dir(name: str) -> Path:
    return resource_dir(name)
