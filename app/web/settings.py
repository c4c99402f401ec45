"""Runtime configuration, read from FETALCNS_* environment variables (see docs/configuration.md)."""

from __future__ import annotations

import os
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from app.paths import default_data_dir, default_model_dir

AssistanceMode = Literal["concurrent", "second-read"]
MiB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the server. Each field maps to FETALCNS_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix="FETALCNS_", extra="ignore", protected_namespaces=())

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where the database, storage and secret key live; "
        "default var/ of the source checkout, else ~/.local/share/fetalcns",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///DATA_DIR/fetalcns.db"
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="database connections kept per server process (as many more under load)",
    )
    database_pool_timeout_s: float = Field(
        30.0, gt=0, description="how long a request waits for a free database connection"
    )
    database_busy_timeout_s: float = Field(
        10.0, gt=0, description="SQLite: how long a writer waits for another's transaction to end"
    )
    storage_dir: Path | None = Field(
        None, description="content-addressed image storage; default DATA_DIR/storage"
    )
    storage_backend: Literal["local", "s3"] = Field(
        "local", description="local: the content-addressed folder STORAGE_DIR; s3: an S3-compatible bucket"
    )
    s3_endpoint_url: str = Field(
        "https://s3.amazonaws.com", description="the S3-compatible server, http(s)://host[:port]"
    )
    s3_bucket: str = Field("fetalcns", description="the bucket, created beforehand by the operator")
    s3_prefix: str = Field("", description="a folder-like prefix for every key in the bucket")
    s3_region: str = Field("us-east-1", description="the bucket's region")
    s3_access_key_id: str | None = Field(None, description="S3 access key id")
    s3_secret_access_key: str | None = Field(None, description="S3 secret access key")
    model_dir: Path = Field(
        default_factory=default_model_dir,
        description="model directory (model.onnx + model.json); default the bundled demo model",
    )
    inference_device: str = Field("auto", description="auto, cpu, cuda or cuda:N (one GPU of several)")
    inference_batch_size: int = Field(16, ge=1, le=256)
    inference_threads: int | None = Field(
        None, ge=1, description="CPU threads for inference; default: runtime's"
    )
    inference_precision: Literal["fp32", "int8", "fp16"] = Field(
        "fp32",
        description="fp32 (model.onnx), or a variant from `fetalcns export --quantize` whose parity "
        "check passed: int8 for CPUs, fp16 for GPUs",
    )
    inference_tensorrt: bool = Field(
        False, description="on a GPU, run TensorRT before CUDA (engines cached under DATA_DIR/tensorrt)"
    )
    assistance_mode: AssistanceMode = Field(
        "concurrent",
        description="concurrent: AI shown at once; second-read: AI hidden until a preliminary read",
    )
    secret_key: str | None = Field(None, description="signs CSRF tokens; default DATA_DIR/secret_key")
    secure_cookies: bool = Field(False, description="always mark cookies Secure (set when served over https)")
    session_max_age_s: int = Field(
        8 * 3600, ge=60, description="absolute session lifetime: a session ends this long after sign-in"
    )
    session_idle_timeout_s: int = Field(
        30 * 60, ge=1, description="a session unused for this long ends (idle timeout)"
    )
    token_max_age_s: int = Field(
        8 * 3600, ge=60, description="lifetime of bearer tokens from POST /api/v1/auth/token"
    )
    token_max_lifetime_s: int = Field(
        90 * 24 * 3600, ge=60, description="longest lifetime a named API token (POST /api/v1/tokens) may have"
    )
    max_file_bytes: int = Field(200 * MiB, ge=1, description="largest single uploaded file")
    max_request_bytes: int = Field(
        1024 * MiB, ge=1, description="largest upload request (all files together)"
    )
    max_files_per_upload: int = Field(2000, ge=1, description="most files (after unzipping) in one upload")
    max_decode_bytes: int = Field(
        256 * MiB,
        ge=1,
        description="decode budget per file: frames × rows × columns × samples × bytes per sample, "
        "checked from the header before any pixel is decoded",
    )
    max_cine_frames: int = Field(
        120,
        ge=1,
        le=2000,
        description="most frames kept of one cine loop, in order from the first; the case page says "
        "when a loop had more (each frame counts against the decode budget)",
    )
    worker_enabled: bool = Field(True, description="run the background analysis worker inside the server")
    worker_queue_size: int = Field(
        64, ge=1, description="analyses waiting in memory; the rest wait in the DB"
    )
    worker_batch_bytes: int = Field(
        256 * MiB,
        ge=1,
        description="the analysis worker loads a study's images in batches of at most this much working "
        "memory (7 bytes per pixel: RGB and the Grad-CAM map); a larger image is a batch alone",
    )
    worker_prepare_processes: int | None = Field(
        None,
        ge=0,
        description="processes that decode and preprocess stored images for the analysis worker; "
        "default one per core; 0: in the worker's own thread",
    )
    worker_study_batch: int = Field(
        8,
        ge=1,
        description="queued analyses the in-process worker takes together, so that their images "
        "share the model's batches; also the default of `fetalcns worker --batch-studies`",
    )
    worker_poll_s: float = Field(
        5.0, gt=0, description="how often the worker looks for queued analyses in the DB"
    )
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="how much lower (Linux nice) the in-process worker's analysis runs than the web "
        "requests of its process, so that pages stay fast during an analysis; 0: the same priority",
    )
    worker_lease_s: float = Field(
        60.0,
        ge=1,
        description="an analysis's lease: its worker renews it every third of this; when the worker "
        "dies, another takes the analysis this long after the last renewal",
    )
    worker_max_attempts: int = Field(
        3, ge=1, description="an analysis whose worker died this many times is failed, not taken again"
    )
    broker_url: str | None = Field(
        None,
        description="redis://… or amqp://…: analyses go to `fetalcns worker` processes through this "
        "broker and the web processes run none; unset: the in-process worker",
    )
    broker_queue: str = Field(
        "fetalcns-analysis",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="the broker's queue name for analysis jobs (one per installation)",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object per log line (no patient data either way)"
    )
    metrics_token: str | None = Field(
        None,
        description="GET /metrics answers clients on this host, and others sending "
        "Authorization: Bearer <this token>; unset: this host only",
    )
    admin_password: str | None = Field(None, description="password for `fetalcns users bootstrap-admin`")
    login_max_failures_per_account: int = Field(
        5, ge=1, description="failed sign-ins of one account before each further attempt waits"
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="failed sign-ins from one client address before each further attempt waits"
    )
    login_failure_window_s: int = Field(
        3600, ge=1, description="failures are forgotten this long after the last one"
    )
    login_backoff_base_s: float = Field(
        1.0, gt=0, description="wait after the first failure over the limit; doubles with each further one"
    )
    login_backoff_max_s: float = Field(900.0, gt=0, description="longest wait between sign-in attempts")
    sweep_on_start: bool = Field(
        True, description="remove orphan blobs and abandoned upload folders when the server starts"
    )
    sweep_grace_s: int = Field(
        3600, ge=0, description="files younger than this are never swept (an upload may still be writing)"
    )

    dicom_listener: bool = Field(
        False,
        description="run the DICOM C-STORE listener inside `fetalcns serve` (else `fetalcns dicom-listener`)",
    )
    dicom_ae_title: str = Field(
        "FETALCNS", min_length=1, max_length=16, description="the listener's AE title (called AE title)"
    )
    dicom_host: str = Field("127.0.0.1", description="address the DICOM listener binds to")
    dicom_port: int = Field(11112, ge=1, le=65535, description="port of the DICOM listener")
    dicom_allow: str = Field(
        "",
        description="calling AE titles allowed to send, comma-separated, each AE or AE@HOST "
        "(host name or address); empty: every association is refused",
    )
    dicom_quiet_s: float = Field(
        0.0,
        ge=0,
        description="0: analyse a received study when the sending association ends; above 0: when "
        "the study has received nothing for this many seconds (for senders that use one "
        "association per image)",
    )

    pacs_host: str | None = Field(
        None, description="push result objects (SR, SC, PDF) by C-STORE to this PACS; unset: no push"
    )
    pacs_port: int = Field(104, ge=1, le=65535, description="the PACS's DICOM port")
    pacs_ae_title: str = Field("PACS", min_length=1, max_length=16, description="the PACS's AE title")
    push_max_attempts: int = Field(5, ge=1, description="attempts of one push before it is marked failed")
    push_retry_base_s: float = Field(
        30.0, gt=0, description="wait after the first failed attempt; doubles with each further one"
    )
    push_poll_s: float = Field(10.0, gt=0, description="how often the pusher looks for new results to send")

    @field_validator("dicom_ae_title", "pacs_ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        # PS3.5 AE VR: up to 16 characters of the default repertoire, no backslash or control
        # characters; leading and trailing spaces are not significant.
        value = value.strip()
        if not value or "\\" in value or not value.isascii() or not value.isprintable():
            raise ValueError("an AE title is 1-16 printable ASCII characters without a backslash")
        return value

    @field_validator("data_dir", "storage_dir", "model_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Fixed once, so that a later chdir (or another shell's folder) never moves the data.
        return value.expanduser().absolute() if value is not None else None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'fetalcns.db').as_posix()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def upload_tmp_dir(self) -> Path:
        """Uploads are unpacked here; kept on the same filesystem as storage so moves are cheap."""
        return self.resolved_storage_dir.parent / "upload-tmp"

    def locations(self) -> dict[str, str]:
        """What this process reads and writes, for the start-up message (no password)."""
        return {
            "database": make_url(self.resolved_database_url).render_as_string(hide_password=True),
            "storage": str(self.resolved_storage_dir)
            if self.storage_backend == "local"
            else f"s3://{self.s3_bucket}/{self.s3_prefix} at {self.s3_endpoint_url}",
            "model": str(self.model_dir),
            "broker": _without_password(self.broker_url) if self.broker_url else "none (in-process worker)",
        }

    def resolved_secret_key(self) -> str:
        """The configured key, else one generated once into DATA_DIR/secret_key (mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # O_EXCL: when two processes start together, exactly one writes the key.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(secrets.token_urlsafe(48) + "\n")
        for _ in range(50):
            key = path.read_text(encoding="utf-8").strip()
            if key:
                return key
            time.sleep(0.01)  # the other process is still writing it
        raise RuntimeError(f"{path} is empty; delete it or set FETALCNS_SECRET_KEY")


def _without_password(url: str) -> str:
    """A broker URL as it may be printed: any password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
