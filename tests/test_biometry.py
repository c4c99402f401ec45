"""Biometry's pure parts against independent references: scipy.stats for Z-scores and
percentiles (normal and log-normal), scipy.special.ellipe for ellipse circumferences, and the
synthetic generator's Hadlock curves for the size of the INTERGROWTH-21st medians."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from app.biometry.geometry import distance_mm, ellipse_axes_px, ellipse_mm
from app.biometry.references import REFERENCES, assess, median_mm, normal_cdf, z_score
from app.synth import hadlock


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("weeks", [16.0, 20.5, 24.0, 30.0])
@pytest.mark.parametrize("quantile", [0.01, 0.1, 0.5, 0.9, 0.995])
def test_z_score_and_percentile_agree_with_scipy(name: str, weeks: float, quantile: float) -> None:
    reference = REFERENCES[name]
    mean, sd = reference.mean(weeks), reference.sd(weeks)
    if reference.log_normal:
        distribution = stats.lognorm(s=sd, scale=math.exp(mean))
    else:
        distribution = stats.norm(loc=mean, scale=sd)
    value = float(distribution.ppf(quantile))
    result = assess(name, value, weeks)
    assert result.percentile == pytest.approx(100 * distribution.cdf(value), abs=1e-9)
    assert result.percentile == pytest.approx(100 * quantile, abs=1e-7)
    assert result.z_score == pytest.approx(stats.norm.ppf(quantile), abs=1e-7)
    assert result.expected_mm == pytest.approx(float(distribution.median()), rel=1e-12)


def test_normal_cdf_keeps_its_tails() -> None:
    for z in (-12.0, -8.0, -3.0, 0.0, 2.5, 7.0):
        assert normal_cdf(z) == pytest.approx(stats.norm.cdf(z), rel=1e-12)


@pytest.mark.parametrize("weeks", [16.0, 20.0, 24.0, 28.0, 32.0, 36.0])
def test_intergrowth_head_medians_are_near_hadlock(weeks: float) -> None:
    # Two independent references (Hadlock 1984, INTERGROWTH-21st 2014): HC agrees within 2 %;
    # BPD runs 3-11 % above Hadlock's (largest at 16 weeks, where Hadlock's GA-from-BPD
    # regression is inverted far from its data) -- differences of populations, not a slip.
    assert median_mm("HC", weeks) == pytest.approx(10 * hadlock.hc_cm(weeks), rel=0.03)
    assert median_mm("BPD", weeks) == pytest.approx(10 * hadlock.bpd_cm(weeks), rel=0.12)
    assert median_mm("BPD", weeks) > 10 * hadlock.bpd_cm(weeks)


def test_published_rules_of_thumb() -> None:
    # TCD in mm is about the gestational age in weeks in mid-pregnancy; the atrium's median is
    # 6-8 mm and the cisterna magna's 4-7 mm (Napolitano 2020, Fig. 2).
    for weeks in (18.0, 20.0, 22.0):
        assert median_mm("TCD", weeks) == pytest.approx(weeks, abs=1.5)
    assert 6.0 < median_mm("ATRIUM", 22.0) < 8.0
    assert 4.0 < median_mm("CM", 24.0) < 7.0


def test_fixed_limits_and_missing_or_out_of_range_ages() -> None:
    assert assess("ATRIUM", 9.9, 22.0).within_limits is True
    assert assess("ATRIUM", 10.0, 22.0).within_limits is False  # ventriculomegaly: 10 mm or more
    assert assess("CM", 10.0, 22.0).within_limits is True
    assert assess("CM", 1.5, 22.0).within_limits is False
    assert assess("BPD", 50.0, 22.0).within_limits is None
    no_age = assess("HC", 180.0, None)
    assert no_age.z_score is None and no_age.percentile is None and "no gestational age" in no_age.note
    early = assess("ATRIUM", 6.0, 13.0)
    assert early.z_score is None and "outside the reference" in early.note
    with pytest.raises(ValueError):
        z_score("BPD", 0.0, 20.0)
    with pytest.raises(ValueError):
        z_score("TCD", 20.0, 41.0)


def test_distance_uses_each_axis_spacing() -> None:
    assert distance_mm((0, 0), (3, 4), 1.0, 1.0) == pytest.approx(5.0)
    assert distance_mm((10, 10), (40, 50), 0.2, 0.1) == pytest.approx(math.hypot(30 * 0.2, 40 * 0.1))


def _ellipse_reference(a: float, b: float) -> float:
    """4·a·E(e²), the complete elliptic integral of the second kind (scipy.special.ellipe)."""
    a, b = max(a, b), min(a, b)
    return 4 * a * float(special.ellipe(1 - (b / a) ** 2))


@pytest.mark.parametrize(("a", "b", "angle"), [(50, 30, 0.0), (80, 79, 0.7), (40, 10, 2.1), (25, 25, 1.0)])
def test_ellipse_circumference_isotropic(a: float, b: float, angle: float) -> None:
    centre = np.array([300.0, 200.0])
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    p1, p2 = centre - a * direction, centre + a * direction
    p3 = centre + b * normal + 7 * direction  # any point at distance b from the axis
    circumference, major, minor = ellipse_mm([tuple(p1), tuple(p2), tuple(p3)], 0.15, 0.15)
    assert circumference == pytest.approx(0.15 * _ellipse_reference(a, b), rel=1e-10)
    assert (major, minor) == pytest.approx((0.3 * max(a, b), 0.3 * min(a, b)), rel=1e-10)


def test_ellipse_circumference_with_anisotropic_spacing() -> None:
    points = [(100.0, 120.0), (260.0, 180.0), (150.0, 60.0)]
    sx, sy = 0.2, 0.12
    _, u, v = ellipse_axes_px(points)
    # In millimetres the ellipse's principal semi-axes are the singular values of [U V].
    semi = np.linalg.svd(np.column_stack([u * [sx, sy], v * [sx, sy]]), compute_uv=False)
    circumference, major, minor = ellipse_mm(points, sx, sy)
    assert circumference == pytest.approx(_ellipse_reference(*semi), rel=1e-10)
    assert (major, minor) == pytest.approx((2 * semi[0], 2 * semi[1]), rel=1e-12)


def test_degenerate_ellipses_are_refused() -> None:
    with pytest.raises(ValueError):
        ellipse_mm([(1, 1), (1, 1), (5, 5)], 0.1, 0.1)
    with pytest.raises(ValueError):
        ellipse_mm([(0, 0), (10, 0), (5, 0)], 0.1, 0.1)
    with pytest.raises(ValueError):
        ellipse_mm([(0, 0), (10, 0)], 0.1, 0.1)
