"""Properties of score aggregation, segments and window timing (frame sampling itself is
covered in tests/test_frames.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from model.aggregate import segments, video_score
from model.config import DecisionConfig, SamplingConfig
from model.frames import plan_windows, window_span

pytestmark = pytest.mark.unit

scores = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=64)
fractions = st.floats(0.01, 1.0)


@given(window_scores=scores, fraction=fractions)
def test_the_video_score_lies_between_the_mean_and_the_max(window_scores, fraction):
    top_k = video_score(window_scores, DecisionConfig(top_k_fraction=fraction))
    mean = video_score(window_scores, DecisionConfig(aggregation="mean"))
    peak = video_score(window_scores, DecisionConfig(aggregation="max"))
    assert mean - 1e-12 <= top_k <= peak + 1e-12
    assert peak == max(window_scores)
    assert min(window_scores) - 1e-12 <= mean <= peak + 1e-12


@given(window_scores=scores, fraction=fractions, data=st.data())
def test_the_video_score_ignores_window_order(window_scores, fraction, data):
    shuffled = data.draw(st.permutations(window_scores))
    decision = DecisionConfig(top_k_fraction=fraction)
    assert video_score(shuffled, decision) == pytest.approx(video_score(window_scores, decision))


@given(window_scores=scores, fraction=fractions, data=st.data())
def test_a_more_suspicious_window_never_lowers_the_video_score(window_scores, fraction, data):
    index = data.draw(st.integers(0, len(window_scores) - 1))
    raised = list(window_scores)
    raised[index] = data.draw(st.floats(window_scores[index], 1.0))
    for decision in (
        DecisionConfig(top_k_fraction=fraction),
        DecisionConfig(aggregation="mean"),
        DecisionConfig(aggregation="max"),
    ):
        assert video_score(raised, decision) >= video_score(window_scores, decision) - 1e-12


@given(window_scores=scores, fraction=fractions)
def test_top_k_averages_exactly_the_most_suspicious_windows(window_scores, fraction):
    k = max(1, math.ceil(fraction * len(window_scores)))
    expected = float(np.mean(sorted(window_scores)[-k:]))
    assert video_score(window_scores, DecisionConfig(top_k_fraction=fraction)) == pytest.approx(
        expected
    )


def test_a_video_without_windows_has_no_score():
    with pytest.raises(ValueError):
        video_score([], DecisionConfig())


@st.composite
def windows(draw):
    n = draw(st.integers(1, 40))
    starts = draw(st.lists(st.floats(0.0, 3600.0), min_size=n, max_size=n))
    lengths = draw(st.lists(st.floats(0.001, 60.0), min_size=n, max_size=n))
    window_scores = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    return starts, [s + d for s, d in zip(starts, lengths, strict=True)], window_scores


@given(windows())
def test_segments_are_one_per_window_in_time_order(window):
    starts, ends, window_scores = window
    rows = segments(starts, ends, window_scores)
    assert len(rows) == len(starts)
    assert [r["start_s"] for r in rows] == sorted(r["start_s"] for r in rows)
    expected = sorted(
        (round(s, 3), round(e, 3), round(p, 4))
        for s, e, p in zip(starts, ends, window_scores, strict=True)
    )
    assert sorted((r["start_s"], r["end_s"], r["score"]) for r in rows) == expected
    assert all(r["start_s"] <= r["end_s"] and 0.0 <= r["score"] <= 1.0 for r in rows)


def test_segments_need_a_time_for_every_score():
    with pytest.raises(ValueError):
        segments([0.0, 1.0], [1.0, 2.0], [0.5])


sampling = st.builds(
    SamplingConfig,
    frames_per_window=st.integers(1, 30),
    sample_fps=st.floats(1.0, 60.0),
    max_windows=st.integers(1, 16),
)


@given(n=st.integers(1, 50_000), fps=st.floats(1.0, 120.0), config=sampling)
def test_constant_frame_rate_timestamps_give_the_planned_times(n, fps, config):
    for plan in plan_windows(n, fps, config):
        start, end = window_span(plan, plan.indices / fps)
        assert start == pytest.approx(plan.start_s, abs=1e-9)
        assert end == pytest.approx(plan.end_s, abs=1e-6)


@given(n=st.integers(2, 400), fps=st.floats(1.0, 120.0), config=sampling, data=st.data())
def test_variable_frame_rate_windows_take_their_frames_real_times(n, fps, config, data):
    gaps = data.draw(st.lists(st.floats(0.001, 2.0), min_size=n - 1, max_size=n - 1))
    times = np.concatenate([[0.0], np.cumsum(gaps)])  # any increasing timestamps
    for plan in plan_windows(n, fps, config):
        start, end = window_span(plan, times[plan.indices])
        assert start == times[plan.indices[0]]
        assert end > times[plan.indices[-1]]
        if len(plan.indices) >= 2:  # the end adds the window's own last frame interval
            last, before = plan.indices[-1], plan.indices[-2]
            step = (times[last] - times[before]) / (last - before)
            assert end == pytest.approx(times[last] + step)


@given(n=st.integers(1, 5_000), fps=st.floats(1.0, 120.0), config=sampling, data=st.data())
def test_a_window_cut_short_ends_after_its_last_decoded_frame(n, fps, config, data):
    plan = data.draw(st.sampled_from(plan_windows(n, fps, config)))
    decoded = data.draw(st.integers(1, len(plan.indices)))
    start, end = window_span(plan, plan.indices[:decoded] / fps)
    assert start == pytest.approx(plan.start_s, abs=1e-9)
    assert end == pytest.approx((plan.indices[decoded - 1] + 1) / fps, abs=1e-6)
    assert end <= plan.end_s + 1e-6


@given(n=st.integers(2, 5_000), fps=st.floats(1.0, 120.0), config=sampling, data=st.data())
def test_timestamps_that_do_not_increase_fall_back_to_the_frame_rate(n, fps, config, data):
    plan = data.draw(st.sampled_from(plan_windows(n, fps, config)))
    assume(len(plan.indices) >= 2)
    broken = np.zeros(len(plan.indices))  # a container that reports no timestamps
    assert window_span(plan, broken) == pytest.approx((plan.start_s, plan.end_s))


def test_a_window_needs_between_one_and_all_of_its_timestamps():
    (plan,) = plan_windows(3, 30.0, SamplingConfig(frames_per_window=3))
    for bad in ([], [0.0, 0.1, 0.2, 0.3]):
        with pytest.raises(ValueError):
            window_span(plan, bad)
