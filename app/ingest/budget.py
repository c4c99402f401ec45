"""Decode budgets: how many bytes a file's pixels will take, judged from its header alone.

Checked before any pixel is decoded, so that a hostile header (a few MB that claims eight
6000 × 6000 frames) is refused in milliseconds, with the header values named, instead of
costing seconds of decoding and GiBs of memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.ingest.errors import RejectedFile

_MIB = 1024 * 1024


def mib(n_bytes: int) -> str:
    return f"{n_bytes / _MIB:,.1f} MiB"


def check_decode_budget(factors: Sequence[tuple[str, int]], budget: int, note: str = "") -> int:
    """The product of ``factors`` (header value names and values) in bytes; RejectedFile above ``budget``.

    The reason spells the product out, e.g. "NumberOfFrames × Rows × Columns × SamplesPerPixel ×
    bytes per sample = 8 × 6000 × 6000 × 1 × 1 = 274.7 MiB, above the decode budget of 256.0 MiB".
    """
    total = math.prod(value for _, value in factors)
    if total > budget:
        names = " × ".join(name for name, _ in factors)
        values = " × ".join(str(value) for _, value in factors)
        raise RejectedFile(
            f"the image is too large to decode: {names} = {values} = {mib(total)}, "
            f"above the decode budget of {mib(budget)}{note}"
        )
    return total
