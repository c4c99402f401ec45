"""Head size from gestational age, checked against Hadlock's forward regressions."""

from __future__ import annotations

import pytest

from app.synth import hadlock


@pytest.mark.parametrize("weeks", [12.0, 16.5, 20.0, 28.3, 34.0, 40.0])
def test_bpd_and_hc_invert_hadlocks_age_formulas(weeks: float) -> None:
    bpd, hc = hadlock.bpd_cm(weeks), hadlock.hc_cm(weeks)
    assert 9.54 + 1.482 * bpd + 0.1676 * bpd**2 == pytest.approx(weeks, abs=1e-6)
    assert 8.96 + 0.540 * hc + 0.0003 * hc**3 == pytest.approx(weeks, abs=1e-6)


def test_mid_pregnancy_head_matches_published_tables() -> None:
    # Hadlock's tables give BPD ≈ 4.8 cm and HC ≈ 17.5 cm at 20 weeks.
    assert hadlock.bpd_cm(20.0) == pytest.approx(4.8, abs=0.3)
    assert hadlock.hc_cm(20.0) == pytest.approx(17.5, abs=1.0)


def test_head_grows_with_a_plausible_cephalic_index() -> None:
    weeks = [12 + 2 * i for i in range(15)]
    bpds = [hadlock.bpd_cm(w) for w in weeks]
    assert bpds == sorted(bpds)
    for w in weeks:
        assert 0.65 < hadlock.bpd_cm(w) / hadlock.ofd_cm(w) < 0.86  # cephalic index BPD/OFD


@pytest.mark.parametrize("weeks", [11.9, 40.1])
def test_age_outside_range_is_rejected(weeks: float) -> None:
    with pytest.raises(ValueError, match="gestational age"):
        hadlock.bpd_cm(weeks)


@pytest.mark.parametrize("weeks", [12.0, 16.5, 20.0, 28.3, 34.0, 40.0])
def test_ac_and_fl_invert_hadlocks_age_formulas(weeks: float) -> None:
    ac, fl = hadlock.ac_cm(weeks), hadlock.fl_cm(weeks)
    assert 8.14 + 0.753 * ac + 0.0036 * ac**2 == pytest.approx(weeks, abs=1e-6)
    assert 10.35 + 2.460 * fl + 0.170 * fl**2 == pytest.approx(weeks, abs=1e-6)


def test_body_sizes_match_published_tables() -> None:
    # Hadlock's tables: AC ≈ 15 cm and FL ≈ 3.3 cm at 20 weeks; AC ≈ 35 cm and FL ≈ 7.9 cm at 40.
    assert hadlock.ac_cm(20.0) == pytest.approx(15.0, abs=1.0)
    assert hadlock.fl_cm(20.0) == pytest.approx(3.3, abs=0.3)
    assert hadlock.ac_cm(40.0) == pytest.approx(35.3, abs=1.5)
    assert hadlock.fl_cm(40.0) == pytest.approx(7.9, abs=0.3)
    weeks = [12 + 2 * i for i in range(15)]
    assert [hadlock.fl_cm(w) for w in weeks] == sorted(hadlock.fl_cm(w) for w in weeks)
    with pytest.raises(ValueError, match="gestational age"):
        hadlock.fl_cm(41.0)
