"""Video-level metrics and the false-positive-targeted threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model import metrics

pytestmark = pytest.mark.unit


def test_perfect_separation():
    y = [0, 0, 1, 1]
    s = [0.1, 0.2, 0.8, 0.9]
    assert metrics.roc_auc(y, s) == 1.0
    assert metrics.equal_error_rate(y, s) == 0.0
    assert metrics.average_precision(y, s) == 1.0


def test_auc_counts_ties_as_half():
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == 0.75


def test_auc_undefined_for_one_class():
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_average_precision_known_value():
    # Ranked: fake(0.9), real(0.8), fake(0.7): precision at the two recalls: 1 and 2/3.
    assert metrics.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(
        0.5 * 1 + 0.5 * (2 / 3)
    )


def test_log_loss_known_value():
    assert metrics.log_loss([1, 0], [0.8, 0.2]) == pytest.approx(-math.log(0.8))


def test_confusion_and_accuracy():
    result = metrics.summary([0, 0, 1, 1], [0.1, 0.7, 0.6, 0.9], threshold=0.65)
    assert result["confusion"] == {"true_fake": 1, "false_fake": 1, "true_real": 1, "false_real": 1}
    assert result["accuracy"] == 0.5
    assert result["n"] == 4


@given(
    negatives=st.lists(st.floats(0, 1), min_size=1, max_size=60),
    target=st.floats(0.0, 0.5),
)
def test_threshold_keeps_false_positive_rate_within_target(negatives, target):
    y = np.zeros(len(negatives), int)
    threshold = metrics.threshold_for_fpr(y, negatives, target)
    fpr = np.mean(np.asarray(negatives) >= threshold)
    assert fpr <= target + 1e-12


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        metrics.roc_auc([0, 1], [0.5])


def test_wilson_interval_is_honest_at_zero_and_narrows_with_more_videos():
    low, high = metrics.wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.161, abs=0.002)
    assert metrics.wilson_interval(0, 200)[1] < 0.02
    low, high = metrics.wilson_interval(5, 100)
    assert low < 0.05 < high and high - low < 0.1
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)


def test_threshold_support_warns_below_fifty_real_videos():
    rng = np.random.default_rng(0)
    few_labels = np.r_[np.zeros(20), np.ones(20)]
    few_scores = np.r_[rng.uniform(0, 0.6, 20), rng.uniform(0.4, 1, 20)]
    threshold = metrics.threshold_for_fpr(few_labels, few_scores, 0.05)
    support = metrics.threshold_support(few_labels, few_scores, threshold, 0.05)
    assert support["real_videos"] == 20 and support["false_positives"] <= 1
    assert support["enough_real_videos"] is False
    low, high = support["fpr_interval_95"]
    assert low <= support["fpr"] <= high and high > 0.1
    warning = metrics.threshold_warning(support)
    assert "only 20 real validation videos" in warning and f"{high:.1%}" in warning

    many_labels = np.r_[np.zeros(metrics.MIN_REAL_VIDEOS), np.ones(20)]
    many_scores = np.r_[rng.uniform(0, 0.6, metrics.MIN_REAL_VIDEOS), rng.uniform(0.4, 1, 20)]
    threshold = metrics.threshold_for_fpr(many_labels, many_scores, 0.05)
    support = metrics.threshold_support(many_labels, many_scores, threshold, 0.05)
    assert support["enough_real_videos"] is True and metrics.threshold_warning(support) is None
