"""Evaluate a bundle on labelled videos: video-level metrics at the bundle's threshold, and the
AUC of single windows and of single frames beside it.

A video's verdict rests on many windows; a window's on up to ``frames_per_window`` frames. The
frame-level AUC scores each sampled frame alone (the head over a window holding just that
frame), so it shows how much of the detector's skill comes from single frames and how much
from time and from pooling windows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import load_bundle
from model.dataset import load_dataset
from model.detector import Detector
from model.errors import VideoError
from model.features import FeatureExtractor, VideoFeatures
from model.metrics import roc_auc, roc_curve, summary
from model.train import video_scores
from model.video import WindowSampler


def evaluate(
    data: str,
    bundle: str,
    *,
    report_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score every video of ``data`` and return the metrics (plus plots in ``report_dir``)."""
    videos = load_dataset(data)
    detector, manifest = load_bundle(bundle)
    extractor = FeatureExtractor(detector, WindowSampler(detector.config), cache_dir=cache_dir)
    extracted = extractor.extract([v.path for v in videos], progress=progress)
    errors = {
        v.path: r for v, r in ((v, extracted[v.path]) for v in videos) if isinstance(r, VideoError)
    }
    kept = [v for v in videos if v.path not in errors]
    if not kept:
        raise ValueError(f"none of the {len(videos)} videos in {data} could be decoded")
    items = [extracted[v.path] for v in kept]
    scores, per_window = video_scores(detector, items)
    labels = np.array([v.target for v in kept])
    result = summary(labels, scores, detector.config.decision.threshold)
    pairs = list(zip(kept, items, per_window, strict=True))
    frame_labels = np.concatenate([np.full(f.frames_analyzed, v.target) for v, f, _ in pairs])
    window_labels = np.concatenate([np.full(len(w), v.target) for v, _, w in pairs])
    result.update(
        video_auc=result["auc"],
        window_auc=roc_auc(window_labels, np.concatenate(per_window)),
        frame_auc=roc_auc(frame_labels, frame_scores(detector, items)),
        model_version=manifest["model_version"],
        backbone_weights=manifest["backbone"]["weights_label"],
        errors={path: err.code for path, err in errors.items()},
    )
    if report_dir is not None:
        write_plots(labels, scores, result["threshold"], Path(report_dir))
        result["report"] = str(report_dir)
    return result


def frame_scores(detector: Detector, items: list[VideoFeatures]) -> np.ndarray:
    """The head's score for every sampled frame of ``items`` on its own, in order."""
    length = detector.config.sampling.frames_per_window
    scores = []
    for item in items:  # one video at a time: a window per frame is T times the features
        frames = item.features[item.mask]
        windows = np.zeros((len(frames), length, frames.shape[1]), np.float32)
        windows[:, 0] = frames
        alone = np.zeros((len(frames), length), bool)
        alone[:, 0] = True
        scores.append(detector.head_scores(windows, alone))
    return np.concatenate(scores)


def write_plots(labels: np.ndarray, scores: np.ndarray, threshold: float, out: Path) -> None:
    """``roc.png`` and ``scores.png`` (score distribution per class, with the threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label="detector")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (per video)")
    ax.legend(loc="lower right")
    fig.savefig(out / "roc.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 21)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="real")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="fake")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="video score (probability fake)", ylabel="videos", title="Score distribution")
    ax.legend()
    fig.savefig(out / "scores.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
