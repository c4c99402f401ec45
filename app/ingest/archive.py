"""Safe unpacking of a ZIP archive of a study folder.

Archives come from outside, so nothing in them is trusted: entry count, total size and
compression ratio are limited (ZIP bombs), names may not leave the target folder (path
traversal), symbolic links and nested archives are refused, and sizes are counted while
decompressing instead of being taken from the headers.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.ingest.errors import RejectedFile
from app.ingest.types import IngestOptions, Rejection

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_CHUNK = 1 << 20
# Operating-system clutter that is not part of a study.
_JUNK_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


def is_zip(head: bytes) -> bool:
    return head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC))


@dataclass
class Unpacked:
    """Files written under ``root``: (member name inside the archive, path on disk)."""

    root: Path
    files: list[tuple[str, Path]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def safe_member_path(name: str) -> PurePosixPath | None:
    """The member's relative path, or None when it is absolute or climbs out of the archive."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return None
    path = PurePosixPath(normalised)
    if any(part == ".." for part in path.parts) or not path.parts:
        return None
    return path


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _is_junk(path: PurePosixPath) -> bool:
    return any(part in _JUNK_PARTS for part in path.parts) or path.name.startswith("._")


def _check_archive_limits(infos: list[zipfile.ZipInfo], options: IngestOptions) -> None:
    if len(infos) > options.max_archive_entries:
        raise RejectedFile(
            f"the ZIP archive has too many entries ({len(infos)}; limit {options.max_archive_entries})"
        )
    declared = sum(info.file_size for info in infos)
    if declared > options.max_archive_uncompressed_bytes:
        raise RejectedFile("the ZIP archive is too large once unpacked")
    for info in infos:
        if info.file_size > _CHUNK and info.file_size > options.max_compression_ratio * max(
            info.compress_size, 1
        ):
            raise RejectedFile(
                "the ZIP archive is compressed suspiciously well (a possible ZIP bomb); refused"
            )


def unpack_zip(archive: Path, label: str, dest: Path, options: IngestOptions) -> Unpacked:
    """Unpack ``archive`` into the existing empty folder ``dest``; the caller removes it.

    Raises RejectedFile when the archive as a whole is unusable; single bad entries are
    listed in ``Unpacked.rejected`` and skipped.
    """
    result = Unpacked(root=dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_archive_limits(infos, options)
            budget = options.max_archive_uncompressed_bytes
            for index, info in enumerate(infos):
                if info.is_dir():
                    continue
                source = f"{label}!{info.filename}"
                member = safe_member_path(info.filename)
                if member is None:
                    result.rejected.append(
                        Rejection(source, "unsafe file name in the ZIP archive (points outside it)")
                    )
                    continue
                if _is_junk(member):
                    continue
                if _is_symlink(info):
                    result.rejected.append(
                        Rejection(source, "symbolic links inside ZIP archives are not accepted")
                    )
                    continue
                if info.flag_bits & 0x1:
                    result.rejected.append(
                        Rejection(source, "the file is password-protected inside the ZIP archive")
                    )
                    continue
                if info.file_size > options.max_file_bytes:
                    result.rejected.append(Rejection(source, "the file is too large"))
                    continue
                # Files land under a numbered name, so no archive name ever becomes a disk path.
                target = dest / f"{index:06d}{_safe_suffix(member)}"
                written = _extract_member(zf, info, target, min(budget, options.max_file_bytes), options)
                budget -= written
                with target.open("rb") as handle:
                    if is_zip(handle.read(4)):
                        target.unlink()
                        result.rejected.append(
                            Rejection(source, "a ZIP archive inside a ZIP archive is not accepted")
                        )
                        continue
                result.files.append((info.filename, target))
    except RejectedFile:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise RejectedFile("the ZIP archive is damaged or uses an unsupported compression method") from exc
    return result


def _safe_suffix(member: PurePosixPath) -> str:
    suffix = member.suffix.lower()
    return suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""


def _extract_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int, options: IngestOptions
) -> int:
    """Stream one member to disk, counting real bytes: headers can lie about sizes."""
    written = 0
    with zf.open(info) as source, target.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise RejectedFile("the ZIP archive is too large once unpacked")
            if written > _CHUNK and written > options.max_compression_ratio * max(info.compress_size, 1):
                raise RejectedFile(
                    "the ZIP archive is compressed suspiciously well (a possible ZIP bomb); refused"
                )
            sink.write(chunk)
    return written
