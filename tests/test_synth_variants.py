"""Variation within each anomaly: every variant is generated, drawn, and recorded."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from synth_support import render

from app.synth import anatomy as dx
from app.synth import generate_dataset
from app.synth.anatomy import sample_anatomy
from app.synth.geometry import sector_maps
from app.synth.planes import CNS_PLANES, visible_planes
from app.synth.scene import acquire, plan_view

N = 600


def _sample(diagnosis: str, n: int = N) -> list[dx.PatientAnatomy]:
    return [sample_anatomy(diagnosis, np.random.default_rng([7, i])) for i in range(n)]


def test_every_variant_is_generated() -> None:
    hpe = _sample(dx.HOLOPROSENCEPHALY)
    assert {a.subtype for a in hpe} == set(dx.HPE_SUBTYPES)
    cele = _sample(dx.ENCEPHALOCELE)
    assert {a.subtype for a in cele} == set(dx.ENCEPHALOCELE_SITES)
    assert {a.details for a in cele} == {"cystic", "brain"}
    sizes = [a.sac_size for a in cele]
    assert min(sizes) < 0.3 and max(sizes) > 0.6, "encephaloceles range from small to large"
    anen = _sample(dx.ANENCEPHALY)
    assert {a.subtype for a in anen} == set(dx.ANENCEPHALY_FORMS)
    masses = {a.subtype: [x.vault_remnant for x in anen if x.subtype == a.subtype] for a in anen}
    assert max(masses["acrania"]) < min(masses["exencephaly"]), "exencephaly carries a larger mass"
    rach = _sample(dx.RACHISCHISIS)
    assert {a.subtype for a in rach} == set(dx.SPINAL_LEVELS)
    extents = [a.spine_defect_half for a in rach]
    assert max(extents) > 1.8 * min(extents)
    assert {a.banana for a in rach} == {True, False}
    assert {a.ventriculomegaly for a in rach} == {True, False}
    assert all(a.variant == "" for a in _sample(dx.NORMAL, 20))


def test_lemon_sign_fades_after_24_weeks() -> None:
    rach = _sample(dx.RACHISCHISIS, 2000)
    early = [a for a in rach if a.gestational_age_weeks < 22]
    late = [a for a in rach if a.gestational_age_weeks > 26]
    early_rate = np.mean([a.lemon for a in early])
    late_rate = np.mean([a.lemon for a in late])
    assert early_rate > 0.8 and late_rate < 0.25, (early_rate, late_rate)
    early_depth = np.mean([a.lemon_depth for a in early if a.lemon])
    late_depth = np.mean([a.lemon_depth for a in late if a.lemon])
    assert late_depth < early_depth, "where it persists, the late lemon sign is shallower"
    assert dx.lemon_probability(20.0) > 0.9 > 0.1 > dx.lemon_probability(30.0)


CASES = (
    [(dx.HOLOPROSENCEPHALY, "subtype", s) for s in dx.HPE_SUBTYPES]
    + [(dx.ENCEPHALOCELE, "subtype", s) for s in dx.ENCEPHALOCELE_SITES]
    + [(dx.ANENCEPHALY, "subtype", s) for s in dx.ANENCEPHALY_FORMS]
    + [(dx.RACHISCHISIS, "subtype", s) for s in dx.SPINAL_LEVELS]
)


@pytest.mark.parametrize(("diagnosis", "trait", "value"), CASES)
def test_each_variant_is_drawn_with_a_mask_where_visible_and_none_elsewhere(
    diagnosis: str, trait: str, value: str
) -> None:
    for plane in CNS_PLANES:
        try:
            image = render(diagnosis, plane, seed=3, **{trait: value})
        except AssertionError:
            continue  # no such patient shows the lesion here: checked below with an invisible plane
        maps = sector_maps(image.sector)
        fraction = (image.mask > 0).sum() / maps.mask.sum()
        assert 0.002 < fraction < 0.25, (value, plane, fraction)
    # A plane that misses the lesion gives an all-zero mask, though the patient keeps the label.
    anatomy = next(a for a in _sample(diagnosis, 200) if getattr(a, trait) == value)
    hidden = [p for p in CNS_PLANES if p not in visible_planes(anatomy)]
    if hidden:
        rng = np.random.default_rng(5)
        image = acquire(plan_view(hidden[0], anatomy, rng), rng)
        assert not image.mask.any()


def test_manifest_records_the_variant(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 10, seed=8, images_per_patient=(1, 1))
    with (tmp_path / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["class"] == dx.NORMAL:
            assert row["variant"] == ""
        else:
            assert row["variant"].split("-")[0] in (
                *dx.HPE_SUBTYPES,
                *dx.ENCEPHALOCELE_SITES,
                *dx.ANENCEPHALY_FORMS,
                *dx.SPINAL_LEVELS,
            )
