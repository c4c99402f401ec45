"""Fitting one model: weighted cross-entropy, augmentation, patient-level model selection.

Images are decoded, cropped and resized once into a uint8 cache (`RegionCache`): on a 2-core CPU
re-decoding every epoch would cost as much as the network itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from app.labels import PAPER_CLASSES
from app.preprocess import SCAN_AREA_VERSION, PreprocessSpec
from app.training.augment import AugmentConfig, augment
from app.training.data import Sample, eval_input, load_region
from app.training.model import DEFAULT_LSE_SHARPNESS, ResNet, build_resnet, model_config
from app.training.splits import class_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "resnet34"
    width: float = 0.25
    output_stride: int = 32
    pooling: str = "avg"
    lse_sharpness: float = DEFAULT_LSE_SHARPNESS
    num_classes: int = len(PAPER_CLASSES)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    augment: bool = True
    progress: bool = True
    # Wall-clock limit for the whole fit. The cosine schedule follows whichever runs out first,
    # steps or time, so a fit on a busy machine still ends with a fully annealed learning rate.
    time_budget_s: float | None = None


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_patient_loss: float
    val_patient_accuracy: float
    val_image_accuracy: float
    seconds: float
    images_per_second: float


@dataclass
class FitResult:
    checkpoint: Path
    best_epoch: int
    best: EpochStats
    history: list[EpochStats] = field(default_factory=list)
    val_patient_probabilities: dict[str, list[float]] = field(default_factory=dict)


def configure_threads(threads: int | None = None) -> int:
    """Use the cores we have (2 here) for intra-op work; inter-op parallelism only adds contention."""
    count = threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(count)
    return count


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fetalcns" / "regions"


def _cache_key(samples: Sequence[Sample], spec: PreprocessSpec) -> str:
    digest = hashlib.sha256(f"{spec!r}|scan-area-v{SCAN_AREA_VERSION}".encode())
    for sample in samples:
        stat = sample.path.stat()
        digest.update(f"{sample.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


class RegionCache:
    """Every sample's cropped, resized uint8 image, computed once: [N, H, W, 3].

    Finding the scan area costs ~0.1 s per image on this CPU, so the result is also kept on disk
    (keyed by file paths, sizes, mtimes, the preprocessing spec and the scan-area version) for
    the next run on the same data.
    """

    def __init__(
        self, samples: Sequence[Sample], spec: PreprocessSpec, workers: int = 2, disk_cache: bool = False
    ) -> None:
        self.spec = spec
        self.samples = list(samples)
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)
        self.patients = [s.patient for s in self.samples]
        cached = _cache_dir() / f"{_cache_key(self.samples, spec)}.npy" if disk_cache else None
        if cached is not None and cached.is_file():
            self.regions = np.load(cached)
            log.info("preprocessed images loaded from %s", cached)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2 releases the GIL
            regions = list(pool.map(lambda s: load_region(s.path, spec), self.samples))
        self.regions = np.stack(regions) if regions else np.zeros((0, *spec.size, 3), np.uint8)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, self.regions)

    def batch(self, indices: Sequence[int], rng: np.random.Generator | None = None) -> torch.Tensor:
        """Normalised float32 [B, 3, H, W]; augmented when an rng is given."""
        images = []
        for index in indices:
            region = self.regions[index]
            if rng is not None:
                region = augment(region, rng, AugmentConfig())
            images.append(eval_input(region, self.spec))
        return torch.from_numpy(np.stack(images))


def predict_probabilities(
    model: nn.Module, cache: RegionCache, indices: Sequence[int], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities, logits) for the given cache rows, eval mode, no augmentation."""
    model.eval()
    logits = []
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            logits.append(model(cache.batch(indices[start : start + batch_size])))
    stacked = torch.cat(logits) if logits else torch.zeros(0, 1)
    return torch.softmax(stacked, dim=1).numpy(), stacked.numpy()


def patient_mean_probabilities(probabilities: np.ndarray, patients: Sequence[str]) -> dict[str, np.ndarray]:
    grouped: dict[str, list[np.ndarray]] = {}
    for row, patient in zip(probabilities, patients, strict=True):
        grouped.setdefault(patient, []).append(row)
    return {patient: np.mean(rows, axis=0) for patient, rows in grouped.items()}


def patient_nll(patient_probabilities: dict[str, np.ndarray], patient_label: dict[str, int]) -> float:
    """Mean over patients of −log(mean softmax of the patient's true class): the selection criterion."""
    eps = 1e-12
    losses = [-math.log(max(float(p[patient_label[k]]), eps)) for k, p in patient_probabilities.items()]
    return float(np.mean(losses))


