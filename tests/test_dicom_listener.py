"""The C-STORE listener against dcmtk's storescu/echoscu: storage, refusals, the allow-list,
when a study is analysed, and `fetalcns dicom-listener` on its own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from dicom_net_support import free_port, need_tool, storescu, us_study
from ingest_support import vendor_file
from sqlalchemy import func, select
from web_support import db_url, web  # noqa: F401

from app.web.core.models import Analysis, AuditEvent, Image, Study
from app.web.dicom.settle import StudySettler

pytestmark = pytest.mark.slow


def _listener_web(web, **overrides):  # noqa: F811
    port = free_port()
    settings = {"dicom_listener": True, "dicom_port": port, "dicom_allow": "STORESCU@127.0.0.1, ECHOSCU"}
    settings.update(overrides)
    return web(**settings), port


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _studies(h) -> list[Study]:
    with h.runtime.session_factory() as db:
        return list(db.scalars(select(Study).order_by(Study.id)))


def _count(h, model) -> int:
    with h.runtime.session_factory() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_storescu_study_is_stored_and_analysed_once_at_release(web, tmp_path: Path) -> None:  # noqa: F811
    h, port = _listener_web(web)
    study_uid, files = us_study(tmp_path, 3)
    result = storescu(port, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("Received Store Response (Success)") == 3, result.stderr
    (study,) = _studies(h)
    assert study.study_uid == study_uid
    body = h.wait_for(study.id)
    assert body["status"] == "done", body
    assert len(body["images"]) == 3 and body["patient"]["patient_id"] == "PID-DICOM-1"
    assert body["study_date"] == "2025-03-14"
    # One association, one analysis (not one per instance).
    assert _count(h, Analysis) == 1
    with h.runtime.session_factory() as db:
        uploads = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "study.upload")))
        queued = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "study.analysis_queued")))
    assert len(uploads) == 3 and all(
        e.detail["via"] == "dicom" and e.detail["calling_ae"] == "STORESCU" for e in uploads
    )
    assert len(queued) == 1 and queued[0].study_id == study.id
    # The stored original is the instance as sent.
    with h.runtime.session_factory() as db:
        keys = list(db.scalars(select(Image.source_key)))
    sent = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    stored = {pydicom.dcmread(h.runtime.store.path_for(k)).SOPInstanceUID for k in keys}
    assert stored == sent


# Files in the transfer syntaxes ingestion decodes, and the storescu option that proposes each
# (storescu converts to an uncompressed syntax unless the file's own syntax is proposed).
TRANSFER_SYNTAX_FILES = [
    ("examples_rgb_color.dcm", "-xe", "Explicit VR Little Endian"),
    ("SC_rgb_small_odd_big_endian.dcm", "-xb", "Explicit VR Big Endian"),
    ("examples_jpeg2k.dcm", "-xv", "JPEG 2000 Image Compression (Lossless Only)"),
    ("JPEG2000.dcm", "-xw", "JPEG 2000 Image Compression"),
    ("examples_ybr_color.dcm", "-xy", "JPEG Baseline (Process 1)"),
    ("JPGExtended.dcm", "-xx", "JPEG Extended (Process 2 and 4)"),
    (
        "SC_rgb_jpeg_gdcm.dcm",
        "-xs",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
    ),
    ("SC_rgb_rle.dcm", "-xr", "RLE Lossless"),
]


def test_every_decoded_transfer_syntax_is_accepted(web, tmp_path: Path) -> None:  # noqa: F811
    h, port = _listener_web(web)
    sends = [(vendor_file(name), option) for name, option, _ in TRANSFER_SYNTAX_FILES]
    # Implicit VR, JPEG-LS and deflate made by dcmtk from one of our instances.
    _, (plain,) = us_study(tmp_path, 1, patient_id="PID-TS")
    implicit, jpegls, deflated = tmp_path / "implicit.dcm", tmp_path / "jpegls.dcm", tmp_path / "deflated.dcm"
    subprocess.run([need_tool("dcmconv"), "+ti", str(plain), str(implicit)], check=True)
    subprocess.run([need_tool("dcmcjpls"), str(plain), str(jpegls)], check=True)
    subprocess.run([need_tool("dcmconv"), "+td", str(plain), str(deflated)], check=True)
    sends += [(implicit, "-xi"), (jpegls, "-xt"), (deflated, "-xd")]
    # Each its own instance: several of these files are one instance (one SOPInstanceUID) in
    # other syntaxes, which the app rightly takes for a re-send and does not store twice
    # (app.web.services.uploads); this test is about decoding each syntax.
    own = []
    for index, (path, option) in enumerate(sends):
        copy = tmp_path / f"own-{index}-{path.name}"
        shutil.copyfile(path, copy)
        subprocess.run([need_tool("dcmodify"), "-nb", "-gin", str(copy)], check=True)
        own.append((copy, option))
    sends = own
    for path, option in sends:
        result = storescu(port, [path], "STORESCU", "FETALCNS", option)
        for before, after in re.findall(r"Converting transfer syntax: (.+?) -> (.+)", result.stderr):
            assert before == after, result.stderr  # sent as it is, not converted
        assert "Received Store Response (Success)" in result.stderr, (path.name, result.stderr)
    with h.runtime.session_factory() as db:
        syntaxes = set(db.scalars(select(Image.transfer_syntax)))
    expected = {name for _, _, name in TRANSFER_SYNTAX_FILES} | {
        "Implicit VR Little Endian",
        "JPEG-LS Lossless Image Compression",
        "Deflated Explicit VR Little Endian",
    }
    assert expected <= syntaxes


def test_bad_instances_get_a_failure_status_and_leave_nothing(web, tmp_path: Path) -> None:  # noqa: F811
    h, port = _listener_web(web)
    _, (good,) = us_study(tmp_path, 1)
    truncated = tmp_path / "truncated.dcm"
    ds = pydicom.dcmread(good)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.save_as(truncated, enforce_file_format=True)
    # No PatientID and no StudyInstanceUID: nothing to file it under.
    anonymous = vendor_file("JPEGLSNearLossless_08.dcm")
    for path, option in ((truncated, "-xe"), (anonymous, "-xu")):
        result = storescu(port, [path], "STORESCU", "FETALCNS", option, "-d")
        assert "Received Store Response" in result.stderr and "(Success)" not in result.stderr, result.stderr
        # Status C000 (cannot understand), with the reason as the ErrorComment.
        assert "DIMSE Status                  : 0xc000: Error: Cannot understand" in result.stderr
        assert re.search(r"\(0000,0902\) LO \[[^]]+\] .*ErrorComment", result.stderr), result.stderr
    assert _count(h, Study) == 0 and _count(h, Image) == 0 and _count(h, Analysis) == 0
    assert h.stored_keys() == set()
    # The listener is still up and stores the next good instance.
    again = storescu(port, [good])
    assert "Received Store Response (Success)" in again.stderr
    assert _count(h, Image) == 1


def test_unknown_calling_ae_and_host_are_refused(web, tmp_path: Path) -> None:  # noqa: F811
    h, port = _listener_web(web, dicom_allow="STORESCU@192.0.2.7, ECHOSCU")
    _, files = us_study(tmp_path, 1)
    stranger = storescu(port, files, calling="INTRUDER")
    assert stranger.returncode != 0
    assert "Association Rejected" in stranger.stderr + stranger.stdout
    assert "Calling AE Title Not Recognized" in stranger.stderr + stranger.stdout
    # The allowed AE title, from a host it is not allowed from.
    wrong_host = storescu(port, files, calling="STORESCU")
    assert wrong_host.returncode != 0 and "Association Rejected" in wrong_host.stderr + wrong_host.stdout
    wrong_called = storescu(port, files, calling="ECHOSCU", called="SOMEONEELSE")
    assert (
        wrong_called.returncode != 0
        and "Called AE Title Not Recognized" in wrong_called.stderr + wrong_called.stdout
    )
    assert _count(h, Image) == 0
    echo = subprocess.run(
        [need_tool("echoscu"), "-aet", "ECHOSCU", "-aec", "FETALCNS", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert echo.returncode == 0, echo.stderr


def test_quiet_period_analyses_a_study_sent_image_by_image_once(web, tmp_path: Path) -> None:  # noqa: F811
    h, port = _listener_web(web, dicom_quiet_s=1.5)
    _, files = us_study(tmp_path, 3)
    for path in files:  # one association per image, as some ultrasound machines send
        assert "Received Store Response (Success)" in storescu(port, [path]).stderr
    (study,) = _studies(h)
    assert h.wait_for(study.id)["status"] == "done"
    assert _count(h, Analysis) == 1


def test_settler_waits_for_the_quiet_period() -> None:
    now = [0.0]
    settled: list[set[int]] = []
    settler = StudySettler(10.0, settled.append, clock=lambda: now[0])
    settler.received("a1", [1])
    settler.association_ended("a1")
    now[0] = 6.0
    settler.received("a2", [1, 2])
    now[0] = 15.0
    settler.tick()
    assert settled == []  # study 1 was touched at 6 s: quiet for 9 s only
    now[0] = 16.0
    settler.tick()
    assert settled == [{1, 2}]
    settler.tick()
    assert settled == [{1, 2}]
    release = StudySettler(0.0, settled.append)
    release.received("a3", [7])
    assert settled == [{1, 2}]
    release.association_ended("a3")
    assert settled == [{1, 2}, {7}]


def test_dicom_listener_command_on_its_own(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from web_support import new_database

    # Once, on a SQLite database of its own: the command's wiring, not the database, is tested.
    database = new_database("sqlite", request.getfixturevalue("tmp_path_factory"), request.config)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
        ),
        "FETALCNS_DATA_DIR": str(tmp_path / "var"),
        "FETALCNS_DATABASE_URL": database,
        "FETALCNS_DICOM_ALLOW": "SOMEONE",
    }
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "dicom-listener",
        "--port",
        str(port),
        "--ae-title",
        "MYLISTENER",
    ]
    process = subprocess.Popen(
        [*command, "--allow", "STORESCU@localhost", "--no-worker"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "listening as" not in line:
            assert time.monotonic() < deadline and process.poll() is None, line
            line = process.stderr.readline()
        assert f"listening as MYLISTENER on 127.0.0.1:{port}" in line
        _, files = us_study(tmp_path, 2)
        result = storescu(port, files, called="MYLISTENER")
        assert result.stderr.count("Received Store Response (Success)") == 2, result.stderr
        # --allow replaces FETALCNS_DICOM_ALLOW.
        assert storescu(port, files, calling="SOMEONE", called="MYLISTENER").returncode != 0
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=60)[1]
    assert process.returncode == 0, rest
    from app.web.core.db import make_engine, make_session_factory

    engine = make_engine(database)
    try:
        with make_session_factory(engine)() as db:
            assert db.scalar(select(func.count()).select_from(Image)) == 2
            # Stopping the listener queued the study it had received (no worker: it waits).
            assert [a.status for a in db.scalars(select(Analysis))] == ["queued"]
    finally:
        engine.dispose()

    # Configured by the environment alone: FETALCNS_DICOM_PORT, _AE_TITLE and _ALLOW.
    env_port = free_port()
    env.update(
        FETALCNS_DICOM_PORT=str(env_port),
        FETALCNS_DICOM_AE_TITLE="ENVLISTENER",
        FETALCNS_DICOM_ALLOW="STORESCU",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dicom-listener", "--no-worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "listening as" not in line:
            assert time.monotonic() < deadline and process.poll() is None, line
            line = process.stderr.readline()
        assert f"listening as ENVLISTENER on 127.0.0.1:{env_port}" in line
        _, more = us_study(tmp_path / "more", 1, patient_id="PID-ENV")
        assert "Received Store Response (Success)" in storescu(env_port, more, called="ENVLISTENER").stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
