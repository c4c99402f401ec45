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
from app.ingest.errors import RejectedFile, SinkFailed, reraise_if_fatal
from app.ingest.identity import dicom_patient_identity, file_sha256, patient_key
from app.ingest.raster import read_raster, sniff_raster
from app.ingest.types import ImageSink, IngestedImage, IngestedStudy, IngestOptions, IngestResult, Rejection

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


def ingest_paths(
    paths: Sequence[Path | str], options: IngestOptions | None = None, sink: ImageSink | None = None
) -> IngestResult:
    """Read every file under ``paths`` into studies; never raises for a bad file.

    Each unusable file becomes a ``Rejection`` whose reason a radiologist understands.
    Archive contents are unpacked into a temporary folder that is removed before returning.

    ``sink`` is called with each image as soon as it is decoded (one cine frame at a time),
    and what it returns is kept in the study instead: a sink that stores the pixels and
    returns ``image.without_pixels()`` keeps memory at about one frame, however large the
    upload. An image it was given may still end up unused: when a later frame of the same
    file turns out corrupt, the whole file is rejected. An exception raised by the sink is the
    caller's (not the file's) and propagates.
    """
    options = options or IngestOptions()
    collector = _StudyCollector(options, sink)
    try:
        for raw_path in paths:
            path = Path(raw_path)
            if not path.exists():
                collector.reject(str(raw_path), "file or folder not found")
                continue
            for candidate in _walk(path):
                _ingest_file(candidate, collector, options)
    except SinkFailed as failed:
        raise failed.original from None
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
        if collector.seen(sha):
            # Every frame of the same bytes would be the same image: not decoded again.
            raise RejectedFile("the same file was given twice; the copy is ignored")
        if sniff_raster(head) is not None and not has_dicom_magic(head):
            image = collector.emit(read_raster(data, candidate.source, sha, options))
            del data
            collector.add_raster(image, candidate.folder)
        else:
            # read_dicom also recognises old files without the DICM preamble, and rejects the rest.
            facts, images = read_dicom(data, candidate.source, sha, options, emit=collector.emit)
            collector.add_dicom(facts, images, candidate.folder)
    except RejectedFile as exc:
        collector.reject(candidate.source, exc.reason)
    except MemoryError:
        collector.reject(candidate.source, "the file is too large to open on this server")
    except OSError:
        collector.reject(candidate.source, "the file could not be read")
    except SinkFailed:
        raise
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

    def __init__(self, options: IngestOptions, sink: ImageSink | None) -> None:
        self._options = options
        self._sink = sink
        self._studies: dict[tuple[str, ...], IngestedStudy] = {}
        self._rejected: list[Rejection] = []
        # sha256 of every file whose images were added (a rejected file is not "seen").
        self._seen: set[str] = set()

    def reject(self, source: str, reason: str) -> None:
        self._rejected.append(Rejection(source=source, reason=reason))

    def seen(self, sha256: str) -> bool:
        return sha256 in self._seen

    def emit(self, image: IngestedImage) -> IngestedImage:
        """Hand a freshly decoded image to the sink; its failure is the caller's, never the file's."""
        if self._sink is None:
            return image
        try:
            return self._sink(image)
        except BaseException as exc:
            reraise_if_fatal(exc)
            raise SinkFailed(exc) from exc

    def add_dicom(self, facts: DicomStudyFacts, images: list[IngestedImage], folder: str) -> None:
        if facts.patient_id:
            identity = dicom_patient_identity(facts.patient_id, facts.issuer, facts.institution)
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
                issuer=facts.issuer if facts.patient_id else None,
                study_uid=facts.study_uid,
                study_date=facts.study_date,
                gestational_age_weeks=facts.gestational_age_weeks,
            )
            self._studies[group] = study
        elif study.gestational_age_weeks is None:
            study.gestational_age_weeks = facts.gestational_age_weeks
        self._seen.update(image.sha256 for image in images)
        study.images.extend(images)

    def add_raster(self, image: IngestedImage, folder: str) -> None:
        self._seen.add(image.sha256)
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
