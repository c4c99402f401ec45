"""The reference standard as a CSV: a header row with ``label`` and ``study_uid`` or ``study_id``."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ReferenceRow:
    key: Literal["study_uid", "study_id"]
    value: str
    label: str
    line: int


def parse_reference_csv(text: str) -> list[ReferenceRow]:
    """Rows of the CSV; ValueError naming the line for anything unreadable. Blank lines are
    skipped; a study named twice is refused (which label would be the reference?)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = {(name or "").strip().lower() for name in reader.fieldnames or []}
    if "label" not in fields or not fields & {"study_uid", "study_id"}:
        raise ValueError("the CSV needs a header with 'label' and 'study_uid' or 'study_id'")
    rows: list[ReferenceRow] = []
    seen: set[tuple[str, str]] = set()
    for line, raw in enumerate(reader, start=2):
        record = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(record.values()):
            continue
        label = record.get("label", "")
        key: Literal["study_uid", "study_id"] = "study_uid" if record.get("study_uid") else "study_id"
        value = record.get(key, "")
        if not label or not value:
            raise ValueError(f"line {line}: a label and a study_uid or study_id are needed")
        if key == "study_id" and not value.isdigit():
            raise ValueError(f"line {line}: study_id must be a number")
        if (key, value) in seen:
            raise ValueError(f"line {line}: {key} {value} is named twice")
        seen.add((key, value))
        rows.append(ReferenceRow(key, value, label, line))
    return rows
