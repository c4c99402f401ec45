"""Synthetic fetal CNS ultrasound phantoms with lesion masks (`fetalcns synth`).

Every image is labelled synthetic; none depicts a patient. See docs/synthetic-data.md.
"""

from app.synth.dataset import generate_dataset

__all__ = ["generate_dataset"]
