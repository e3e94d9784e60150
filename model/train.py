"""Train the detector and write a model bundle.

Two ways to get training windows, one way to fit the head and set its threshold:
- **labelled:** the videos of ``real/`` and ``fake/`` (or a manifest), features cached on disk;
- **self-blended** (``SelfBlendOptions``): fakes made from the real videos themselves
  (``model.blendset``), so ``DATA`` may hold real videos only; labelled fakes, if any, are mixed
  in. Optionally the backbone's last blocks are tuned first (``model.finetune``).

Videos are split into training and validation sides before anything is made from them, so no
window of a validation video, nor any fake made from one, is ever trained on. The threshold is
set on validation videos for the false-positive target, and the bundle records how many real
videos it rests on (``model.metrics.threshold_support``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from model.aggregate import video_score
from model.backbone import RANDOM
from model.blendset import PairMaker, WindowPairs, frame_subset
from model.bundle import save_bundle
from model.config import DetectorConfig
from model.dataset import LabelledVideo, load_dataset
from model.detector import Detector, make_strategy
from model.errors import VideoError
from model.features import FeatureExtractor, detector_fingerprint
from model.finetune import FineTuneOptions, tune_backbone
from model.hashing import sha256_file
from model.metrics import summary, threshold_for_fpr, threshold_support, threshold_warning
from model.progress import eta_text
from model.quantize import calibration_frames
from model.runtime import AUTO, plan_runtime
from model.selfblend import BlendConfig
from model.video import WindowSampler

# Fewer distinct real videos than this, and a detector learns the faces it saw rather than what
# blending leaves behind: ``train`` warns.
FEW_REAL_VIDEOS = 500
CHECKPOINT_DIR = ".checkpoint"
LANDMARK_MODEL = "MTCNN five-point landmarks (mtcnn wheel, MIT licence), outline drawn around them"


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 10
    val_fraction: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class SelfBlendOptions:
    """Training fakes made from real videos (``deeptrust train --self-blend``)."""

    blend: BlendConfig = field(default_factory=BlendConfig)
    variants: int = 2  # self-blended fakes per real window
    ratio: float = 0.5  # share of fake training windows that are self-blended, with labelled fakes
    fine_tune: FineTuneOptions | None = None
    fine_tune_frames_per_window: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError("--self-blend-ratio must be in (0, 1]")
        if self.variants < 1:
            raise ValueError("--self-blend-variants must be at least 1")


@dataclass
class Windows:
    """Windows of one video (or of one self-blended fake of it) and their label."""

    features: np.ndarray  # [W, T, D]
    mask: np.ndarray  # [W, T]
    label: int  # 1 fake, 0 real


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch through ``progress`` (stderr in the CLI), keeping stdout for results."""

    def __init__(self, progress: Callable[[str], None], total: int) -> None:
        super().__init__()
        self._progress = progress
        self._total = total
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        shown = " ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()))
        eta = eta_text(self._started, epoch + 1, self._total)
        self._progress(f"train: epoch {epoch + 1}/{self._total}: {shown} ({eta})")


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


