"""The paper's label set.

Serving never reads this module: it takes class names from the model card
(models/NAME/model.json). Only the data generator and the trainer, which
create that card, start from here.
"""

from __future__ import annotations

# The paper's order: alphabetical ignoring case. Python's sorted() would put
# "Rachischisis" before "normal", so never derive this from a directory listing.
PAPER_CLASSES: tuple[str, ...] = (
    "Anencephaly",
    "Encephalocele_meningocele",
    "Holoprosencephaly",
    "normal",
    "Rachischisis",
)
NORMAL_CLASS = "normal"
ANOMALY_CLASSES: tuple[str, ...] = tuple(c for c in PAPER_CLASSES if c != NORMAL_CLASS)

HUMAN_NAMES: dict[str, str] = {
    "Anencephaly": "Anencephaly",
    "Encephalocele_meningocele": "Encephalocele / meningocele",
    "Holoprosencephaly": "Holoprosencephaly",
    "normal": "Normal",
    "Rachischisis": "Rachischisis",
}

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
