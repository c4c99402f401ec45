"""Which planes a patient is imaged in, and in which of them the lesion shows.

Every class draws its planes from the SAME distribution (`PLANE_WEIGHTS`): a
real CNS examination images the standard planes whatever the diagnosis turns
out to be, and a benchmark whose plane mix differs by class could be solved by
counting planes. The lesion therefore shows only in the planes where it is
anatomically visible (`visible_planes`); the patient's label still applies to
all of their images, as in the paper's per-patient folders, and an image where
the lesion is not visible gets an empty mask.
"""

from __future__ import annotations

import numpy as np

from app.synth import anatomy as dx
from app.synth.anatomy import PatientAnatomy
from app.synth.head import CORONAL, TRANSCEREBELLAR, TRANSTHALAMIC, TRANSVENTRICULAR
from app.synth.spine import SAGITTAL_SPINE

HEAD_PLANES = (TRANSVENTRICULAR, TRANSTHALAMIC, TRANSCEREBELLAR, CORONAL)
CNS_PLANES = (*HEAD_PLANES, SAGITTAL_SPINE)

# One distribution for every class; the three axial planes are the ISUOG basic examination,
# coronal and sagittal spine views are added in a neurosonogram.
PLANE_WEIGHTS: dict[str, float] = {
    TRANSVENTRICULAR: 1.0,
    TRANSTHALAMIC: 1.0,
    TRANSCEREBELLAR: 1.0,
    CORONAL: 1.0,
    SAGITTAL_SPINE: 1.0,
}

# Encephalocele: the axial and coronal sections that pass through the defect.
_ENCEPHALOCELE_PLANES = {
    "occipital": frozenset({TRANSCEREBELLAR, TRANSTHALAMIC, CORONAL}),  # low posterior: the cerebellar level
    "parietal": frozenset({TRANSVENTRICULAR, CORONAL}),  # high and lateral: above the thalami
    "frontal": frozenset({TRANSVENTRICULAR, TRANSTHALAMIC}),  # anterior: axial planes through the forehead
}
# Holoprosencephaly: the undivided forebrain shows at the ventricles, thalami and in coronal
# section; the posterior fossa (transcerebellar plane) is normal, and lobar HPE is subtle
# (fused frontal horns, no cavum septi pellucidi) so only the ventricular and coronal views show it.
_HPE_PLANES = {
    "alobar": frozenset({TRANSVENTRICULAR, TRANSTHALAMIC, CORONAL}),
    "semilobar": frozenset({TRANSVENTRICULAR, TRANSTHALAMIC, CORONAL}),
    "lobar": frozenset({TRANSVENTRICULAR, CORONAL}),
}


def visible_planes(anatomy: PatientAnatomy) -> frozenset[str]:
    """The CNS planes in which this patient's lesion is visible (empty for a normal fetus)."""
    diagnosis = anatomy.diagnosis
    if diagnosis == dx.ANENCEPHALY:
        return frozenset(HEAD_PLANES)  # no vault in any head section; the spine is intact
    if diagnosis == dx.ENCEPHALOCELE:
        return _ENCEPHALOCELE_PLANES[anatomy.subtype]
    if diagnosis == dx.HOLOPROSENCEPHALY:
        return _HPE_PLANES[anatomy.subtype]
    if diagnosis == dx.RACHISCHISIS:
        # The open spine itself, plus the cranial signs of Chiari II where this fetus has them:
        # lemon (the skull's outline, seen at every axial level), ventriculomegaly
        # (transventricular), banana (transcerebellar). The coronal view shows none of them.
        planes = {SAGITTAL_SPINE}
        if anatomy.lemon:
            planes |= {TRANSVENTRICULAR, TRANSTHALAMIC, TRANSCEREBELLAR}
        if anatomy.ventriculomegaly:
            planes.add(TRANSVENTRICULAR)
        if anatomy.banana:
            planes.add(TRANSCEREBELLAR)
        return frozenset(planes)
    return frozenset()


def choose_planes(diagnosis: str, count: int, rng: np.random.Generator) -> list[str]:
    """`count` planes for one patient: each standard CNS plane once, then repeats.

    A neurosonogram images every standard plane whatever the diagnosis turns out to be, so
    the first min(count, 5) planes are distinct and any further images repeat planes drawn
    from `PLANE_WEIGHTS`. Covering every plane also means every anomalous patient has at
    least one image in which the lesion is visible (`visible_planes`), as a real
    examination would. `diagnosis` is deliberately unused: the plane mix must not depend
    on the class.
    """
    del diagnosis
    names = list(PLANE_WEIGHTS)
    p = np.array([PLANE_WEIGHTS[n] for n in names])
    p = p / p.sum()
    distinct = min(count, len(names))
    first = rng.choice(len(names), size=distinct, replace=False, p=p)
    repeats = rng.choice(len(names), size=count - distinct, p=p)
    return [names[int(i)] for i in (*first, *repeats)]
