"""Safe unpacking of a ZIP archive of a study folder.

Archives come from outside, so nothing in them is trusted: entry count, total size and
compression ratio are limited (ZIP bombs), names may not leave the target folder (path
traversal), symbolic links and nested archives are refused, and sizes are counted while
decompressing instead of being taken from the headers.
"""

from __future__ import annotations

import lzma
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.ingest.budget import mib
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
        raise RejectedFile(_too_large(declared, options))
    for info in infos:
        if info.file_size > _CHUNK and info.file_size > options.max_compression_ratio * max(
            info.compress_size, 1
        ):
            raise RejectedFile(_bomb(info.file_size, info.compress_size, options))


def _too_large(size: int, options: IngestOptions) -> str:
    return (
        f"the ZIP archive is too large once unpacked ({mib(size)} or more; "
        f"limit {mib(options.max_archive_uncompressed_bytes)})"
    )


def _bomb(size: int, compressed: int, options: IngestOptions) -> str:
    return (
        f"the ZIP archive is compressed suspiciously well (a possible ZIP bomb; a member unpacks to "
        f"{size / max(compressed, 1):,.0f} times its size, limit {options.max_compression_ratio:g}); refused"
    )


class _DamagedMember(Exception):
    """One member cannot be unpacked; the others can still be used."""

    def __init__(self, reason: str, written: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.written = written


def unpack_zip(archive: Path, label: str, dest: Path, options: IngestOptions) -> Unpacked:
    """Unpack ``archive`` into the existing empty folder ``dest``; the caller removes it.

    Raises RejectedFile when the archive as a whole is unusable (its directory is damaged, or
    a limit is exceeded); single bad entries (a damaged member included) are listed in
    ``Unpacked.rejected`` with their name and skipped, and the others are unpacked.
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
                try:
                    written = _extract_member(zf, info, target, min(budget, options.max_file_bytes), options)
                except _DamagedMember as exc:
                    target.unlink(missing_ok=True)
                    budget -= exc.written
                    result.rejected.append(Rejection(source, exc.reason))
                    continue
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
    """Stream one member to disk, counting real bytes: headers can lie about sizes.

    Raises _DamagedMember when the member's own data is bad (checksum, deflate stream, local
    header, compression method), RejectedFile when a limit of the whole archive is exceeded.
    """
    written = 0
    try:
        source = zf.open(info)
    except NotImplementedError as exc:
        raise _DamagedMember(
            "the file is compressed inside the ZIP archive with an unsupported method", 0
        ) from exc
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise _DamagedMember("the file is damaged inside the ZIP archive and cannot be unpacked", 0) from exc
    with source, target.open("wb") as sink:
        while chunk := _read_member(source, written):
            written += len(chunk)
            if written > limit:
                raise RejectedFile(_too_large(written, options))
            if written > _CHUNK and written > options.max_compression_ratio * max(info.compress_size, 1):
                raise RejectedFile(_bomb(written, info.compress_size, options))
            sink.write(chunk)
    return written


def _read_member(source: zipfile.ZipExtFile, written: int) -> bytes:
    # Only errors of reading the member are its own; a failed write to our disk stays an OSError.
    try:
        return source.read(_CHUNK)
    except zipfile.BadZipFile as exc:  # zipfile's CRC check
        raise _DamagedMember(
            "the file is damaged inside the ZIP archive (its data does not match its checksum)", written
        ) from exc
    except (zlib.error, lzma.LZMAError, EOFError, OSError) as exc:  # bz2 reports bad data as OSError
        raise _DamagedMember(
            "the file is damaged inside the ZIP archive and cannot be unpacked", written
        ) from exc
