"""Model inputs prepared at upload, kept in memory for this process's own analysis worker.

An upload has every image's pixels in memory once, when ingestion decodes them; the worker used
to read the display PNG back from the store, decode it and resize it again in its process pool.
When the worker runs in the same process as the upload (the in-process worker, not
``fetalcns worker`` behind a broker), the upload's encoding threads also prepare each image
(``app.inference.prepare.prepare_pixels``: crop box, resize, normalise, flags) and leave the
answer here, under everything that answer depends on: the display blob's key (the sha256 of
its lossless PNG, so the pixels are exactly the ones stored), the model's preprocessing spec,
the scan box and the metadata the image row holds. The worker still reads the blob and takes
the entry only when all of them match and the blob's bytes still hash to its key; otherwise it
decodes and prepares the blob as before, so a miss (another process, a restart, an evicted
entry, a new model) is only slower, never different.

Bounded by bytes (least recently stored first out). An entry is removed when the worker has
taken it as many times as uploads stored it: each upload's analysis needs it once, and two images
of one upload with the same pixels (a loop's identical frames) share one display blob and so one
entry.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.inference.prepare import PreparedImage
from app.preprocess import Box, PreprocessSpec

# About 100 images of a 224×224 model (600 KB each): a few studies uploaded at once.
DEFAULT_BUDGET_BYTES = 64 << 20

CacheKey = tuple[str, PreprocessSpec, Box | None, str]


def cache_key(
    storage_key: str, spec: PreprocessSpec, box: Box | None, metadata: Mapping[str, Any] | None
) -> CacheKey:
    """The key of one image's model input: every argument ``prepare_pixels`` reads besides the
    pixels, which the display blob's content-addressed key stands for."""
    # The row's metadata comes back from a JSON column: compare it as JSON text.
    meta = json.dumps(dict(metadata or {}), sort_keys=True, default=str)
    return (storage_key, spec, tuple(int(v) for v in box) if box else None, meta)


def _size(prepared: PreparedImage) -> int:
    return int(prepared.tensor.nbytes) + 512  # the rest of the answer is a few small values


class PreparedInputs:
    """A thread-safe, byte-bounded map from ``cache_key`` to a ``PreparedImage``."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        # key -> (the model input, how many takes it still has)
        self._entries: OrderedDict[CacheKey, tuple[PreparedImage, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # Counters for tests, benchmarks and the log: taken from here, or looked for in vain.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def put(self, key: CacheKey, prepared: PreparedImage) -> None:
        size = _size(prepared)
        if size > self.budget_bytes:
            return  # one huge model input would push everything else out
        with self._lock:
            old = self._entries.pop(key, None)
            uses = 1
            if old is not None:
                self._bytes -= _size(old[0])
                uses += old[1]
            self._entries[key] = (prepared, uses)
            self._bytes += size
            while self._bytes > self.budget_bytes:
                _, (evicted, _) = self._entries.popitem(last=False)
                self._bytes -= _size(evicted)

    def take(self, key: CacheKey) -> PreparedImage | None:
        """The entry under ``key`` (removed with its last take); None when there is none."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            prepared, uses = entry
            if uses > 1:
                self._entries[key] = (prepared, uses - 1)
            else:
                del self._entries[key]
                self._bytes -= _size(prepared)
            self.hits += 1
            return prepared


@dataclass(frozen=True)
class ForWorker:
    """What an upload needs to prepare model inputs for this process's worker."""

    cache: PreparedInputs
    spec: PreprocessSpec
    # The model card's frames per cine loop (``cine_rule.max_analysed_frames``).
    max_loop_frames: int | None

    def analysed(self, frame: int | None, metadata: Mapping[str, Any] | None) -> bool:
        """False for a loop's frame the worker will not analyse (stored for playback only): of
        ``frames_stored`` frames, those ``app.inference.analysis.frames_to_analyse`` picks.
        Unknown counts say True (at worst an entry is never taken)."""
        from app.ingest.display import sample_frame_indices

        stored = (metadata or {}).get("frames_stored")
        if frame is None or self.max_loop_frames is None or not isinstance(stored, int):
            return True
        return frame in sample_frame_indices(stored, self.max_loop_frames)
