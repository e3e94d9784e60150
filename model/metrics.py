"""Video-level detection metrics in plain NumPy: AUC, EER, AP, log loss, confusion matrix.

Labels are 1 for fake (the positive class) and 0 for real.
"""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError("labels and scores differ in length")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, s


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds where they change."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(y.sum(), 1), max(y.size - y.sum(), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (ties count one half). NaN when only one class is present."""
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def equal_error_rate(labels, scores) -> float:
    """The error rate where false positives and false negatives are equally likely."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2.0)


def average_precision(labels, scores) -> float:
    """Area under the precision-recall curve, as the step sum over recall changes."""
    y, s = _check(labels, scores)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y_sorted = y[order]
    s_sorted = s[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tps = np.cumsum(y_sorted)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(labels, scores, eps: float = 1e-7) -> float:
    y, s = _check(labels, scores)
    p = np.clip(s, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1.0 - p)))


def confusion(labels, scores, threshold: float) -> dict[str, int]:
    """Counts at ``score >= threshold`` means fake."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    return {
        "true_fake": int(np.sum(pred & (y == 1))),
        "false_fake": int(np.sum(pred & (y == 0))),
        "true_real": int(np.sum(~pred & (y == 0))),
        "false_real": int(np.sum(~pred & (y == 1))),
    }


def threshold_for_fpr(labels, scores, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these scores stays within target.

    Flagging costs moderator time, so the operating point is set by the false-positive rate a
    platform accepts, on validation videos the head did not train on.
    """
    y, s = _check(labels, scores)
    negatives = np.sort(s[y == 0])[::-1]
    if negatives.size == 0:
        return 0.5
    allowed = int(np.floor(target_fpr * negatives.size))
    if allowed >= negatives.size:
        return float(negatives[-1])
    # Strictly above the (allowed+1)-th highest real score, so at most `allowed` reals pass.
    return float(np.nextafter(negatives[allowed], np.inf))


def summary(labels, scores, threshold: float) -> dict[str, object]:
    """Every metric the evaluate command reports, as JSON-ready values."""
    y, s = _check(labels, scores)
    matrix = confusion(y, s, threshold)
    correct = matrix["true_fake"] + matrix["true_real"]
    return {
        "n": int(y.size),
        "n_fake": int(y.sum()),
        "n_real": int(y.size - y.sum()),
        "auc": roc_auc(y, s),
        "accuracy": correct / y.size if y.size else float("nan"),
        "eer": equal_error_rate(y, s),
        "log_loss": log_loss(y, s),
        "ap": average_precision(y, s),
        "threshold": float(threshold),
        "confusion": matrix,
    }


# Fewer real validation videos than this, and the false-positive rate a threshold will see in
# production is too uncertain to rely on: ``train`` warns.
MIN_REAL_VIDEOS = 50


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) for a binomial rate seen as successes / n.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 of n: with no
    false positive on 20 real videos, the rate may still be up to about 16 %.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def threshold_support(labels, scores, threshold: float, target_fpr: float) -> dict[str, object]:
    """What a threshold rests on: the real videos behind it, the false-positive rate they show,
    its 95 % interval, and whether there are enough of them (``MIN_REAL_VIDEOS``)."""
    y, s = _check(labels, scores)
    reals = s[y == 0]
    false_positives = int(np.sum(reals >= threshold))
    low, high = wilson_interval(false_positives, int(reals.size))
    return {
        "real_videos": int(reals.size),
        "false_positives": false_positives,
        "target_fpr": float(target_fpr),
        "fpr": false_positives / reals.size if reals.size else float("nan"),
        "fpr_interval_95": [low, high],
        "enough_real_videos": bool(reals.size >= MIN_REAL_VIDEOS),
    }


def threshold_warning(support: dict[str, object]) -> str | None:
    """A sentence for the user when too few real videos back the threshold, else None."""
    if support["enough_real_videos"]:
        return None
    low, high = support["fpr_interval_95"]
    return (
        f"the threshold rests on only {support['real_videos']} real validation videos "
        f"(fewer than {MIN_REAL_VIDEOS}): the false-positive rate it will see may be anywhere "
        f"from {low:.1%} to {high:.1%} (95 % interval), not the {support['target_fpr']:.0%} "
        "asked for. Train on more real videos."
    )
