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
