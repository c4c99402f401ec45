"""Provenance of a trained model: which code, which data, made how. Torch-free.

The model card travels to other machines, so nothing here records a machine-specific absolute
path: a path inside the project is written relative to it, any other only as its folder name.
The data is pinned by a hash of its manifest and image bytes instead (`data_hash`), which anyone
holding a copy of the data can recompute (`verify_data_hash`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from app.paths import source_root

MANIFEST = "manifest.csv"
DATASET_RECORD = "dataset.json"
HASH_SCHEME = (
    "sha256 over the files sorted by their path relative to the data folder (POSIX); for each "
    "file: its relative path, a newline, its size in bytes, a newline, then its bytes. The files "
    "are manifest.csv and every image it lists (without a manifest: every training image)"
)
_GIT_TIMEOUT_S = 10


def project_root() -> Path | None:
    """The checkout this code runs from, or None for an installed package."""
    return source_root()


def portable_path(path: Path | str, root: Path | None = None) -> str:
    """`path` relative to `root` (default: the project root) when inside it, else its folder name.

    An absolute path names one machine's disk and, in a card, tells a reader elsewhere nothing
    but the name of somebody's home folder.
    """
    resolved = Path(path).expanduser().resolve()
    base = root if root is not None else project_root()
    if base is not None:
        try:
            return resolved.relative_to(Path(base).resolve()).as_posix() or "."
        except ValueError:
            pass
    return resolved.name


def looks_absolute(text: str) -> bool:
    """True for a string that is an absolute POSIX or Windows path (or a home-relative one)."""
    return text.startswith("~") or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def portable_command(argv: Sequence[str], root: Path | None = None) -> list[str]:
    """A command line with every absolute path argument (also in --opt=PATH) made portable."""

    def one(arg: str) -> str:
        if "=" in arg and arg.startswith("--"):
            option, value = arg.split("=", 1)
            return f"{option}={one(value)}"
        return portable_path(arg, root) if looks_absolute(arg) else arg

    return [one(str(arg)) for arg in argv]


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=True,
    )
    return done.stdout


def code_commit(root: Path | None = None) -> dict[str, Any]:
    """{"commit": HEAD's sha, "dirty": uncommitted changes?}; commit None with a reason when the
    code is not a git checkout or git is unavailable. Never raises: provenance must not stop a fit."""
    base = root if root is not None else project_root()
    if base is None:
        return {"commit": None, "dirty": None, "reason": "not running from a source checkout"}
    try:
        commit = _git(Path(base), "rev-parse", "--verify", "HEAD").strip()
        # Untracked files count: a new module that the fit imported changes the code too.
        dirty = bool(_git(Path(base), "status", "--porcelain").strip())
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "reason": "git is not installed"}
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()[:1] or ["git failed"]
        return {"commit": None, "dirty": None, "reason": f"not a git checkout: {reason[0]}"}
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"commit": None, "dirty": None, "reason": f"git could not run ({type(exc).__name__})"}
    return {"commit": commit, "dirty": dirty}


def manifest_images(data_dir: Path) -> list[str] | None:
    """The image column of DIR/manifest.csv (relative paths), or None without a manifest."""
    manifest = Path(data_dir) / MANIFEST
    if not manifest.is_file():
        return None
    with manifest.open(newline="", encoding="utf-8") as handle:
        return [row["image"] for row in csv.DictReader(handle) if row.get("image")]


def hashed_files(data_dir: Path, images: Iterable[Path] = ()) -> list[str]:
    """The relative POSIX paths `data_hash` covers, sorted: manifest + listed images, or `images`."""
    data_dir = Path(data_dir)
    listed = manifest_images(data_dir)
    if listed is not None:
        return sorted({MANIFEST, *(PurePosixPath(p).as_posix() for p in listed)})
    return sorted({Path(p).resolve().relative_to(data_dir.resolve()).as_posix() for p in images})


def data_hash(data_dir: Path, images: Iterable[Path] = ()) -> dict[str, Any]:
    """sha256 of the data set (see HASH_SCHEME). `images` is used only without a manifest."""
    data_dir = Path(data_dir)
    files = hashed_files(data_dir, images)
    digest = hashlib.sha256()
    missing = 0
    for rel in files:
        path = data_dir / rel
        if not path.is_file():
            # A listed file that is gone changes the hash rather than crashing the fit.
            missing += 1
            digest.update(f"{rel}\nmissing\n".encode())
            continue
        digest.update(f"{rel}\n{path.stat().st_size}\n".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    result: dict[str, Any] = {"algorithm": "sha256", "sha256": digest.hexdigest(), "files": len(files)}
    if missing:
        result["missing_files"] = missing
    result["scheme"] = HASH_SCHEME
    return result


def verify_data_hash(data_dir: Path, recorded: Mapping[str, Any], images: Iterable[Path] = ()) -> bool:
    """Does DIR still hash to `recorded` (a card's provenance.data_hash)?"""
    return data_hash(data_dir, images)["sha256"] == recorded.get("sha256")


def read_dataset_record(data_dir: Path) -> dict[str, Any] | None:
    """DIR/dataset.json as `fetalcns synth` writes it, or None when absent or unreadable."""
    path = Path(data_dir) / DATASET_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def portable_record(record: Mapping[str, Any], root: Path | None = None) -> dict[str, Any]:
    """A dataset record fit for a card: its command line and any path values made portable."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return portable_path(value, root) if looks_absolute(value) else value
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    cleaned = clean(dict(record))
    if isinstance(record.get("command"), list):
        cleaned["command"] = portable_command(record["command"], root)
    return cleaned


def absolute_paths_in(value: Any) -> list[str]:
    """Every string in a JSON-like value that is an absolute path (for checks and tests)."""
    if isinstance(value, str):
        return [value] if looks_absolute(value) else []
    if isinstance(value, Mapping):
        return [p for v in value.values() for p in absolute_paths_in(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in absolute_paths_in(v)]
    return []
