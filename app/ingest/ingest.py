"""Paths (files, folders, ZIP archives) → studies of display images, plus rejections.

Grouping: DICOM by PatientID + StudyInstanceUID; plain images by the folder they sit in
(the folder name stands for the patient, as in a study export ``<patient>/<image>.png``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.ingest.archive import is_zip, unpack_zip
from app.ingest.dicom import DicomStudyFacts, has_dicom_magic, read_dicom
from app.ingest.errors import RejectedFile, reraise_if_fatal
from app.ingest.identity import file_sha256, patient_key
from app.ingest.raster import read_raster, sniff_raster
from app.ingest.types import IngestedImage, IngestedStudy, IngestOptions, IngestResult, Rejection

log = logging.getLogger(__name__)

_HEAD_BYTES = 132
_SKIPPED_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class _Candidate:
    """A file to read: where it is on disk, how to name it, and its folder for grouping."""

    path: Path
    source: str
    folder: str
    inside_archive: bool = False


def ingest_paths(paths: Sequence[Path | str], options: IngestOptions | None = None) -> IngestResult:
    """Read every file under ``paths`` into studies; never raises for a bad file.

    Each unusable file becomes a ``Rejection`` whose reason a radiologist understands.
    Archive contents are unpacked into a temporary folder that is removed before returning.
    """
    options = options or IngestOptions()
    collector = _StudyCollector(options)
    for raw_path in paths:
        path = Path(raw_path)
        if not path.exists():
            collector.reject(str(raw_path), "file or folder not found")
            continue
        for candidate in _walk(path):
            _ingest_file(candidate, collector, options)
    result = collector.result()
    log.info(
        "ingested %d image(s) in %d study(ies); %d file(s) rejected",
        result.n_images,
        len(result.studies),
        len(result.rejected),
    )
    return result


def _walk(path: Path) -> Iterator[_Candidate]:
    if path.is_file() or path.is_symlink():
        yield _Candidate(path, str(path), _folder_label(path.parent))
        return
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if name.startswith(".") or name in _SKIPPED_NAMES:
                continue
            file_path = Path(dirpath) / name
            yield _Candidate(file_path, str(file_path), _folder_label(Path(dirpath)))


def _folder_label(folder: Path) -> str:
    return folder.resolve().name or str(folder.resolve())


def _ingest_file(candidate: _Candidate, collector: _StudyCollector, options: IngestOptions) -> None:
    try:
        if candidate.path.is_symlink() and candidate.inside_archive:
            raise RejectedFile("symbolic links inside archives are not accepted")
        size = candidate.path.stat().st_size
        if size == 0:
            raise RejectedFile("the file is empty")
        if size > options.max_file_bytes:
            raise RejectedFile(f"the file is too large ({size // (1024 * 1024)} MiB)")
        with candidate.path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
        if is_zip(head):
            if candidate.inside_archive:
                raise RejectedFile("a ZIP archive inside a ZIP archive is not accepted")
            _ingest_archive(candidate, collector, options)
            return
        data = candidate.path.read_bytes()
        sha = file_sha256(data)
        if sniff_raster(head) is not None and not has_dicom_magic(head):
            collector.add_raster(read_raster(data, candidate.source, sha, options), candidate.folder)
        else:
            # read_dicom also recognises old files without the DICM preamble, and rejects the rest.
            facts, images = read_dicom(data, candidate.source, sha, options)
            collector.add_dicom(facts, images, candidate.folder)
    except RejectedFile as exc:
        collector.reject(candidate.source, exc.reason)
    except MemoryError:
        collector.reject(candidate.source, "the file is too large to open on this server")
    except OSError:
        collector.reject(candidate.source, "the file could not be read")
    except BaseException as exc:
        reraise_if_fatal(exc)
        # Last line of defence: a decoder bug must cost one file, not the upload. Only the
        # exception type is logged; paths and messages may contain patient names.
        log.warning("unexpected %s while reading a file; the file was rejected", type(exc).__name__)
        collector.reject(candidate.source, "the file could not be read (it may be damaged)")


def _ingest_archive(candidate: _Candidate, collector: _StudyCollector, options: IngestOptions) -> None:
    with tempfile.TemporaryDirectory(prefix="fetalcns-zip-", dir=options.temp_root) as tmp:
        unpacked = unpack_zip(candidate.path, candidate.source, Path(tmp), options)
        if not unpacked.files and not unpacked.rejected:
            # Otherwise the archive would vanish from the result without a word (found by the fuzz
            # harness, tests/fuzz_support.py).
            raise RejectedFile("the ZIP archive is empty (no files, only folders or system files)")
        for rejection in unpacked.rejected:
            collector.reject(rejection.source, rejection.reason)
        archive_stem = PurePosixPath(candidate.path.name).stem
        for member, disk_path in unpacked.files:
            parent = PurePosixPath(member).parent
            folder = parent.name if parent.name else archive_stem
            inner = _Candidate(disk_path, f"{candidate.source}!{member}", folder, inside_archive=True)
            _ingest_file(inner, collector, options)


class _StudyCollector:
    """Accumulates images into studies, in the order they were first seen."""

    def __init__(self, options: IngestOptions) -> None:
        self._options = options
        self._studies: dict[tuple[str, ...], IngestedStudy] = {}
        self._rejected: list[Rejection] = []
        self._seen: dict[tuple[str, int | None], str] = {}

    def reject(self, source: str, reason: str) -> None:
        self._rejected.append(Rejection(source=source, reason=reason))

    def _first_time(self, image: IngestedImage) -> bool:
        key = (image.sha256, image.frame)
        if key in self._seen:
            self.reject(image.source, "the same file was given twice; the copy is ignored")
            return False
        self._seen[key] = image.source
        return True

    def add_dicom(self, facts: DicomStudyFacts, images: list[IngestedImage], folder: str) -> None:
        if facts.patient_id:
            identity = facts.patient_id
        elif facts.study_uid:
            identity = "study:" + facts.study_uid
        else:
            identity = "folder:" + folder
        group = ("dicom", identity, facts.study_uid or "folder:" + folder)
        study = self._studies.get(group)
        if study is None:
            study = IngestedStudy(
                patient_key=patient_key(identity, self._options.key_salt),
                patient_id=facts.patient_id,
                patient_name=facts.patient_name,
                study_uid=facts.study_uid,
                study_date=facts.study_date,
                gestational_age_weeks=facts.gestational_age_weeks,
            )
            self._studies[group] = study
        elif study.gestational_age_weeks is None:
            study.gestational_age_weeks = facts.gestational_age_weeks
        study.images.extend(image for image in images if self._first_time(image))

    def add_raster(self, image: IngestedImage, folder: str) -> None:
        if not self._first_time(image):
            return
        group = ("folder", folder)
        study = self._studies.get(group)
        if study is None:
            study = IngestedStudy(
                # The folder name stands for the patient ID (export layout <patient>/<image>), so a
                # patient's PNG export and DICOM study share a key.
                patient_key=patient_key(folder, self._options.key_salt),
                patient_id=folder,
                patient_name=None,
                study_uid=None,
                study_date=None,
                gestational_age_weeks=None,
            )
            self._studies[group] = study
        study.images.append(image)

    def result(self) -> IngestResult:
        studies = [study for study in self._studies.values() if study.images]
        return IngestResult(studies=studies, rejected=list(self._rejected))
