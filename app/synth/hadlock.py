"""Fetal size from gestational age (Hadlock et al., Radiology 1984;152:497-501).

Hadlock's regressions predict gestational age from a measurement; the phantom
needs the inverse, so each formula is solved for the measurement. Head
(BPD, HC) for the CNS planes; abdominal circumference and femur length, from
the same paper, for the non-CNS planes (abdomen, femur, four-chamber heart).
"""

from __future__ import annotations

import math

MIN_WEEKS = 12.0
MAX_WEEKS = 40.0


def _check_weeks(weeks: float) -> None:
    if not MIN_WEEKS <= weeks <= MAX_WEEKS:
        raise ValueError(f"gestational age {weeks} weeks lies outside {MIN_WEEKS:g}-{MAX_WEEKS:g} weeks")


def bpd_cm(weeks: float) -> float:
    """Biparietal diameter: inverse of GA = 9.54 + 1.482·BPD + 0.1676·BPD² (cm)."""
    _check_weeks(weeks)
    a, b, c = 0.1676, 1.482, 9.54 - weeks
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def _solve_quadratic(a: float, b: float, c0: float, weeks: float) -> float:
    """Positive root of GA = c0 + b·x + a·x² for x."""
    c = c0 - weeks
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def ac_cm(weeks: float) -> float:
    """Abdominal circumference: inverse of GA = 8.14 + 0.753·AC + 0.0036·AC² (cm)."""
    _check_weeks(weeks)
    return _solve_quadratic(0.0036, 0.753, 8.14, weeks)


def fl_cm(weeks: float) -> float:
    """Femur length (diaphysis): inverse of GA = 10.35 + 2.460·FL + 0.170·FL² (cm)."""
    _check_weeks(weeks)
    return _solve_quadratic(0.170, 2.460, 10.35, weeks)


def hc_cm(weeks: float) -> float:
    """Head circumference: inverse of GA = 8.96 + 0.540·HC + 0.0003·HC³ (cm), by bisection."""
    _check_weeks(weeks)
    low, high = 0.0, 60.0
    for _ in range(60):
        mid = (low + high) / 2
        if 8.96 + 0.540 * mid + 0.0003 * mid**3 < weeks:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def ofd_cm(weeks: float) -> float:
    """Occipito-frontal diameter from Hadlock's HC = 1.57·(BPD + OFD)."""
    return hc_cm(weeks) / 1.57 - bpd_cm(weeks)