def stack_windows(items: Sequence[Windows]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = np.concatenate([w.features for w in items])
    mask = np.concatenate([w.mask for w in items])
    y = np.concatenate([np.full(len(w.features), w.label, np.float32) for w in items])
    return features, mask, y


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights, so an imbalanced corpus does not tilt the head to one class."""
    counts = np.bincount(y.astype(int), minlength=2).astype(float)
    total = counts.sum()
    return {c: float(total / (2.0 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


def video_scores(detector: Detector, items: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
    """Aggregated video scores and the per-window scores behind each (items have ``features``
    and ``mask``)."""
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


def build_detector(config: DetectorConfig, weights: str, seed: int) -> Detector:
    """The detector to train: the backbone in the fastest precision this machine computes
    natively (its weights stay float32), the head in float32."""
    strategy = make_strategy()
    return Detector.build(
        config, weights, strategy=strategy, seed=seed, runtime=plan_runtime(AUTO, strategy)
    )


def train(
    data: str,
    out: str | Path,
    *,
    weights: str = RANDOM,
    config: DetectorConfig | None = None,
    options: TrainOptions | None = None,
    self_blend: SelfBlendOptions | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] = print,
    reviewed: Sequence[LabelledVideo] = (),
) -> dict[str, Any]:
    """Make training windows, fit the head, pick the threshold on validation videos, write a
    bundle. ``reviewed`` videos (moderators' decisions) join ``data``'s, and the bundle's
    training summary counts them. A stopped self-blend run started again with the same
    arguments resumes from ``out/.checkpoint``."""
    config = config or DetectorConfig()
    options = options or TrainOptions()
    videos = load_dataset(data) + list(reviewed)
    progress(f"train: {len(videos)} videos from {data} ({len(reviewed)} from reviews)")
    detector = build_detector(config, weights, options.seed)
    progress(f"train: backbone in {detector.runtime.precision}")
    if self_blend is None:
        train_set, val_set, recipe = labelled_windows(
            detector, videos, options, cache_dir, progress
        )
    else:
        checkpoint = Path(out) / CHECKPOINT_DIR
        train_set, val_set, recipe = blended_windows(
            detector, videos, options, self_blend, checkpoint, progress
        )
    x, m, y = stack_windows(train_set)
    xv, mv, yv = stack_windows(val_set)
    progress(
        f"train: {len(y)} windows ({int(y.sum())} fake) to fit, "
        f"{len(val_set)} validation videos ({len(yv)} windows)"
    )
    backup = None if self_blend is None else Path(out) / CHECKPOINT_DIR / "head"
    epochs_run = fit_head(detector, (x, m, y), (xv, mv, yv), options, backup, progress)

    val_labels = np.array([w.label for w in val_set])
    val_scores, _ = video_scores(detector, val_set)
    threshold = threshold_for_fpr(val_labels, val_scores, config.decision.target_fpr)
    detector.config = replace(config, decision=replace(config.decision, threshold=threshold))
    validation = summary(val_labels, val_scores, threshold)
    support = threshold_support(val_labels, val_scores, threshold, config.decision.target_fpr)
    validation["threshold_support"] = support
    low, high = support["fpr_interval_95"]
    progress(
        f"train: validation AUC {validation['auc']:.3f}, threshold {threshold:.4f} for a "
        f"{config.decision.target_fpr:.0%} false-positive target, resting on "
        f"{support['real_videos']} real videos (false-positive rate {low:.1%} to {high:.1%}, "
        "95 % interval)"
    )
    warning = threshold_warning(support)
    if warning:
        progress(f"train: warning: {warning}")
    training = {
        "data": str(data),
        "from_reviews": {
            label: sum(v.label == label for v in reviewed) for label in ("fake", "real")
        },
        **recipe,
        "train_windows": len(y),
        "epochs_run": epochs_run,
        **{k: v for k, v in vars(options).items()},
    }
    calibration = calibration_frames(detector.config, [v.path for v in videos], progress)
    manifest = save_bundle(
        out,
        detector,
        metrics={"validation": validation},
        training=training,
        calibration=calibration,
    )
    shutil.rmtree(Path(out) / CHECKPOINT_DIR, ignore_errors=True)
    return manifest


def fit_head(detector, train_data, val_data, options, backup, progress) -> int:
    """Fit the sequence head; returns the epochs run. With a ``backup`` folder, each epoch is
    backed up there, so a stopped fit resumes where it was."""
    x, m, y = train_data
    xv, mv, yv = val_data
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
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=options.patience, restore_best_weights=True
        ),
        EpochProgress(progress, options.epochs),
    ]
    if backup is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup)))
    history = head.fit(
        {"features": x, "mask": m},
        y,
        validation_data=({"features": xv, "mask": mv}, yv),
        epochs=options.epochs,
        batch_size=options.batch_size,
        class_weight=class_weights(y),
        callbacks=callbacks,
        verbose=0,
    )
    return len(history.history["loss"])


def labelled_windows(detector, videos, options, cache_dir, progress):
    """Training and validation windows from labelled videos of both classes."""
    extractor = FeatureExtractor(detector, WindowSampler(detector.config), cache_dir=cache_dir)
    extracted = extractor.extract([v.path for v in videos], progress=progress)
    usable = []
    for video in videos:
        result = extracted[video.path]
        if isinstance(result, VideoError):
            progress(f"train: skipping {video.path}: {result}")
        else:
            usable.append((video, result))
    if {v.label for v, _ in usable} != {"real", "fake"}:
        raise ValueError(
            "training needs decodable videos of both classes, real and fake "
            "(with real videos only, train with --self-blend)"
        )
    kept = [v for v, _ in usable]
    train_idx, val_idx = split_by_video(kept, options.val_fraction, options.seed)
    if not val_idx:
        raise ValueError("too few videos to hold out a validation split")

    def windows(i: int) -> Windows:
        return Windows(usable[i][1].features, usable[i][1].mask, kept[i].target)

    recipe = {
        "videos": {
            "real": sum(v.label == "real" for v in kept),
            "fake": sum(v.label == "fake" for v in kept),
        },
        "skipped_videos": len(videos) - len(kept),
        "train_videos": len(train_idx),
        "validation_videos": len(val_idx),
    }
    return [windows(i) for i in train_idx], [windows(i) for i in val_idx], recipe


def blended_windows(detector, videos, options, self_blend, checkpoint, progress):
    """Training and validation windows from real videos and their self-blended fakes, with
    labelled fakes (if any) mixed in at ``self_blend.ratio``."""
    train_idx, val_idx = split_by_video(videos, options.val_fraction, options.seed)
    reals_train = [i for i in train_idx if videos[i].label == "real"]
    if not reals_train or not any(videos[i].label == "real" for i in val_idx):
        raise ValueError("self-blend training needs at least 2 real videos")
    distinct = sum(v.label == "real" for v in videos)
    progress(f"train: {distinct} distinct real videos, {len(reals_train)} of them to train on")
    if distinct < FEW_REAL_VIDEOS:
        progress(
            f"train: warning: only {distinct} distinct real videos (fewer than "
            f"{FEW_REAL_VIDEOS}): a detector trained on few faces learns those faces more than "
            "the traces of blending; train on thousands of your own real uploads"
        )
    maker = PairMaker(
        detector.config, self_blend.blend, variants=self_blend.variants, seed=options.seed
    )
    recipe: dict[str, Any] = {
        "self_blend": {
            **asdict(self_blend.blend),
            "variants": self_blend.variants,
            "ratio": self_blend.ratio,
            "landmarks": LANDMARK_MODEL,
        },
    }
    if self_blend.fine_tune is not None:
        frames, labels = tuning_frames(maker, videos, reals_train, self_blend, progress)
        recipe["fine_tune"] = tune_backbone(
            detector, frames, labels, self_blend.fine_tune, checkpoint, progress
        )
    store = PairFeatureStore(checkpoint, detector, recipe, options.seed)
    outlines: Counter = Counter()
    train_set: list[Windows] = []
    val_set: list[Windows] = []
    skipped = []
    started, todo = time.monotonic(), [i for i in train_idx + val_idx if videos[i].label == "real"]
    for done, i in enumerate(todo, start=1):
        try:
            real, fakes, sources = store.features(maker, videos[i].path, i)
        except VideoError as err:
            progress(f"train: skipping {videos[i].path}: {err}")
            skipped.append(videos[i].path)
            continue
        outlines.update(sources)
        if i in train_idx:
            train_set += [real, *fakes]
        else:  # the real video as the scan sees it, and each of its fakes as a whole video
            val_set += [store.plain(maker, videos[i].path, i), *fakes]
        progress(f"pairs: {done}/{len(todo)} real videos ({eta_text(started, done, len(todo))})")
    if store.reused:
        progress(f"train: pairs of {store.reused} real videos came from the checkpoint")
    if not train_set or not val_set:
        raise ValueError("too few real videos could be decoded to train and validate on")
    labelled = [i for i in train_idx + val_idx if videos[i].label == "fake"]
    labelled_train = 0
    if labelled:
        extractor = FeatureExtractor(detector, WindowSampler(detector.config))
        extracted = extractor.extract([videos[i].path for i in labelled], progress=progress)
        kept = {i: r for i, r in zip(labelled, extracted.values(), strict=True)}
        blended_train = sum(len(w.features) for w in train_set if w.label == 1)
        budget = labelled_budget(blended_train, self_blend.ratio)
        for i, result in kept.items():
            if isinstance(result, VideoError):
                progress(f"train: skipping {videos[i].path}: {result}")
                skipped.append(videos[i].path)
            elif i in val_idx:
                val_set.append(Windows(result.features, result.mask, 1))
            elif labelled_train < budget:
                train_set.append(Windows(result.features, result.mask, 1))
                labelled_train += len(result.features)
    recipe.update(
        videos={
            "real": distinct,
            "fake": len(labelled),
            "distinct_real_videos": distinct,
            "self_blended_fakes": sum(w.label == 1 for w in train_set) - labelled_train,
        },
        skipped_videos=len(skipped),
        train_videos=len(train_idx),
        validation_videos=len(val_idx),
        labelled_fake_windows=labelled_train,
        outlines=dict(outlines),
    )
    return train_set, val_set, recipe


def labelled_budget(blended_windows: int, ratio: float) -> int:
    """How many labelled fake windows go with ``blended_windows`` self-blended ones, so that
    self-blended windows are ``ratio`` of all fakes."""
    return 0 if ratio >= 1.0 else round(blended_windows * (1.0 - ratio) / ratio)


def tuning_frames(maker, videos, reals_train, self_blend, progress):
    """Frames of the training videos' windows and of their fakes, for tuning the backbone."""
    frames, labels = [], []
    started = time.monotonic()
    for done, i in enumerate(reals_train, start=1):
        try:
            pairs = maker.pairs(videos[i].path, i)
        except VideoError as err:
            progress(f"train: skipping {videos[i].path}: {err}")
            continue
        f, y = frame_subset(pairs, self_blend.fine_tune_frames_per_window)
        frames.append(f)
        labels.append(y)
        progress(
            f"tuning frames: {done}/{len(reals_train)} real videos "
            f"({eta_text(started, done, len(reals_train))})"
        )
    return np.concatenate(frames), np.concatenate(labels)


class PairFeatureStore:
    """Backbone features of each real video's pairs, kept in the checkpoint folder so that a
    stopped run does not pay for them again. Keyed by the video's bytes; the folder is emptied
    when what the features depend on (backbone, recipe, seed) changes."""

    def __init__(self, checkpoint: Path, detector: Detector, recipe: dict, seed: int) -> None:
        self._root = checkpoint / "pairs"
        key = json.dumps(
            {"backbone": detector_fingerprint(detector), "recipe": recipe, "seed": seed},
            sort_keys=True,
            default=str,
        )
        stamp = self._root / "settings.json"
        if stamp.is_file() and stamp.read_text() != key:
            shutil.rmtree(self._root)
        self._root.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
        self._detector = detector
        self.reused = 0

    def features(self, maker: PairMaker, path: str, index: int):
        """(the real windows, one Windows per fake variant, outline sources)."""
        file = self._root / f"{index}-{sha256_file(path)[:20]}.npz"
        if file.is_file():
            with np.load(file) as data:
                real, fake, mask = (data[k].astype(np.float32) for k in ("real", "fake", "mask"))
                sources = Counter(json.loads(str(data["sources"])))
            self.reused += 1
        else:
            pairs = maker.pairs(path, index)
            real, fake, mask, sources = self._compute(pairs)
            tmp = file.with_suffix(".tmp.npz")
            np.savez(
                tmp,
                real=real.astype(np.float16),
                fake=fake.astype(np.float16),
                mask=mask,
                sources=json.dumps(dict(sources)),
            )
            tmp.replace(file)
        mask = mask.astype(bool)
        variants = maker.variants
        fakes = [Windows(fake[v::variants], mask[v::variants], 1) for v in range(variants)]
        return Windows(real, mask, 0), fakes, sources

    def _compute(self, pairs: WindowPairs):
        real = self._detector.window_features(pairs.real, pairs.mask)
        fake = self._detector.window_features(pairs.fake, pairs.mask)
        return real, fake, pairs.mask, pairs.outline_sources

    def plain(self, maker: PairMaker, path: str, index: int) -> Windows:
        """The real video's own windows, unaugmented, as a scan scores them."""
        file = self._root / f"{index}-plain-{sha256_file(path)[:20]}.npz"
        if file.is_file():
            with np.load(file) as data:
                return Windows(data["features"].astype(np.float32), data["mask"], 0)
        video = maker.sample(path)
        features = self._detector.window_features(video.frames, video.mask)
        tmp = file.with_suffix(".tmp.npz")
        np.savez(tmp, features=features.astype(np.float16), mask=video.mask)
        tmp.replace(file)
        return Windows(features, video.mask, 0)
