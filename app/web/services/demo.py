"""`fetalcns demo-data`: synthetic DICOM studies so that a fresh install has a worklist to show.

The images come from app.synth (phantoms, not patients) and are analysed at once
with the configured model. Everything about them says "synthetic".
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy import func, select

from app.web.core.models import Study
from app.web.runtime import build_runtime, load_inference
from app.web.services.uploads import ReceivedFiles, UploadOverrides, import_upload
from app.web.settings import Settings

log = logging.getLogger(__name__)


def demo_file_name(path: Path) -> str:
    """The name a demo file is stored under: its patient folder and file, never the synth
    dataset's class folder (``<class>/<patient>/IM0001.dcm``), which would tell a second reader
    the true class in the image list."""
    return f"{path.parent.name}/{path.name}"


def import_demo_data(
    settings: Settings, n_patients: int = 5, if_empty: bool = False, seed: int = 2025
) -> int:
    """Generate, import and analyse ``n_patients`` synthetic studies; returns a CLI exit code."""
    runtime = build_runtime(settings)
    try:
        with runtime.session_factory() as db:
            existing = int(db.scalar(select(func.count(Study.id))) or 0)
        if if_empty and existing:
            print(f"the database already has {existing} studies; no demo data added")
            return 0
        from app.synth import generate_dataset
        from app.synth.sites import SITES

        with tempfile.TemporaryDirectory(prefix="fetalcns-demo-") as tmp:
            root = Path(tmp)
            # Five images: one per standard CNS plane, so each anomaly shows in at least one.
            # The scanner sites in turn (app/synth/sites.py), as studies from several hospitals.
            generate_dataset(
                root,
                n_patients=n_patients,
                seed=seed,
                fmt="dicom",
                images_per_patient=(5, 5),
                sites=list(SITES),
            )
            files = sorted((root / "dicom").rglob("*.dcm"))
            received = ReceivedFiles(root, files, {str(p): demo_file_name(p) for p in files})
            outcome = import_upload(runtime, received, UploadOverrides(), None)
        print(f"imported {len(outcome.studies)} synthetic demo studies")
        for rejected in outcome.rejected:
            print(f"  skipped {rejected.filename}: {rejected.reason}")
        load_inference(runtime)
        if runtime.inference is None:
            print(f"warning: {runtime.inference_error}; the studies stay queued until a model is available")
            return 0
        from app.web.services.analysis_worker import AnalysisWorker

        done = AnalysisWorker(runtime).run_pending()
        print(f"analysed {done} studies with {runtime.inference.card.name} {runtime.inference.card.version}")
        return 0
    finally:
        runtime.db_engine.dispose()
