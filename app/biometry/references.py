"""Gestational-age references of the fetal CNS measurements: mean and SD → Z-score, percentile.

Every reference is INTERGROWTH-21st (international prescriptive standards from the Fetal Growth
Longitudinal Study, GA in exact weeks, values in millimetres):

* BPD (outer-to-inner), OFD, HC: Papageorghiou AT et al. International standards for fetal
  growth based on serial ultrasound measurements. Lancet 2014;384:869-79 (14-40 weeks).
* TCD: Rodriguez-Sibaja MJ et al. Fetal cerebellar growth and Sylvian fissure maturation:
  international standards from the INTERGROWTH-21st Project. Ultrasound Obstet Gynecol
  2021;57:614-23 (14-40 weeks).
* Atrium of the posterior horn, cisterna magna: Napolitano R et al. International standards
  for fetal brain structures based on serial ultrasound measurements from the INTERGROWTH-21st
  Project. Ultrasound Obstet Gynecol 2020;56:359-70 (15-36 weeks). The cisterna magna's model is
  normal on the log scale.

Besides the Z-score, two fixed clinical limits of the ISUOG guideline (Malinger G et al.,
Ultrasound Obstet Gynecol 2020;56:476-84) are applied: an atrium of 10 mm or more is
ventriculomegaly, and a cisterna magna outside 2-10 mm is abnormal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    name: str  # the measurement's short name (BPD, OFD, HC, ATRIUM, TCD, CM)
    title: str
    kind: str  # "distance" or "ellipse": how it is drawn
    citation: str
    min_weeks: float
    max_weeks: float
    mean: Callable[[float], float]  # on the log scale when log_normal
    sd: Callable[[float], float]
    log_normal: bool = False
    normal_range_mm: tuple[float | None, float | None] | None = None  # fixed clinical limits
    upper_limit_inclusive: bool = True


_LANCET = "INTERGROWTH-21st, Papageorghiou et al., Lancet 2014"
_TCD = "INTERGROWTH-21st, Rodriguez-Sibaja et al., Ultrasound Obstet Gynecol 2021"
_BRAIN = "INTERGROWTH-21st, Napolitano et al., Ultrasound Obstet Gynecol 2020"
_ISUOG = "ISUOG 2020 (Malinger et al.)"

REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in (
        Reference(
            "BPD",
            "Biparietal diameter",
            "distance",
            _LANCET,
            14,
            40,
            lambda ga: 5.60878 + 0.158369 * ga**2 - 0.00256379 * ga**3,
            lambda ga: math.exp(
                0.101242
                + 0.00150557 * ga**3
                - 0.000771535 * ga**3 * math.log(ga)
                + 0.0000999638 * ga**3 * math.log(ga) ** 2
            ),
        ),
        Reference(
            "OFD",
            "Occipito-frontal diameter",
            "distance",
            _LANCET,
            14,
            40,
            lambda ga: -12.4097 + 0.626342 * ga**2 - 0.148075 * ga**2 * math.log(ga),
            lambda ga: math.exp(
                -0.880034
                + 0.0631165 * ga**2
                - 0.0317136 * ga**2 * math.log(ga)
                + 0.00408302 * ga**2 * math.log(ga) ** 2
            ),
        ),
        Reference(
            "HC",
            "Head circumference",
            "ellipse",
            _LANCET,
            14,
            40,
            lambda ga: -28.2849 + 1.69267 * ga**2 - 0.397485 * ga**2 * math.log(ga),
            lambda ga: (
                1.98735
                + 0.0136772 * ga**3
                - 0.00726264 * ga**3 * math.log(ga)
                + 0.000976253 * ga**3 * math.log(ga) ** 2
            ),
        ),
        Reference(
            "ATRIUM",
            "Lateral ventricle atrium",
            "distance",
            f"{_BRAIN}; < 10 mm: {_ISUOG}",
            15,
            36,
            lambda ga: 6.396214 + 0.00006205 * ga**3,
            lambda ga: 1.204454,
            normal_range_mm=(None, 10.0),
            upper_limit_inclusive=False,
        ),
        Reference(
            "TCD",
            "Transcerebellar diameter",
            "distance",
            _TCD,
            14,
            40,
            lambda ga: -13.10907 + 20.8941 * (ga / 10) ** 0.5 + 0.5035914 * (ga / 10) ** 3,
            lambda ga: 0.4719837 + 0.0500382 * (ga / 10) ** 3,
        ),
        Reference(
            "CM",
            "Cisterna magna",
            "distance",
            f"{_BRAIN}; 2-10 mm: {_ISUOG}",
            15,
            36,
            lambda ga: 2.098095 - 239.0659 * ga**-2 - 0.0000001547 * ga**3,
            lambda ga: 0.2297936 + 8.1872 * ga**-2,
            log_normal=True,
            normal_range_mm=(2.0, 10.0),
        ),
    )
}


@dataclass(frozen=True)
class Assessment:
    """A measurement against its reference at one gestational age."""

    z_score: float | None  # None: no gestational age, or outside the reference's range
    percentile: float | None  # 0-100
    expected_mm: float | None  # the reference's median at this age
    within_limits: bool | None  # the fixed clinical limits; None when the measurement has none
    note: str  # why there is no Z-score, or which limits were applied


def normal_cdf(z: float) -> float:
    """Φ(z), through erfc so that the tails keep their precision."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def z_score(name: str, value_mm: float, weeks: float) -> float:
    """(value − mean(GA)) / SD(GA), on the log scale for a log-normal reference.

    Raises ValueError for an unknown name, a value ≤ 0, or an age outside the reference's range.
    """
    reference = REFERENCES[name]
    if not reference.min_weeks <= weeks <= reference.max_weeks:
        raise ValueError(
            f"{reference.title}: the reference covers {reference.min_weeks:g}-{reference.max_weeks:g} weeks"
        )
    if not value_mm > 0:
        raise ValueError("a measurement must be above 0 mm")
    value = math.log(value_mm) if reference.log_normal else value_mm
    return (value - reference.mean(weeks)) / reference.sd(weeks)


def median_mm(name: str, weeks: float) -> float:
    reference = REFERENCES[name]
    centre = reference.mean(weeks)
    return math.exp(centre) if reference.log_normal else centre


def assess(name: str, value_mm: float, weeks: float | None) -> Assessment:
    """Z-score and percentile when the age is known and in range, and the fixed limits if any."""
    reference = REFERENCES[name]
    within: bool | None = None
    notes: list[str] = []
    if reference.normal_range_mm is not None:
        low, high = reference.normal_range_mm
        below_high = high is None or (
            value_mm <= high if reference.upper_limit_inclusive else value_mm < high
        )
        within = (low is None or value_mm >= low) and below_high
        limits = f"normal {low:g}-{high:g} mm" if low is not None else f"normal < {high:g} mm"
        notes.append(limits)
    if weeks is None:
        notes.insert(0, "no gestational age: no Z-score")
        return Assessment(None, None, None, within, "; ".join(notes))
    if not reference.min_weeks <= weeks <= reference.max_weeks:
        notes.insert(
            0,
            f"{weeks:.1f} weeks lies outside the reference's "
            f"{reference.min_weeks:g}-{reference.max_weeks:g} weeks",
        )
        return Assessment(None, None, None, within, "; ".join(notes))
    z = z_score(name, value_mm, weeks)
    return Assessment(z, 100.0 * normal_cdf(z), median_mm(name, weeks), within, "; ".join(notes))
