"""Per-patient anatomy: gestational age, ossification and the lesion's fixed traits.

A patient's lesion keeps its size, level and content across all of their images;
only the probe position changes from image to image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.synth import hadlock

ANENCEPHALY = "Anencephaly"
ENCEPHALOCELE = "Encephalocele_meningocele"
HOLOPROSENCEPHALY = "Holoprosencephaly"
NORMAL = "normal"
RACHISCHISIS = "Rachischisis"


@dataclass(frozen=True)
class PatientAnatomy:
    diagnosis: str
    gestational_age_weeks: float
    bpd_mm: float
    ofd_mm: float
    ossification: float  # 0 (12 weeks, faint) … 1 (term, bright, strong shadow)
    lemon_depth: float = 0.0  # Rachischisis: inward dent of the frontal bones (fraction of OFD/2)
    defect_angle: float = np.pi  # Encephalocele: defect centre on the calvarium (0 frontal, π occipital)
    defect_half_width: float = 0.0  # radians
    sac_size: float = 0.0  # sac radius as a fraction of BPD/2 (head) or of spine length (spine)
    sac_cystic: bool = True
    monoventricle: float = 0.0  # HPE: size of the single ventricle (fraction of the head)
    vault_remnant: float = 0.0  # Anencephaly: size of the disorganised tissue (fraction of the head)
    spine_defect_at: float = 0.0  # Rachischisis: defect centre along the spine (0 neck … 1 sacrum)
    spine_defect_half: float = 0.0  # fraction of spine length

    @property
    def growth(self) -> float:
        """Individual size relative to Hadlock's mean, taken from the BPD: a big fetus is big all over."""
        return self.bpd_mm / (10 * hadlock.bpd_cm(self.gestational_age_weeks))

    @property
    def ac_mm(self) -> float:
        """Abdominal circumference (Hadlock 1984) with the patient's individual growth."""
        return 10 * hadlock.ac_cm(self.gestational_age_weeks) * self.growth

    @property
    def fl_mm(self) -> float:
        """Femur (diaphysis) length (Hadlock 1984) with the patient's individual growth."""
        return 10 * hadlock.fl_cm(self.gestational_age_weeks) * self.growth

    @property
    def bone_echo(self) -> float:
        return 0.45 + 1.1 * self.ossification

    @property
    def bone_absorption(self) -> float:
        return 0.02 + 0.08 * self.ossification


def sample_anatomy(diagnosis: str, rng: np.random.Generator) -> PatientAnatomy:
    weeks = round(float(rng.uniform(hadlock.MIN_WEEKS, hadlock.MAX_WEEKS)), 1)
    common = {
        "diagnosis": diagnosis,
        "gestational_age_weeks": weeks,
        "bpd_mm": 10 * hadlock.bpd_cm(weeks) * float(rng.normal(1.0, 0.03)),
        "ofd_mm": 10 * hadlock.ofd_cm(weeks) * float(rng.normal(1.0, 0.03)),
        "ossification": float(np.clip((weeks - 11.0) / 15.0, 0.0, 1.0)),
    }
    if diagnosis == RACHISCHISIS:
        return PatientAnatomy(
            **common,
            lemon_depth=float(rng.uniform(0.12, 0.19)),
            spine_defect_at=float(rng.uniform(0.62, 0.85)),
            spine_defect_half=float(rng.uniform(0.07, 0.11)),
            sac_size=float(rng.uniform(0.9, 1.4)),
        )
    if diagnosis == ENCEPHALOCELE:
        return PatientAnatomy(
            **common,
            defect_angle=float(np.pi + rng.uniform(-0.6, 0.6)),
            defect_half_width=float(rng.uniform(0.2, 0.35)),
            sac_size=float(rng.uniform(0.35, 0.6)),
            sac_cystic=bool(rng.random() < 0.5),
        )
    if diagnosis == HOLOPROSENCEPHALY:
        return PatientAnatomy(**common, monoventricle=float(rng.uniform(0.7, 1.0)))
    if diagnosis == ANENCEPHALY:
        return PatientAnatomy(**common, vault_remnant=float(rng.uniform(0.45, 0.7)))
    if diagnosis == NORMAL:
        return PatientAnatomy(**common)
    raise ValueError(f"unknown diagnosis {diagnosis!r}")
