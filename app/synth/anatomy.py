"""Per-patient anatomy: gestational age, ossification and the lesion's fixed traits.

A patient's lesion keeps its size, level and content across all of their images;
only the probe position changes from image to image. Each anomaly comes in
variants (`subtype`, recorded in the manifest's `variant` column) so that a
class is not one fixed picture:

- holoprosencephaly: alobar, semilobar, lobar;
- encephalocele: occipital, parietal or frontal, cystic or containing brain, a range of sizes;
- anencephaly: acrania (flat remnant) or exencephaly (a bulging exencephalic mass);
- rachischisis: lumbosacral, thoracolumbar or thoracic, of varying extent; the lemon
  sign fades after about 24 weeks while the banana sign and ventriculomegaly vary.
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

# Lateral ventricle scale at which Chiari II ventriculomegaly is marked (atrium ≥ 10 mm).
VENTRICULOMEGALY = 1.25
# Gestational age around which the lemon sign fades: the frontal bones stiffen and it is
# seen in nearly all open spina bifida before 24 weeks but in a minority after.
LEMON_FADE_WEEKS = 24.0

HPE_SUBTYPES = ("alobar", "semilobar", "lobar")
ENCEPHALOCELE_SITES = ("occipital", "parietal", "frontal")
ANENCEPHALY_FORMS = ("acrania", "exencephaly")
SPINAL_LEVELS = ("lumbosacral", "thoracolumbar", "thoracic")


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
    subtype: str = ""  # the variant: lobarity, defect site, anencephaly form or spinal level
    details: str = ""  # secondary traits recorded with the variant (e.g. sac content)
    coronal_defect_angle: float = 0.0  # Encephalocele in coronal section (0 vertex, ±π/2 lateral)
    ventricle_scale: float = 1.0  # Rachischisis: lateral ventricle width (≥ VENTRICULOMEGALY is a finding)
    banana_strength: float = 0.0  # Rachischisis: 0 = normal cerebellum, else the crescent's prominence

    @property
    def variant(self) -> str:
        return "-".join(part for part in (self.subtype, self.details) if part)

    @property
    def lemon(self) -> bool:
        return self.lemon_depth > 0.0

    @property
    def ventriculomegaly(self) -> bool:
        return self.ventricle_scale >= VENTRICULOMEGALY

    @property
    def banana(self) -> bool:
        return self.banana_strength > 0.0

    def as_normal(self) -> PatientAnatomy:
        """The same fetus drawn without its lesion: for planes in which the lesion does not show."""
        return PatientAnatomy(
            diagnosis=NORMAL,
            gestational_age_weeks=self.gestational_age_weeks,
            bpd_mm=self.bpd_mm,
            ofd_mm=self.ofd_mm,
            ossification=self.ossification,
        )

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


def _pick(names: tuple[str, ...], weights: tuple[float, ...], rng: np.random.Generator) -> str:
    p = np.asarray(weights, float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def lemon_probability(weeks: float) -> float:
    """Chance that an open spina bifida shows the lemon sign at `weeks`: high early, fading after 24."""
    return 0.05 + 0.9 / (1.0 + np.exp((weeks - LEMON_FADE_WEEKS) / 1.2))


def _rachischisis(weeks: float, rng: np.random.Generator) -> dict:
    level = _pick(SPINAL_LEVELS, (0.6, 0.3, 0.1), rng)  # most open defects are lumbosacral
    centre = {"lumbosacral": (0.74, 0.86), "thoracolumbar": (0.58, 0.72), "thoracic": (0.42, 0.55)}[level]
    fade = 1.0 / (1.0 + np.exp((weeks - LEMON_FADE_WEEKS) / 1.2))
    lemon = rng.random() < lemon_probability(weeks)
    return {
        "subtype": level,
        "spine_defect_at": float(rng.uniform(*centre)),
        "spine_defect_half": float(rng.uniform(0.05, 0.13)),
        "sac_size": float(rng.uniform(0.6, 1.5)),
        # Where it persists after 24 weeks the dent is also shallower.
        "lemon_depth": float(rng.uniform(0.12, 0.19) * (0.55 + 0.45 * fade)) if lemon else 0.0,
        "banana_strength": float(rng.uniform(0.6, 1.2)) if rng.random() < 0.9 else 0.0,
        "ventricle_scale": float(rng.uniform(1.0, 1.9)),
    }


def _encephalocele(rng: np.random.Generator) -> dict:
    site = _pick(ENCEPHALOCELE_SITES, (0.7, 0.15, 0.15), rng)  # occipital ones dominate in Europe
    side = 1.0 if rng.random() < 0.5 else -1.0
    if site == "occipital":
        angle, coronal = np.pi + rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3)
    elif site == "parietal":
        angle, coronal = side * (np.pi / 2 + rng.uniform(0.1, 0.6)), side * rng.uniform(0.5, 1.0)
    else:
        angle, coronal = rng.uniform(-0.3, 0.3), 0.0
    cystic = bool(rng.random() < 0.5)
    return {
        "subtype": site,
        "details": "cystic" if cystic else "brain",
        "defect_angle": float(angle),
        "coronal_defect_angle": float(coronal),
        "defect_half_width": float(rng.uniform(0.15, 0.35)),
        "sac_size": float(rng.uniform(0.22, 0.7)),
        "sac_cystic": cystic,
    }


def _holoprosencephaly(rng: np.random.Generator) -> dict:
    form = _pick(HPE_SUBTYPES, (0.4, 0.35, 0.25), rng)
    size = {"alobar": (0.75, 1.0), "semilobar": (0.55, 0.75), "lobar": (0.8, 1.2)}[form]
    return {"subtype": form, "monoventricle": float(rng.uniform(*size))}


def _anencephaly(rng: np.random.Generator) -> dict:
    form = _pick(ANENCEPHALY_FORMS, (0.5, 0.5), rng)
    # Acrania leaves a thin flat remnant; exencephaly a bulging mass of exposed brain.
    size = (0.3, 0.45) if form == "acrania" else (0.6, 0.85)
    return {"subtype": form, "vault_remnant": float(rng.uniform(*size))}


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
        return PatientAnatomy(**common, **_rachischisis(weeks, rng))
    if diagnosis == ENCEPHALOCELE:
        return PatientAnatomy(**common, **_encephalocele(rng))
    if diagnosis == HOLOPROSENCEPHALY:
        return PatientAnatomy(**common, **_holoprosencephaly(rng))
    if diagnosis == ANENCEPHALY:
        return PatientAnatomy(**common, **_anencephaly(rng))
    if diagnosis == NORMAL:
        return PatientAnatomy(**common)
    raise ValueError(f"unknown diagnosis {diagnosis!r}")
