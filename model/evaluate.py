"""Evaluate a bundle on labelled videos: video-level metrics at the bundle's threshold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import load_bundle
from model.dataset import load_dataset
from model.errors import VideoError
from model.features import FeatureExtractor
from model.metrics import roc_curve, summary
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
    scores, _ = video_scores(detector, [extracted[v.path] for v in kept])
    labels = np.array([v.target for v in kept])
    result = summary(labels, scores, detector.config.decision.threshold)
    result.update(
        model_version=manifest["model_version"],
        backbone_weights=manifest["backbone"]["weights_label"],
        errors={path: err.code for path, err in errors.items()},
    )
    if report_dir is not None:
        write_plots(labels, scores, result["threshold"], Path(report_dir))
        result["report"] = str(report_dir)
    return result


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