def learning_rate(step: int, warmup: int, progress: float, peak: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay as `progress` goes from 0 to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def schedule_progress(step: int, total: int, warmup: int, elapsed: float, budget: float | None) -> float:
    by_steps = (step - warmup) / max(1, total - warmup)
    return max(by_steps, elapsed / budget) if budget else by_steps


def fit(
    cache: RegionCache,
    train_indices: Sequence[int],
    val_indices: Sequence[int],
    config: TrainConfig,
    checkpoint_path: Path,
    extra: dict[str, Any] | None = None,
    description: str = "fit",
) -> FitResult:
    """Train one model; keep the epoch with the lowest patient-level validation loss."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_resnet(
        config.arch,
        config.width,
        num_classes=config.num_classes,
        output_stride=config.output_stride,
        pooling=config.pooling,
        lse_sharpness=config.lse_sharpness,
    )
    weights = class_weights(cache.labels[list(train_indices)], config.num_classes)
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_indices) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    warmup = min(total_steps, max(1, round(config.warmup_epochs * steps_per_epoch)))

    val_patients = [cache.patients[i] for i in val_indices]
    patient_label = {cache.patients[i]: int(cache.labels[i]) for i in val_indices}
    best: EpochStats | None = None
    best_probs: dict[str, np.ndarray] = {}
    history: list[EpochStats] = []
    step = 0
    fit_started = time.perf_counter()
    progress = 0.0
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, config.epochs + 1):
        if progress >= 1.0:
            log.info(
                "%s: time budget of %.0f s used up after %d epochs",
                description,
                config.time_budget_s,
                epoch - 1,
            )
            break
        model.train()
        order = rng.permutation(np.asarray(train_indices))
        started, seen, running = time.perf_counter(), 0, 0.0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"{description} epoch {epoch}/{config.epochs}",
            disable=not config.progress,
            mininterval=5.0,
            leave=False,
        )
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2 and len(order) >= 2:
                continue  # BatchNorm cannot train on a single image
            elapsed = time.perf_counter() - fit_started
            progress = schedule_progress(step, total_steps, warmup, elapsed, config.time_budget_s)
            if progress >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, warmup, progress, config.lr)
            inputs = cache.batch(batch, rng if config.augment else None)
            targets = torch.from_numpy(cache.labels[batch])
            loss = criterion(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(batch)
            running += loss.item() * len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{running / seen:.3f}")
        bar.close()
        if seen == 0:
            break  # the time budget ran out before this epoch trained on anything
        train_seconds = time.perf_counter() - started
        probabilities, _ = predict_probabilities(model, cache, list(val_indices))
        by_patient = patient_mean_probabilities(probabilities, val_patients)
        stats = EpochStats(
            epoch=epoch,
            train_loss=running / max(1, seen),
            val_patient_loss=patient_nll(by_patient, patient_label),
            val_patient_accuracy=float(
                np.mean([int(np.argmax(p)) == patient_label[k] for k, p in by_patient.items()])
            ),
            val_image_accuracy=float(np.mean(probabilities.argmax(1) == cache.labels[list(val_indices)])),
            seconds=time.perf_counter() - started,
            images_per_second=seen / max(train_seconds, 1e-9),
        )
        history.append(stats)
        log.info(
            "%s epoch %d/%d: train loss %.4f, val patient loss %.4f, val patient acc %.3f, "
            "val image acc %.3f, %.0f s (%.1f img/s)",
            description, epoch, config.epochs, stats.train_loss, stats.val_patient_loss,
            stats.val_patient_accuracy, stats.val_image_accuracy, stats.seconds, stats.images_per_second,
        )  # fmt: skip
        if best is None or stats.val_patient_loss < best.val_patient_loss:
            best, best_probs = stats, by_patient
            save_checkpoint(checkpoint_path, model, cache.spec, config, stats, history, extra)
    assert best is not None
    return FitResult(
        checkpoint=checkpoint_path,
        best_epoch=best.epoch,
        best=best,
        history=history,
        val_patient_probabilities={k: v.tolist() for k, v in best_probs.items()},
    )


def save_checkpoint(
    path: Path,
    model: ResNet,
    spec: PreprocessSpec,
    config: TrainConfig,
    stats: EpochStats,
    history: list[EpochStats],
    extra: dict[str, Any] | None,
) -> None:
    payload = {
        "format": "fetalcns-checkpoint-1",
        "model": model_config(model),
        "state_dict": model.state_dict(),
        "input": spec.to_card(),
        "train_config": asdict(config),
        "epoch": stats.epoch,
        "selection": asdict(stats),
        "history": [asdict(h) for h in history],
        **(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[ResNet, dict[str, Any]]:
    """The model (eval mode) and the checkpoint's metadata."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    config = payload["model"]
    # Checkpoints from before the centred grid existed used the corner-aligned one.
    centered = bool(config.get("centered_grid", False))
    # ... and those from before output_stride existed, stride 32.
    output_stride = int(config.get("output_stride", 32))
    # ... and those from before the pooling option, average pooling.
    pooling = str(config.get("pooling", "avg"))
    sharpness = float(config.get("lse_sharpness", DEFAULT_LSE_SHARPNESS))
    model = build_resnet(
        config["arch"], config["width"], config["num_classes"], centered, output_stride, pooling, sharpness
    )
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def update_checkpoint(path: Path, **fields: Any) -> None:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    payload.update(fields)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
