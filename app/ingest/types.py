"""What ingestion hands to inference and the web app: studies of display-ready images.

Pixels are always H×W×3 uint8 display RGB at the original geometry; the crop box is
carried beside them, never applied to them, so that overlays line up with the original.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from app.preprocess import Box


@dataclass(frozen=True)
class IngestOptions:
    """Limits and choices for one ingestion run. The defaults suit a web upload."""

    # Cine loops: at most this many frames per file. "sample": spread evenly, first and last
    # included (a summary of the loop); "first": the first frames in order, for playback.
    max_frames_per_cine: int = 8
    cine_frames: Literal["sample", "first"] = "sample"
    max_file_bytes: int = 512 * 1024 * 1024
    # Per decoded frame; a 4K ultrasound screen capture is ~8.3 Mpx.
    max_pixels_per_frame: int = 40_000_000
    # Decode budget per file: frames decoded × rows × columns × samples × bytes per sample, checked
    # from the header before any pixel is decoded. Eight 4K RGB frames are ~200 MB; a hostile
    # header (8 × 6000 × 6000) is refused in milliseconds instead of costing seconds and GiBs.
    max_decoded_bytes: int = 256 * 1024 * 1024
    # ZIP archives.
    max_archive_entries: int = 5_000
    max_archive_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024
    # Deflate rarely exceeds ~20:1 on medical images; bombs reach 1000:1.
    max_compression_ratio: float = 100.0
    # Where archives are unpacked (a fresh temporary folder inside it, always removed).
    temp_root: str | None = None
    # Salt for patient_key. Change it per deployment to make keys unlinkable across sites.
    key_salt: str = "fetalcns"

    def __post_init__(self) -> None:
        positive = (
            "max_frames_per_cine",
            "max_file_bytes",
            "max_pixels_per_frame",
            "max_decoded_bytes",
            "max_archive_entries",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"IngestOptions.{name} must be at least 1")
        if self.max_compression_ratio <= 1:
            raise ValueError("IngestOptions.max_compression_ratio must be above 1")


@dataclass(frozen=True)
class Rejection:
    """A file that could not be used, and why, in words a radiologist understands."""

    source: str
    reason: str


@dataclass
class IngestedImage:
    """One image (or one cine frame) ready for the model.

    ``source`` names the file (``archive.zip!inner/path`` for archive members);
    ``frame`` is the 0-based frame index for multi-frame files, else None.
    ``scan_box`` (top, bottom, left, right) comes from DICOM ultrasound regions; None means
    "detect it" (app.preprocess.find_scan_area, exactly as in training).
    """

    source: str
    frame: int | None
    pixels: np.ndarray
    scan_box: Box | None
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # True once an ImageSink has stored the pixels and let them go (see ``without_pixels``).
    pixels_dropped: bool = False

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def without_pixels(self) -> IngestedImage:
        """This image with its pixels let go, for a sink that has stored them.

        ``pixels`` becomes a read-only, zero-byte stand-in of the same shape and dtype, so that
        ``height`` and ``width`` still hold; ``pixels_dropped`` tells readers it holds no image.
        The metadata dict is shared, so notes added later (decoder warnings) reach both.
        """
        stand_in = np.broadcast_to(np.zeros((), self.pixels.dtype), self.pixels.shape)
        return replace(self, pixels=stand_in, pixels_dropped=True)


# Called with each image as soon as it is decoded; what it returns is kept in the study instead.
# A sink that stores the pixels and returns ``image.without_pixels()`` keeps one frame in memory.
ImageSink = Callable[[IngestedImage], IngestedImage]


@dataclass
class IngestedStudy:
    """Images of one patient's study.

    ``patient_key`` is a salted hash prefix: stable for the same patient, safe to log.
    ``patient_id`` and ``patient_name`` are identifying: store them, never log them.
    """

    patient_key: str
    patient_id: str | None
    patient_name: str | None
    study_uid: str | None
    study_date: str | None
    gestational_age_weeks: float | None
    images: list[IngestedImage] = field(default_factory=list)
    # IssuerOfPatientID: part of the patient's identity (``patient_key``), shown beside the ID.
    issuer: str | None = None


@dataclass
class IngestResult:
    studies: list[IngestedStudy] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return sum(len(study.images) for study in self.studies)
