"""Frame sampling, cropping and padding: the pure NumPy layer under the decoder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.config import SamplingConfig
from model.frames import (
    center_box,
    crop,
    downscale_factor,
    enlarge_box,
    frame_step,
    pad_window,
    plan_windows,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("fps", "sample_fps", "step"),
    [
        (30.0, 15.0, 2),
        (29.97, 15.0, 2),
        (60.0, 15.0, 4),
        (10.0, 15.0, 1),
        (0.0, 15.0, 1),
        (float("nan"), 15.0, 1),
        (25.0, 8.0, 3),
    ],
)
def test_frame_step(fps, sample_fps, step):
    assert frame_step(fps, sample_fps) == step


def test_prototype_window_shape():
    # 20 frames, every 2nd frame of a 30 fps clip: the prototype's input, now one of many windows.
    plans = plan_windows(300, 30.0, SamplingConfig(frames_per_window=20, sample_fps=15.0))
    first = plans[0]
    assert first.indices.tolist() == list(range(0, 40, 2))
    assert first.start_s == 0.0
    assert first.end_s == pytest.approx(39 / 30.0)


@pytest.mark.parametrize("minutes", [1, 10, 60])
def test_long_video_windows_span_whole_length(minutes):
    fps = 30.0
    n = int(minutes * 60 * fps)
    sampling = SamplingConfig(frames_per_window=20, sample_fps=15.0, max_windows=16)
    plans = plan_windows(n, fps, sampling)
    assert len(plans) == 16
    assert plans[0].start_s == 0.0
    assert plans[-1].end_s == pytest.approx(n / fps)
    starts = np.array([p.start_s for p in plans])
    gaps = np.diff(starts)
    assert gaps.min() == pytest.approx(gaps.max(), rel=0.01)  # evenly spread


def test_short_video_gets_one_partial_window():
    plans = plan_windows(7, 30.0, SamplingConfig(frames_per_window=20, sample_fps=15.0))
    assert len(plans) == 1
    assert plans[0].indices.tolist() == [0, 2, 4, 6]


def test_no_frames_no_windows():
    assert plan_windows(0, 30.0, SamplingConfig()) == []


def test_medium_video_is_covered_end_to_end():
    plans = plan_windows(90, 30.0, SamplingConfig(frames_per_window=20, sample_fps=15.0))
    assert len(plans) == 3  # ceil(90 / 39): windows overlap rather than leave a gap
    assert plans[-1].indices[-1] == 89


@given(
    n=st.integers(1, 200_000),
    fps=st.floats(1.0, 240.0),
    t=st.integers(1, 40),
    sample_fps=st.floats(1.0, 60.0),
    max_windows=st.integers(1, 32),
)
def test_plan_windows_properties(n, fps, t, sample_fps, max_windows):
    sampling = SamplingConfig(frames_per_window=t, sample_fps=sample_fps, max_windows=max_windows)
    plans = plan_windows(n, fps, sampling)
    assert 1 <= len(plans) <= max_windows
    assert plans[0].indices[0] == 0
    for plan in plans:
        assert 1 <= len(plan.indices) <= t
        assert plan.indices.min() >= 0 and plan.indices.max() < n
        assert np.all(np.diff(plan.indices) > 0)
        assert 0.0 <= plan.start_s < plan.end_s <= n / fps + 1e-9
    assert [p.start_s for p in plans] == sorted(p.start_s for p in plans)
    # With room for two windows or more, the last one reaches the end (within one step).
    if max_windows > 1:
        assert n - 1 - plans[-1].indices[-1] < frame_step(fps, sample_fps)


@pytest.mark.parametrize(
    ("box", "margin", "size", "expected"),
    [
        ((40, 40, 60, 60), 1.3, (200, 100), (37, 37, 63, 63)),
        ((0, 0, 20, 30), 1.3, (200, 100), (0, 0, 39, 39)),  # clamped into the frame
        ((180, 80, 200, 100), 2.0, (200, 100), (160, 60, 200, 100)),
        ((10, 10, 190, 90), 1.3, (200, 100), (50, 0, 150, 100)),  # at most the frame height
    ],
)
def test_enlarge_box(box, margin, size, expected):
    assert enlarge_box(box, margin, *size) == expected


@given(
    x0=st.integers(0, 500),
    y0=st.integers(0, 500),
    w=st.integers(1, 400),
    h=st.integers(1, 400),
    margin=st.floats(1.0, 3.0),
    width=st.integers(1, 1000),
    height=st.integers(1, 1000),
)
def test_enlarged_box_is_a_square_inside_the_frame(x0, y0, w, h, margin, width, height):
    left, top, right, bottom = enlarge_box((x0, y0, x0 + w, y0 + h), margin, width, height)
    assert right - left == bottom - top >= 1
    assert left >= 0 and top >= 0 and right <= width and bottom <= height


@pytest.mark.parametrize(
    ("size", "expected"),
    [((640, 480), (80, 0, 560, 480)), ((480, 640), (0, 80, 480, 560)), ((16, 16), (0, 0, 16, 16))],
)
def test_center_box(size, expected):
    assert center_box(*size) == expected


def test_crop_takes_box_pixels():
    frame = np.arange(5 * 6 * 3).reshape(5, 6, 3)
    assert crop(frame, (1, 2, 4, 5)).shape == (3, 3, 3)
    assert crop(frame, (1, 2, 4, 5))[0, 0, 0] == frame[2, 1, 0]


def test_pad_window_masks_missing_frames():
    frames = [np.full((4, 4, 3), i, np.uint8) for i in (1, 2, 3)]
    stacked, mask = pad_window(frames, 5)
    assert stacked.shape == (5, 4, 4, 3)
    assert mask.tolist() == [True, True, True, False, False]
    assert stacked[2].max() == 3 and stacked[3:].max() == 0


@pytest.mark.parametrize("count", [0, 6])
def test_pad_window_rejects_bad_lengths(count):
    frames = [np.zeros((2, 2, 3), np.uint8)] * count
    with pytest.raises(ValueError):
        pad_window(frames, 5)


@pytest.mark.parametrize(
    ("size", "max_side", "factor"), [((1920, 1080), 320, 1 / 6), ((160, 120), 320, 1.0)]
)
def test_downscale_factor(size, max_side, factor):
    assert downscale_factor(*size, max_side) == pytest.approx(factor)
