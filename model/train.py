"""Train the sequence head on cached backbone features and write a model bundle."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from model.aggregate import video_score
from model.backbone import RANDOM
from model.bundle import save_bundle
from model.config import DetectorConfig
from model.dataset import LabelledVideo, load_dataset
from model.detector import Detector
from model.errors import VideoError
from model.features import FeatureExtractor, VideoFeatures
from model.metrics import summary, threshold_for_fpr
from model.video import WindowSampler


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 10
    val_fraction: float = 0.25
    seed: int = 0


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch through ``progress`` (stderr in the CLI), keeping stdout for results."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        super().__init__()
        self._progress = progress

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        shown = " ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()))
        self._progress(f"train: epoch {epoch + 1}: {shown}")


def split_by_video(
    videos: Sequence[LabelledVideo], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Stratified train/validation split of video indices.

    Whole videos go to one side, so windows of one video never sit on both sides of the split.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in sorted({v.label for v in videos}):
        members = [i for i, v in enumerate(videos) if v.label == label]
        rng.shuffle(members)
        n_val = math.ceil(val_fraction * len(members)) if len(members) > 1 else 0
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def stack_windows(
    items: Sequence[VideoFeatures], targets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = np.concatenate([f.features for f in items])
    mask = np.concatenate([f.mask for f in items])
    y = np.concatenate(
        [np.full(len(f.features), t, np.float32) for f, t in zip(items, targets, strict=True)]
    )
    return features, mask, y


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights, so an imbalanced corpus does not tilt the head to one class."""
    counts = np.bincount(y.astype(int), minlength=2).astype(float)
    total = counts.sum()
    return {c: float(total / (2.0 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


def video_scores(
    detector: Detector, items: Sequence[VideoFeatures]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Aggregated video scores and the per-window scores behind each."""
    if not items:
        return np.zeros(0), []
    features = np.concatenate([f.features for f in items])
    mask = np.concatenate([f.mask for f in items])
    flat = detector.head_scores(features, mask)
    per_video, offset = [], 0
    for item in items:
        per_video.append(flat[offset : offset + len(item.features)])
        offset += len(item.features)
    decision = detector.config.decision
    return np.array([video_score(s, decision) for s in per_video]), per_video


def train(
    data: str,
    out: str | Path,
    *,
    weights: str = RANDOM,
    config: DetectorConfig | None = None,
    options: TrainOptions | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Extract features, fit the head, pick the threshold on validation videos, write a bundle."""
    config = config or DetectorConfig()
    options = options or TrainOptions()
    videos = load_dataset(data)
    progress(f"train: {len(videos)} videos from {data}")
    detector = Detector.build(config, weights, seed=options.seed)
    extractor = FeatureExtractor(detector, WindowSampler(config), cache_dir=cache_dir)
    extracted = extractor.extract([v.path for v in videos], progress=progress)
    usable = []
    for video in videos:
        result = extracted[video.path]
        if isinstance(result, VideoError):
            progress(f"train: skipping {video.path}: {result}")
        else:
            usable.append((video, result))
    if {v.label for v, _ in usable} != {"real", "fake"}:
        raise ValueError("training needs decodable videos of both classes, real and fake")

    kept = [v for v, _ in usable]
    train_idx, val_idx = split_by_video(kept, options.val_fraction, options.seed)
    if not val_idx:
        raise ValueError("too few videos to hold out a validation split")
    train_items = [usable[i][1] for i in train_idx]
    val_items = [usable[i][1] for i in val_idx]
    x, m, y = stack_windows(train_items, [kept[i].target for i in train_idx])
    xv, mv, yv = stack_windows(val_items, [kept[i].target for i in val_idx])
    progress(
        f"train: {len(train_idx)} videos ({len(y)} windows) to fit, "
        f"{len(val_idx)} videos ({len(yv)} windows) to validate"
    )

    keras.utils.set_random_seed(options.seed)
    head = detector.head
    with detector.strategy.scope():
        # The layer was built on [B, T, D] inputs, so adapt on real frames shaped [N, 1, D].
        head.get_layer("feature_norm").adapt(x[m][:, None, :])
        head.compile(
            optimizer=keras.optimizers.Adam(options.learning_rate),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc")],
        )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=options.patience, restore_best_weights=True
    )
    history = head.fit(
        {"features": x, "mask": m},
        y,
        validation_data=({"features": xv, "mask": mv}, yv),
        epochs=options.epochs,
        batch_size=options.batch_size,
        class_weight=class_weights(y),
        callbacks=[stop, EpochProgress(progress)],
        verbose=0,
    )

    val_labels = np.array([kept[i].target for i in val_idx])
    val_scores, _ = video_scores(detector, val_items)
    threshold = threshold_for_fpr(val_labels, val_scores, config.decision.target_fpr)
    detector.config = replace(config, decision=replace(config.decision, threshold=threshold))
    validation = summary(val_labels, val_scores, threshold)
    progress(
        f"train: validation AUC {validation['auc']:.3f}, threshold {threshold:.4f} "
        f"for a {config.decision.target_fpr:.0%} false-positive target"
    )
    training = {
        "data": str(data),
        "videos": {
            "real": sum(v.label == "real" for v in kept),
            "fake": sum(v.label == "fake" for v in kept),
        },
        "skipped_videos": len(videos) - len(kept),
        "train_videos": len(train_idx),
        "validation_videos": len(val_idx),
        "train_windows": len(y),
        "epochs_run": len(history.history["loss"]),
        **{k: v for k, v in vars(options).items()},
    }
    return save_bundle(out, detector, metrics={"validation": validation}, training=training)
