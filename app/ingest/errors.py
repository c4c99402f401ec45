"""The one exception ingestion raises internally: a file is unusable, with a readable reason."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# catch_warnings swaps process-global state, hence the lock.
_WARNINGS_LOCK = threading.Lock()
_QUOTED = re.compile(r"'[^']*'")


class RejectedFile(Exception):
    """Raised by readers; ``ingest_paths`` turns it into a Rejection, never a traceback."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SinkFailed(Exception):
    """The caller's ImageSink raised (e.g. its storage is full): not the file's fault.

    It passes every "bad file" handler, and ``ingest_paths`` re-raises ``original``.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(type(original).__name__)
        self.original = original


def reraise_if_fatal(exc: BaseException) -> None:
    """Let interpreter exits and sink failures through; everything else is a bad file.

    Decoders written in Rust (pylibjpeg-rle) signal corrupt input with a PanicException,
    which derives from BaseException, so ``except Exception`` alone would let it escape.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | SinkFailed):
        raise exc


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Collect decoder warnings instead of printing them; the list is filled on exit.

    Messages may quote element values (a malformed PatientName, say), so quoted parts are
    blanked out.
    """
    notes: list[str] = []
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield notes
    notes.extend(sorted({_QUOTED.sub("'…'", str(w.message)) for w in caught}))
