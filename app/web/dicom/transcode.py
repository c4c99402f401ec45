"""Re-encode an original for a WADO-RS client that asked for another transfer syntax.

Only what PS3.18 makes the default is offered: Explicit VR Little Endian (pixels decompressed
with the same decoders ingestion uses). Anything else is served as stored or refused (406).
"""

from __future__ import annotations

import io

import pydicom
from pydicom.uid import ExplicitVRLittleEndian


def to_explicit_little_endian(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax == ExplicitVRLittleEndian:
        return data
    if syntax.is_compressed:
        # Lossy originals stay lossy: LossyImageCompression (0028,2110) is kept as it was.
        ds.decompress()
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()
