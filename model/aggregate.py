"""Window scores -> one video verdict, and the suspicious segments moderators should watch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from model.config import DecisionConfig


def video_score(window_scores: Sequence[float], decision: DecisionConfig) -> float:
    """Aggregate per-window fake probabilities into the video's score.

    ``top_k_mean`` (the default) averages the most suspicious fraction of windows: a swap that
    covers part of a video still raises the score, while a single noisy window does not.
    """
    scores = np.asarray(window_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("a video score needs at least one window score")
    if decision.aggregation == "max":
        return float(scores.max())
    if decision.aggregation == "mean":
        return float(scores.mean())
    k = max(1, math.ceil(decision.top_k_fraction * scores.size))
    return float(np.sort(scores)[-k:].mean())


def segments(
    starts: Sequence[float], ends: Sequence[float], scores: Sequence[float]
) -> list[dict[str, float]]:
    """One ``{start_s, end_s, score}`` per window, in time order (the table's JSON column)."""
    rows = [
        {"start_s": round(float(s), 3), "end_s": round(float(e), 3), "score": round(float(p), 4)}
        for s, e, p in zip(starts, ends, scores, strict=True)
    ]
    return sorted(rows, key=lambda r: r["start_s"])
