"""Peak memory (RSS) of the server process for a hostile cine and a ~1 GiB upload; prints JSON.

Each case starts a fresh `fetalcns serve` (its own temporary data folder, SQLite, the bundled
model, the analysis worker on), uploads through the real HTTP API from this process, waits
until the analysis is done, and reads the server's peak RSS (VmHWM in /proc/PID/status).

    .venv/bin/python benchmarks/bench_memory.py [--port 8130] [--upload-mib 1024] [--cases ...]

Cases:
- ``cine_refused``: a JPEG cine whose header says 8 frames of 6000 × 6000 (a few MB), under the
  default decode budget: refused from the header.
- ``cine_decoded``: the same file with FETALCNS_MAX_DECODE_BYTES raised to 1 GiB, so every frame
  is decoded, stored and analysed.
- ``gib_zip``: a ZIP (stored, not deflated) of ``--upload-mib`` MiB of DICOM: cine loops of
  60 RGB frames of 800 × 600 and single RGB frames of 1024 × 768; upload limits raised to let it in.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

MiB = 1024 * 1024


# ---- inputs --------------------------------------------------------------------------------
def _fan(height: int, width: int, rng: np.random.Generator, smooth: int = 1) -> np.ndarray:
    """A grey ultrasound-like fan (uint8); ``smooth`` > 1 gives low-frequency texture that JPEG packs well."""
    small = rng.gamma(2.0, 40.0, size=(max(1, height // smooth), max(1, width // smooth)))
    texture = np.kron(small, np.ones((smooth, smooth)))[:height, :width] if smooth > 1 else small
    yy, xx = np.mgrid[0:height, 0:width]
    angle = np.arctan2(xx - width / 2, yy + 10)
    fan = (np.abs(angle) < 0.7) & (np.hypot(xx - width / 2, yy + 10) < height * 0.95)
    return (texture * fan).clip(0, 255).astype(np.uint8)


def big_jpeg_cine(path: Path, side: int = 6000, frames: int = 8) -> Path:
    """An 8-bit grey JPEG baseline cine of ``frames`` × side × side (a few MB)."""
    from ingest_support import make_us_dataset, write_dataset
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(frames):
        buffer = io.BytesIO()
        Image.fromarray(_fan(side, side, rng, smooth=40)).save(buffer, format="JPEG", quality=60)
        encoded.append(buffer.getvalue())
    ds = make_us_dataset(np.zeros((8, 8), np.uint8), patient_id="BENCH-CINE", patient_name="Bench^Cine")
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    return write_dataset(ds, path)


def _dicom(pixels: np.ndarray, patient_id: str, study_uid: str) -> bytes:
    from ingest_support import dicom_bytes, make_us_dataset

    frames = pixels if pixels.ndim == 4 else pixels[None]
    ds = make_us_dataset(frames[0], patient_id=patient_id, patient_name="Bench^Gib", study_uid=study_uid)
    if pixels.ndim == 4:
        ds.NumberOfFrames = len(frames)
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return dicom_bytes(ds)


def gib_zip(path: Path, total_mib: int) -> tuple[Path, int]:
    """A stored ZIP of ~total_mib MiB of RGB DICOM (two thirds cine loops); returns (path, files)."""
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(1)
    study_uid = generate_uid()
    written, count = 0, 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        while written < total_mib * MiB * 2 // 3:
            cine = np.stack([np.dstack([_fan(600, 800, rng)] * 3) for _ in range(60)])
            data = _dicom(cine, "BENCH-GIB", study_uid)
            zf.writestr(f"exam/cine{count:03d}.dcm", data)
            written, count = written + len(data), count + 1
        while written < total_mib * MiB:
            data = _dicom(np.dstack([_fan(768, 1024, rng)] * 3), "BENCH-GIB", study_uid)
            zf.writestr(f"exam/still{count:04d}.dcm", data)
            written, count = written + len(data), count + 1
    return path, count


# ---- the server ----------------------------------------------------------------------------
def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


class Server:
    def __init__(self, root: Path, port: int, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FETALCNS_DATA_DIR": str(root),
            "FETALCNS_SECRET_KEY": secrets.token_urlsafe(32),
            "FETALCNS_INFERENCE_DEVICE": "cpu",
            "FETALCNS_WORKER_POLL_S": "0.5",
            **env,
        }
        self.password = secrets.token_urlsafe(18)
        self._cli("db", "upgrade")
        self._cli("users", "create", "bench", "--password-stdin", stdin=self.password)
        self.log = (root / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from app.cli import main; raise SystemExit(main())",
                "serve",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {root / 'server.log'}")
            time.sleep(0.3)
        token = httpx.post(
            self.base + "/api/v1/auth/token", data={"username": "bench", "password": self.password}
        )
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def _cli(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [sys.executable, "-c", "from app.cli import main; raise SystemExit(main())", *args],
            cwd=REPO,
            env=self.env,
            input=stdin,
            text=True,
            check=True,
            capture_output=True,
        )

    def rss_mib(self) -> float:
        return _status_kib(self.process.pid, "VmRSS") / 1024

    def peak_mib(self) -> float:
        return _status_kib(self.process.pid, "VmHWM") / 1024

    def upload(self, path: Path) -> httpx.Response:
        with path.open("rb") as handle:  # httpx streams the file in chunks
            return httpx.post(
                self.base + "/api/v1/studies",
                files={"files": (path.name, handle, "application/octet-stream")},
                headers=self.headers,
                timeout=None,
            )

    def wait_done(self, study_id: int, timeout_s: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = httpx.get(
                f"{self.base}/api/v1/studies/{study_id}", headers=self.headers, timeout=60
            ).json()
            if body["status"] in ("done", "failed"):
                return body
            time.sleep(1.0)
        raise TimeoutError(f"study {study_id} was not analysed in {timeout_s} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_case(name: str, upload: Path, port: int, env: dict[str, str], scratch: Path) -> dict[str, Any]:
    root = scratch / name
    root.mkdir()
    server = Server(root, port, env)
    try:
        idle = server.rss_mib()
        started = time.perf_counter()
        response = server.upload(upload)
        answered = time.perf_counter() - started
        result: dict[str, Any] = {
            "case": name,
            "upload_mib": round(upload.stat().st_size / MiB, 1),
            "http_status": response.status_code,
            "answer_s": round(answered, 2),
            "idle_rss_mib": round(idle, 1),
        }
        body = response.json()
        if response.status_code == 202:
            result["peak_rss_after_upload_mib"] = round(server.peak_mib(), 1)
            study = server.wait_done(body["study_id"])
            result.update(
                analysis_status=study["status"],
                n_images=len(study["images"]),
                upload_and_analysis_s=round(time.perf_counter() - started, 1),
            )
        else:
            result["reason"] = body.get("detail")
        result["peak_rss_mib"] = round(server.peak_mib(), 1)
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8130)
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--cases", default="cine_refused,cine_decoded,gib_zip")
    parser.add_argument(
        "--scratch", type=Path, default=None, help="folder for inputs and servers (default: a temp dir)"
    )
    args = parser.parse_args()
    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=args.scratch) as tmp:
        scratch = Path(tmp)
        results: list[dict[str, Any]] = []
        if {"cine_refused", "cine_decoded"} & set(cases):
            cine = big_jpeg_cine(scratch / "cine6000.dcm")
            if "cine_refused" in cases:
                results.append(run_case("cine_refused", cine, args.port, {}, scratch))
            if "cine_decoded" in cases:
                env = {"FETALCNS_MAX_DECODE_BYTES": str(1024 * MiB)}
                results.append(run_case("cine_decoded", cine, args.port, env, scratch))
        if "gib_zip" in cases:
            archive, n_files = gib_zip(scratch / "exam.zip", args.upload_mib)
            limit = str(archive.stat().st_size + 64 * MiB)
            env = {"FETALCNS_MAX_FILE_BYTES": limit, "FETALCNS_MAX_REQUEST_BYTES": limit}
            result = run_case("gib_zip", archive, args.port, env, scratch)
            result["n_files_in_zip"] = n_files
            results.append(result)
    print(json.dumps({"cases": results, "cpu_count": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
