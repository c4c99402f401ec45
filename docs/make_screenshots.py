"""Regenerate the README screenshots (docs/img/*.png) from a live server and headless Chromium.

    .venv/bin/python docs/make_screenshots.py

Uses the bundled demo model (models/fetal-cns-demo) when it exists, else a
tiny untrained model (then the pages say so). One synthetic patient per class
is uploaded, so that the worklist has something to sort; the case page shown
is the most suspicious case.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT))

from web_browser_support import (  # noqa: E402
    CHROMIUM,
    DEMO_MODEL_DIR,
    chromium_page,
    live_server,
    sign_in,
)

OUT = REPO_ROOT / "docs" / "img"
CLASSES = ("Anencephaly", "Encephalocele_meningocele", "Holoprosencephaly", "normal", "Rachischisis")


def _model_dir(scratch: Path) -> Path:
    if (DEMO_MODEL_DIR / "model.json").is_file():
        return DEMO_MODEL_DIR
    from app.training.export import export_untrained_demo

    print("models/fetal-cns-demo is missing: using an untrained model (the screenshots will say so)")
    return export_untrained_demo(scratch / "untrained-model")


def _studies(scratch: Path) -> list[list[Path]]:
    from app.synth import generate_dataset

    out = scratch / "synthetic"
    generate_dataset(
        out, n_patients=len(CLASSES), seed=7, fmt="dicom", images_per_patient=(4, 5), classes=CLASSES
    )
    return [sorted(folder.glob("*.dcm")) for folder in sorted((out / "dicom").glob("*/*")) if folder.is_dir()]


def main() -> int:
    if not CHROMIUM.is_file():
        print(f"Chromium is missing at {CHROMIUM}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_dir = _model_dir(scratch)
        studies = _studies(scratch)
        with live_server(scratch / "server", model_dir) as server, chromium_page((1440, 960)) as page:
            sign_in(page, server.url, "rad")
            for files in studies:
                page.goto(server.url + "/upload")
                page.set_input_files("#files", [str(p) for p in files])
                page.get_by_role("button", name="Upload and analyse").click()
                page.wait_for_selector("[data-result-list] li[data-case-id]")
            page.goto(server.url + "/")
            pending = "tbody tr[data-status=queued], tbody tr[data-status=running]"
            page.wait_for_function(f"() => !document.querySelector('{pending}')", timeout=300_000)
            page.screenshot(path=str(OUT / "worklist.png"))
            top = page.locator("tbody tr[data-case-id] a.row-link").first.get_attribute("href")
            page.goto(server.url + top)
            page.wait_for_function("() => document.querySelector('img.heat').naturalWidth > 0")
            page.screenshot(path=str(OUT / "case-page.png"))
    print(f"wrote {OUT / 'case-page.png'} and {OUT / 'worklist.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
