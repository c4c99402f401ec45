"""Study ingestion: DICOM (any transfer syntax pydicom decodes), image exports and ZIP archives.

Entry point: ``ingest_paths(paths, options, sink) -> IngestResult``. Output images are display
RGB uint8 at their original geometry with an optional scan-area box; nothing here imports
torch, and nothing here logs patient names or IDs.
"""

from app.ingest.ingest import ingest_paths
from app.ingest.types import (
    ImageSink,
    IngestedImage,
    IngestedStudy,
    IngestOptions,
    IngestResult,
    Rejection,
)

__all__ = [
    "ImageSink",
    "IngestOptions",
    "IngestResult",
    "IngestedImage",
    "IngestedStudy",
    "Rejection",
    "ingest_paths",
]
