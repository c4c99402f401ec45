"""The model card's input_policy.lossy: exclude leaves lossily compressed images out of the
verdict with their reason; warn (the default) uses them; a misspelt policy is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from dicom_net_support import need_tool
from ingest_support import make_us_dataset, phantom, write_dataset

from app.inference import InferenceEngine
from app.inference.analysis import analyse_study, exclusion_key
from app.ingest import IngestOptions, ingest_paths
from app.modelcard import ModelCardError, load_model_card


def _model_with_policy(tiny_model_dir: Path, tmp_path: Path, policy: str | None) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    card = json.loads((target / "model.json").read_text())
    if policy is not None:
        card["input_policy"] = {"lossy": policy}
    (target / "model.json").write_text(json.dumps(card))
    return target


def _images(tmp_path: Path) -> list:
    """Three ultrasound images of one study, the last compressed to JPEG baseline by dcmtk."""
    study_uid = "1.2.3.4.5"
    paths = [
        write_dataset(make_us_dataset(phantom(seed=i), study_uid=study_uid), tmp_path / f"us{i}.dcm")
        for i in range(3)
    ]
    lossy = tmp_path / "lossy.dcm"
    subprocess.run([need_tool("dcmcjpeg"), "+eb", str(paths[2]), str(lossy)], check=True)  # baseline: lossy
    paths[2].unlink()
    result = ingest_paths([*paths[:2], lossy], IngestOptions())
    images = [image for study in result.studies for image in study.images]
    assert [bool(i.metadata["lossy_compression"]) for i in images].count(True) == 1
    return images


def test_exclude_leaves_lossy_images_out(tiny_model_dir: Path, tmp_path: Path) -> None:
    engine = InferenceEngine(_model_with_policy(tiny_model_dir, tmp_path, "exclude"), device="cpu", threads=1)
    images = _images(tmp_path)
    analysis = analyse_study(engine, images)
    keys = [exclusion_key(p) for p in analysis.predictions]
    lossy_at = next(i for i, image in enumerate(images) if image.metadata["lossy_compression"])
    assert keys[lossy_at] == "lossy"
    assert "JPEG Baseline" in analysis.predictions[lossy_at].exclusion_reason
    assert analysis.verdict.excluded_by_reason.get("lossy") == 1


def test_warn_uses_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    engine = InferenceEngine(_model_with_policy(tiny_model_dir, tmp_path, None), device="cpu", threads=1)
    assert engine.card.lossy_policy == "warn"
    analysis = analyse_study(engine, _images(tmp_path))
    assert "lossy" not in analysis.verdict.excluded_by_reason
    assert all(p.lossy_excluded is None for p in analysis.predictions)


def test_a_misspelt_policy_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match=r"input_policy\.lossy"):
        load_model_card(_model_with_policy(tiny_model_dir, tmp_path, "drop"))


def test_the_viewer_flags_lossy_images_unless_the_card_accepts_them() -> None:
    from app.web.pages.views import image_flags
    from app.web.schemas import ImageOut

    image = ImageOut(
        id=1,
        position=0,
        filename="a.dcm",
        frame=None,
        width=10,
        height=10,
        image_url="/i",
        thumbnail_url="/t",
        label="normal",
        probabilities={"normal": 1.0},
        ood=False,
        ood_score=0.0,
        quality_issue=None,
        used_in_verdict=True,
        heatmap_url=None,
        error=None,
        lossy_compression="lossy compression: JPEG Baseline",
    )
    assert image_flags(image, "warn") == ["lossy compression: JPEG Baseline"]
    assert image_flags(image, "accept") == []
