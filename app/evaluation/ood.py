"""`fetalcns evaluate --ood DIR ...`: how the card's OOD rule treats images the model is not for.

Each DIR is a group named by its folder name. Its files (DICOM, PNG/JPEG, ZIP: whatever
``app.ingest.ingest_paths`` takes; cine loops sampled as ingestion samples them) are ingested,
grouped into studies as an upload would be, and analysed study by study through
``app.inference.analysis.analyse_study``, the one serving path: the card's OOD rule, the
blank-frame check and the card's verdict rule all apply.

Reported per group and for all groups pooled: the flag rate of the card's OOD rule (and per
signal), the AUROC of each OOD signal and of the combined rule score, in-distribution images
(the evaluation set, ``--data``) as negatives and the group's images as positives, and the
fraction of studies that still got a patient verdict (not "indeterminate"; the target for a
group of OOD images only is 0). For the in-distribution images: the false-flag rate.

The pure part (``combined_scores``, ``rate``, ``group_block``, ``ood_block``) works on numbers
only; ``score_ood_dir`` and ``evaluate_ood_dirs`` run the engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.evaluation.intervals import cluster_proportion_interval
from app.evaluation.metrics import binary_auroc
from app.inference.aggregate import QUALITY
from app.inference.analysis import analyse_study, exclusion_key
from app.inference.engine import InferenceEngine
from app.ingest import IngestOptions, ingest_paths
from app.modelcard import OodRule

COMBINED = "combined"

COMBINED_MEANING = (
    "max over the card's signals of (score - threshold) / (threshold - median in-distribution score), "
    "the medians from the evaluation images (--data); above 0 exactly when the card's rule flags "
    "(a NaN score counts as +inf)"
)


class OodDataError(ValueError):
    """An OOD group folder that cannot be used (missing, or two groups of one name)."""


def signal_scales(rule: OodRule, medians: Mapping[str, float]) -> dict[str, float]:
    """Each signal's unit for the combined score: threshold − median in-distribution score.

    A signal whose threshold is not above the median (a degenerate calibration) gets unit 1.
    """
    scales = {}
    for signal in rule.signals:
        gap = signal.threshold - float(medians.get(signal.method, np.nan))
        scales[signal.method] = float(gap) if np.isfinite(gap) and gap > 0 else 1.0
    return scales


def combined_scores(
    scores: Mapping[str, np.ndarray], rule: OodRule, medians: Mapping[str, float]
) -> np.ndarray:
    """The rule's score: max over signals of (score − threshold) / scale; > 0 iff the rule flags.

    A NaN (or missing) score is +inf, as the rule flags it.
    """
    scales = signal_scales(rule, medians)
    columns = []
    for signal in rule.signals:
        values = np.asarray(scores[signal.method], np.float64)
        columns.append(np.nan_to_num((values - signal.threshold) / scales[signal.method], nan=np.inf))
    return np.max(columns, axis=0) if columns else np.zeros(0)


def rate(count: int, total: int) -> float | None:
    return float(count / total) if total else None


@dataclass
class ScoredGroup:
    """One group's images as the serving path scored them (failed images have no scores).

    ``scores``: per signal, one score per analysed image; ``flagged``: the card's OOD rule;
    ``signals``: the signals that fired, per analysed image; ``exclusions``: the reason key per
    analysed image (None: used in the verdict); ``verdicts``: per study, whether it got a
    patient verdict (not indeterminate); ``sources``: each analysed image's source (and frame).
    """

    name: str
    scores: dict[str, np.ndarray]
    flagged: np.ndarray
    signals: list[tuple[str, ...]]
    exclusions: list[str | None]
    verdicts: list[bool]
    failed: int = 0
    rejected_files: int = 0
    sources: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.flagged)


def group_block(
    group: ScoredGroup, id_scores: Mapping[str, np.ndarray], methods: Sequence[str]
) -> dict[str, Any]:
    """The metrics of one group against the in-distribution scores (``methods`` + "combined")."""
    n = group.images
    flagged = int(np.sum(group.flagged))
    quality = sum(reason == QUALITY for reason in group.exclusions)
    excluded = sum(reason is not None for reason in group.exclusions)
    with_verdict = int(sum(group.verdicts))
    return {
        "name": group.name,
        "images": n,
        "failed_images": group.failed,
        "rejected_files": group.rejected_files,
        "studies": len(group.verdicts),
        "flagged": flagged,
        "flag_rate": rate(flagged, n),
        "flagged_by": {m: int(sum(m in fired for fired in group.signals)) for m in methods if m != COMBINED},
        "flag_rate_by": {
            m: rate(sum(m in fired for fired in group.signals), n) for m in methods if m != COMBINED
        },
        "quality_flagged": int(quality),
        # Left-out images by reason key (app.inference.aggregate), e.g. not_ultrasound, quality, ood.
        "excluded_by_reason": dict(
            sorted(Counter(reason for reason in group.exclusions if reason is not None).items())
        ),
        # Left out of the verdict for any reason (OOD, blank frame, failed), over all images.
        "excluded_rate": rate(excluded + group.failed, n + group.failed),
        "auroc": {m: binary_auroc(id_scores[m], group.scores[m]) for m in methods},
        "studies_with_verdict": with_verdict,
        "verdict_fraction": rate(with_verdict, len(group.verdicts)),
    }


def pool(groups: Sequence[ScoredGroup], methods: Sequence[str]) -> ScoredGroup:
    return ScoredGroup(
        name="all OOD groups",
        scores={m: np.concatenate([g.scores[m] for g in groups]) if groups else np.zeros(0) for m in methods},
        flagged=np.concatenate([g.flagged for g in groups]) if groups else np.zeros(0, bool),
        signals=[s for g in groups for s in g.signals],
        exclusions=[e for g in groups for e in g.exclusions],
        verdicts=[v for g in groups for v in g.verdicts],
        failed=sum(g.failed for g in groups),
        rejected_files=sum(g.rejected_files for g in groups),
        sources=[s for g in groups for s in g.sources],
    )


def _false_flag_interval(flagged: np.ndarray, patients: Sequence[str] | None) -> dict[str, Any] | None:
    if patients is None or len(flagged) == 0:
        return None
    found = cluster_proportion_interval(patients, np.asarray(flagged, bool))
    return found.as_json() if found else None


def ood_block(
    rule: OodRule,
    id_scores: Mapping[str, np.ndarray],
    id_flagged: np.ndarray,
    id_signals: Sequence[tuple[str, ...]],
    id_verdicts: Sequence[bool],
    groups: Sequence[ScoredGroup],
    id_patients: Sequence[str] | None = None,
) -> dict[str, Any]:
    """metrics.json's OOD check: in-distribution false flags, each group, and all groups pooled.

    ``id_scores`` per signal of the card (the combined score is added here), one per
    in-distribution image; ``id_verdicts``: per in-distribution patient, whether it got a verdict;
    ``id_patients``: each in-distribution image's patient, for the false-flag rate's interval
    (images clustered by patient: app.evaluation.intervals.cluster_proportion_interval).
    """
    methods = rule.methods
    medians = {m: float(np.median(np.nan_to_num(id_scores[m], nan=np.inf))) for m in methods}
    all_methods = (*methods, COMBINED)

    def with_combined(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = {m: np.asarray(scores[m], np.float64) for m in methods}
        return {**values, COMBINED: combined_scores(values, rule, medians)}

    inside = with_combined(id_scores)
    scored = [replace(g, scores=with_combined(g.scores)) for g in groups]
    n_id = len(id_flagged)
    flagged_id = int(np.sum(id_flagged))
    return {
        "signals": {s.method: s.threshold for s in rule.signals},
        "rule": rule.combine,
        "combined_score": COMBINED_MEANING,
        "combined_scale": signal_scales(rule, medians),
        "in_distribution": {
            "images": n_id,
            "patients": len(id_verdicts),
            "flagged": flagged_id,
            "false_flag_rate": rate(flagged_id, n_id),
            "false_flag_rate_interval": _false_flag_interval(id_flagged, id_patients),
            "flagged_by": {m: int(sum(m in fired for fired in id_signals)) for m in methods},
            "false_flag_rate_by": {m: rate(sum(m in fired for fired in id_signals), n_id) for m in methods},
            "median_scores": medians,
            "patients_with_verdict": int(sum(id_verdicts)),
            "verdict_fraction": rate(int(sum(id_verdicts)), len(id_verdicts)),
        },
        "groups": [group_block(g, inside, all_methods) for g in scored],
        "pooled": group_block(pool(scored, all_methods), inside, all_methods),
        "auroc_meaning": "in-distribution images negative, the group's images positive; "
        "a higher score means less familiar",
        "verdict_target": "0 studies with a verdict in a group of OOD images only",
    }


def check_ood_dirs(dirs: Sequence[Path]) -> list[str]:
    """The group names (folder names), or OodDataError for a missing folder or a repeated name."""
    names = []
    for directory in dirs:
        if not Path(directory).exists():
            raise OodDataError(f"OOD group {directory} not found")
        name = Path(directory).resolve().name or str(directory)
        if name in names:
            raise OodDataError(f"two OOD groups are named {name!r}; give each group its own folder name")
        names.append(name)
    return names


def score_ood_dir(
    engine: InferenceEngine, directory: Path, name: str | None = None, options: IngestOptions | None = None
) -> ScoredGroup:
    """Ingest one group folder and analyse each study as serving does."""
    result = ingest_paths([directory], options or IngestOptions())
    methods = engine.ood_rule.methods
    scores: dict[str, list[float]] = {m: [] for m in methods}
    flagged, signals, exclusions, verdicts, sources = [], [], [], [], []
    failed = 0
    for study in result.studies:
        analysis = analyse_study(engine, study.images)
        verdicts.append(not analysis.verdict.indeterminate)
        failed += analysis.n_failed
        for position, prediction in analysis.analysed:
            for m in methods:
                scores[m].append(float(prediction.ood_scores.get(m, np.nan)))
            flagged.append(bool(prediction.ood))
            signals.append(tuple(prediction.ood_signals))
            exclusions.append(exclusion_key(prediction))
            image = study.images[position]
            sources.append(image.source + ("" if image.frame is None else f"#{image.frame}"))
    return ScoredGroup(
        name=name or Path(directory).resolve().name,
        scores={m: np.asarray(v, np.float64) for m, v in scores.items()},
        flagged=np.asarray(flagged, bool),
        signals=signals,
        exclusions=exclusions,
        verdicts=verdicts,
        failed=failed,
        rejected_files=len(result.rejected),
        sources=sources,
    )


def evaluate_ood_dirs(engine: InferenceEngine, dirs: Sequence[Path]) -> list[ScoredGroup]:
    names = check_ood_dirs(dirs)
    return [score_ood_dir(engine, Path(d), name) for d, name in zip(dirs, names, strict=True)]


__all__ = [
    "COMBINED",
    "OodDataError",
    "ScoredGroup",
    "check_ood_dirs",
    "combined_scores",
    "evaluate_ood_dirs",
    "group_block",
    "ood_block",
    "score_ood_dir",
]
