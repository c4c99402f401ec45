"""`fetalcns synth` end to end on a tiny set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main


def test_cli_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["synth", "--out", str(tmp_path), "--patients", "2", "--images-per-patient", "1-2", "--seed", "3"]
    )
    assert code == 0
    with (tmp_path / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["class"] for r in rows} == {"Anencephaly", "Encephalocele_meningocele"}
    assert all((tmp_path / r["image"]).is_file() for r in rows)
    assert "synthetic patients" in capsys.readouterr().err  # the progress bar goes to stderr


def test_cli_contact_sheet_has_one_row_per_class(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "--contact-sheet", str(sheet)]) == 0
    image = np.asarray(Image.open(sheet).convert("RGB"))  # a palette PNG, to keep the docs small
    assert image.ndim == 3 and image.shape[0] > 5 * 200


@pytest.mark.parametrize(
    "argv",
    [["synth"], ["synth", "--out", "x", "--patients", "0"]],
)
def test_cli_refuses_bad_requests_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "fetalcns synth:" in capsys.readouterr().err


def test_cli_rejects_a_malformed_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", "x", "--images-per-patient", "six"])
    assert exit_info.value.code == 2
    assert "MIN-MAX" in capsys.readouterr().err
