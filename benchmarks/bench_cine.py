"""What keeping every frame of a cine loop costs, and what the card's frame budget saves.

Builds one RGB cine loop of synthetic phantoms (default 120 frames of 640×480), then times:

* ingestion as the web upload runs it (every frame in order, ``cine_frames="first"``) with the
  upload's own storing sink (display PNG and thumbnail per frame into a content store);
* the demo model on the frames the card analyses (``cine.max_analysed_frames``, spread evenly
  by ``frames_to_analyse``) against all stored frames.

    .venv/bin/python benchmarks/bench_cine.py [--frames 120] [--threads 1]

Prints one JSON object (seconds, per-frame milliseconds, stored bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(n_frames: int, threads: int) -> dict[str, Any]:
    from ingest_support import make_us_dataset, phantom, write_dataset

    from app.inference.analysis import frames_to_analyse, loop_key
    from app.inference.engine import InferenceEngine
    from app.ingest import IngestOptions, ingest_paths
    from app.web.core.storage import ContentStore
    from app.web.services.uploads import _StoringSink

    model_dir = Path(__file__).resolve().parents[1] / "models" / "fetal-cns-demo"
    with tempfile.TemporaryDirectory() as tmp:
        frames = np.stack([phantom(480, 640, seed=i) for i in range(n_frames)])
        rgb = np.repeat(frames[..., None], 3, axis=-1)
        ds = make_us_dataset(rgb[0])
        ds.NumberOfFrames = n_frames
        ds.PixelData = np.ascontiguousarray(rgb).tobytes()
        path = write_dataset(ds, Path(tmp) / "loop.dcm")
        store = ContentStore(Path(tmp) / "store")
        sink = _StoringSink(store)
        options = IngestOptions(max_frames_per_cine=n_frames, cine_frames="first", max_decoded_bytes=2**34)
        t0 = time.perf_counter()
        result = ingest_paths([path], options, sink=sink)
        ingest_s = time.perf_counter() - t0
        images = result.studies[0].images
        stored_bytes = sum(os.path.getsize(store.path_for(key)) for key in sink.created)

        engine = InferenceEngine(model_dir, device="cpu", threads=threads)
        keys = [loop_key(image.sha256, image.frame) for image in images]
        chosen = frames_to_analyse(
            keys, [image.frame for image in images], engine.card.cine_rule.max_analysed_frames
        )
        # The worker reads the stored frames back; here they are decoded again, without the sink.
        full = ingest_paths([path], options).studies[0].images
        t0 = time.perf_counter()
        engine.predict([full[i] for i in chosen])
        chosen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.predict(full)
        all_s = time.perf_counter() - t0
    return {
        "frames": n_frames,
        "frame_size": [480, 640],
        "ingest_and_store_s": round(ingest_s, 3),
        "ingest_and_store_ms_per_frame": round(1000 * ingest_s / n_frames, 1),
        "stored_mib": round(stored_bytes / 2**20, 1),
        "analysed_frames": len(chosen),
        "analyse_card_frames_s": round(chosen_s, 3),
        "analyse_all_frames_s": round(all_s, 3),
        "threads": threads,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.frames, args.threads)))


if __name__ == "__main__":
    main()
