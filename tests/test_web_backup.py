"""`fetalcns backup`, `backup verify`, `restore` and `db verify` on SQLite and PostgreSQL: a backup
taken while uploads are being written restores into a fresh place and verifies; a damaged or
missing blob fails verification with a message naming it; a non-empty target needs --force."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from backup_support import cli, fresh_target  # noqa: F401
from backup_support import studies as _studies
from sqlalchemy import select
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.models import Image
from app.web.services.backup import MANIFEST

IMAGES_PER_STUDY = 2


def _analysed_harness(web: Any) -> Any:  # noqa: F811
    harness = web(worker_enabled=True)
    response = harness.upload(study_files(IMAGES_PER_STUDY, patient_id="PID-B0", seed=1))
    assert response.status_code == 202, response.text
    assert harness.wait_for(response.json()["study_id"])["status"] == "done"
    return harness


def test_backup_during_uploads_restores_into_a_fresh_place(
    web: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    fresh_target: tuple[Path, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    harness = _analysed_harness(web)
    live_dir, live_url = harness.settings.data_dir, harness.db_url
    statuses: list[int] = []
    started = threading.Event()

    def upload_more() -> None:
        for i in range(4):
            files = study_files(IMAGES_PER_STUDY, patient_id=f"PID-B{i + 1}", seed=10 + 3 * i)
            started.set()
            statuses.append(harness.upload(files).status_code)

    writer = threading.Thread(target=upload_more)
    writer.start()
    started.wait(30)
    dest = tmp_path / "backup"
    status, out, err = cli(live_dir, live_url, "backup", str(dest))
    writer.join(120)
    assert status == 0, err
    assert statuses == [202] * 4
    manifest = json.loads((dest / MANIFEST).read_text())
    counts = manifest["database"]["row_counts"]
    assert counts["studies"] >= 1 and f"{counts['studies']} studies" in out
    assert manifest["storage"]["blobs"] == len(manifest["storage"]["keys"]) > 0

    status, out, err = cli(live_dir, live_url, "backup", "verify", str(dest))
    assert status == 0, err
    assert "verified" in out

    data_dir, url = fresh_target
    status, out, err = cli(data_dir, url, "restore", str(dest))
    assert status == 0, err + out
    assert "all" in out and "integrity: " in out
    restored = _studies(url)
    # The snapshot holds whole uploads only: every study with all of its images.
    assert len(restored) == counts["studies"]
    assert set(restored.values()) == {IMAGES_PER_STUDY}
    assert sum(restored.values()) == counts["images"]
    store = data_dir / "storage"
    assert {p.name for p in store.glob("*/*/*")} == set(manifest["storage"]["keys"])
    status, out, err = cli(data_dir, url, "db", "verify")
    assert status == 0, err
    # Restoring again into what now holds data is refused without --force.
    status, out, err = cli(data_dir, url, "restore", str(dest))
    assert status == 1 and "already holds data" in err and "--force" in err
    status, out, err = cli(data_dir, url, "restore", "--force", str(dest))
    assert status == 0, err


def test_a_damaged_or_missing_blob_fails_verification(
    web: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    fresh_target: tuple[Path, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    harness = _analysed_harness(web)
    dest = tmp_path / "backup"
    assert cli(harness.settings.data_dir, harness.db_url, "backup", str(dest))[0] == 0
    keys = json.loads((dest / MANIFEST).read_text())["storage"]["keys"]
    damaged, missing = keys[0], keys[1]
    blob = dest / "storage" / damaged[:2] / damaged[2:4] / damaged
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    (dest / "storage" / missing[:2] / missing[2:4] / missing).unlink()

    status, out, err = cli(harness.settings.data_dir, harness.db_url, "backup", "verify", str(dest))
    assert status == 1 and "FAILED" in out
    assert f"blob {damaged} (" in err and "is damaged: its bytes do not match its sha256" in err
    assert f"blob {missing} (" in err and "is missing from the storage" in err

    data_dir, url = fresh_target
    status, out, err = cli(data_dir, url, "restore", str(dest))
    assert status == 1 and "failed verification, nothing was restored" in err
    assert not list((data_dir / "storage").glob("*/*/*")) and not _studies(url)


def test_a_damaged_database_file_fails_verification(web: Any, cli: Any, tmp_path: Path) -> None:  # noqa: F811
    harness = _analysed_harness(web)
    dest = tmp_path / "backup"
    assert cli(harness.settings.data_dir, harness.db_url, "backup", str(dest))[0] == 0
    database = next(p for p in dest.iterdir() if p.name.startswith("database."))
    with database.open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00damaged\x00")
    status, _out, err = cli(harness.settings.data_dir, harness.db_url, "backup", "verify", str(dest))
    assert status == 1 and f"the database file {database.name} is damaged" in err
    # An unfinished backup (no manifest) is named as such.
    (dest / MANIFEST).unlink()
    status, _out, err = cli(harness.settings.data_dir, harness.db_url, "backup", "verify", str(dest))
    assert status == 1 and "the backup did not finish" in err


def test_db_verify_names_a_damaged_live_blob_and_backup_leaves_it_out(
    web: Any,  # noqa: F811
    cli: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    harness = _analysed_harness(web)
    live_dir, live_url = harness.settings.data_dir, harness.db_url
    assert cli(live_dir, live_url, "db", "verify")[0] == 0
    with harness.runtime.session_factory() as db:
        key = db.scalars(select(Image.storage_key)).first()
    path = harness.runtime.store.path_for(key)
    path.write_bytes(path.read_bytes() + b"tail")
    status, _out, err = cli(live_dir, live_url, "db", "verify")
    assert status == 1 and f"blob {key} (images.storage_key, row " in err and "is damaged" in err
    # A backup copies the rest, says which blob it left out, and exits 1.
    dest = tmp_path / "backup"
    status, _out, err = cli(live_dir, live_url, "backup", str(dest))
    assert status == 1 and f"blob {key}" in err and "not in the backup" in err
    assert key not in json.loads((dest / MANIFEST).read_text())["storage"]["keys"]
    # Backing up into a folder that holds something is refused.
    status, _out, err = cli(live_dir, live_url, "backup", str(dest))
    assert status == 1 and "not an empty folder" in err
