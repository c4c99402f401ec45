"""Gestational age from whatever a study carries: a numeric field, free text, or LMP + study date.

Ultrasound images have no standard GA attribute (GA lives in OB structured reports), so
vendors and exports put it in comments or descriptions. Implausible values are ignored.
"""

from __future__ import annotations

import re
from datetime import date

MIN_WEEKS = 4.0
MAX_WEEKS = 45.0

_WEEKS_DAYS = re.compile(r"(\d{1,2})\s*(?:w|wk|wks|weeks?)\s*\+?\s*(\d)\s*(?:d|days?)\b", re.IGNORECASE)
_PLUS_DAYS = re.compile(r"\b(\d{1,2})\s*\+\s*(\d)\b")
_GA_NUMBER = re.compile(r"\bGA\b\s*[:=]?\s*(\d{1,2}(?:[.,]\d+)?)", re.IGNORECASE)
_NUMBER_WEEKS = re.compile(r"\b(\d{1,2}(?:[.,]\d+)?)\s*(?:w|wk|wks|weeks?)\b", re.IGNORECASE)
_GESTATIONAL_AGE = re.compile(r"gestational\s+age\s*[:=]?\s*(\d{1,2}(?:[.,]\d+)?)", re.IGNORECASE)


def plausible(weeks: float | None) -> float | None:
    if weeks is None or not (MIN_WEEKS <= weeks <= MAX_WEEKS):
        return None
    return round(weeks, 2)


def parse_gestational_age(text: str | None) -> float | None:
    """Weeks as a float from texts like "GA 22w3d", "22+3", "GA: 21.5", "21.4 weeks"."""
    if not text:
        return None
    text = str(text)
    for pattern in (_WEEKS_DAYS, _PLUS_DAYS):
        match = pattern.search(text)
        if match:
            return plausible(int(match.group(1)) + int(match.group(2)) / 7.0)
    for pattern in (_GESTATIONAL_AGE, _GA_NUMBER, _NUMBER_WEEKS):
        match = pattern.search(text)
        if match:
            return plausible(float(match.group(1).replace(",", ".")))
    return None


def parse_dicom_date(value: str | None) -> date | None:
    if not value:
        return None
    digits = str(value).strip().replace(".", "").replace("-", "")
    if len(digits) < 8 or not digits[:8].isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def weeks_from_lmp(last_menstrual: str | None, study_date: str | None) -> float | None:
    """GA by dates: days since the last menstrual period over seven."""
    lmp, study = parse_dicom_date(last_menstrual), parse_dicom_date(study_date)
    if lmp is None or study is None:
        return None
    return plausible((study - lmp).days / 7.0)
