"""Pure NumPy frame logic: which frames to sample, where to crop, how to pad.

Decoding lives in ``model.video``; these functions only do arithmetic on indices, boxes and
arrays, so they are cheap to test exhaustively.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.config import SamplingConfig

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


@dataclass(frozen=True)
class WindowPlan:
    """The frame indices of one window and the time span they cover."""

    indices: np.ndarray
    start_s: float
    end_s: float


def frame_step(fps: float, sample_fps: float) -> int:
    """Frames to advance between samples so that sampling runs at about ``sample_fps``."""
    if fps <= 0 or not math.isfinite(fps):
        return 1
    return max(1, round(fps / sample_fps))


def plan_windows(n_frames: int, fps: float, sampling: SamplingConfig) -> list[WindowPlan]:
    """Spread windows of ``frames_per_window`` sampled frames over the whole video.

    A window spans ``(T - 1) * step + 1`` source frames. Enough windows are placed to cover the
    video end to end (they may overlap), capped at ``max_windows``; past the cap, the windows are
    spaced evenly from the first frame to the last, so long videos are still seen throughout.
    A video shorter than one window gets a single, partly filled window.
    """
    if n_frames < 1:
        return []
    safe_fps = fps if fps > 0 and math.isfinite(fps) else sampling.sample_fps
    step = frame_step(safe_fps, sampling.sample_fps)
    t = sampling.frames_per_window
    span = (t - 1) * step + 1
    if n_frames <= span:
        starts = np.array([0])
    else:
        count = min(sampling.max_windows, math.ceil(n_frames / span))
        starts = np.round(np.linspace(0, n_frames - span, max(count, 1))).astype(int)
        starts = np.unique(starts)
    plans = []
    for start in starts:
        indices = np.arange(start, min(start + span, n_frames), step, dtype=np.int64)[:t]
        plans.append(
            WindowPlan(
                indices=indices,
                start_s=float(indices[0] / safe_fps),
                end_s=float((indices[-1] + 1) / safe_fps),
            )
        )
    return plans


def window_span(plan: WindowPlan, times_s: Sequence[float]) -> tuple[float, float]:
    """Start and end (seconds) of a window whose first ``len(times_s)`` frames were decoded.

    ``times_s`` are the decoded frames' timestamps. They keep variable-frame-rate videos right,
    where ``index / fps`` drifts from the real time. The end adds one frame's duration, measured
    on the window's last two frames. Timestamps that are not finite and increasing (a container
    without them) fall back to the plan's ``index / fps`` times.
    """
    if not 1 <= len(times_s) <= len(plan.indices):
        raise ValueError(f"{len(times_s)} timestamps for a window of {len(plan.indices)} frames")
    indices = plan.indices[: len(times_s)].astype(np.float64)
    times = np.asarray(times_s, dtype=np.float64)
    frame_s = (plan.end_s - plan.start_s) / (plan.indices[-1] - plan.indices[0] + 1)
    if not (np.isfinite(times).all() and times[0] >= 0 and (np.diff(times) > 0).all()):
        return plan.start_s, plan.start_s + float(indices[-1] - indices[0] + 1) * frame_s
    if len(times) >= 2:
        frame_s = (times[-1] - times[-2]) / (indices[-1] - indices[-2])
    return float(times[0]), float(times[-1] + frame_s)


def enlarge_box(box: Box, margin: float, width: int, height: int) -> Box:
    """A square around ``box``'s centre, ``margin`` times its longer side, kept inside the frame."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * margin
    side = round(min(side, width, height))
    side = max(side, 1)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left = round(cx - side / 2.0)
    top = round(cy - side / 2.0)
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, left + side, top + side


def center_box(width: int, height: int) -> Box:
    """The largest centred square: the fallback when no face is found."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def scale_box(box: Box, factor: float) -> Box:
    """Map a box found on a resized frame back to the original frame's pixels."""
    return tuple(round(v * factor) for v in box)  # type: ignore[return-value]


def crop(frame: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of ``frame`` inside ``box``."""
    x0, y0, x1, y1 = box
    return frame[y0:y1, x0:x1]


def pad_window(frames: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``frames`` into ``length`` slots, zero-filling the rest; returns frames and mask."""
    if not frames:
        raise ValueError("a window needs at least one frame")
    if len(frames) > length:
        raise ValueError(f"{len(frames)} frames do not fit a window of {length}")
    out = np.zeros((length, *frames[0].shape), dtype=frames[0].dtype)
    np.stack(frames, out=out[: len(frames)])
    mask = np.zeros(length, dtype=bool)
    mask[: len(frames)] = True
    return out, mask


def downscale_factor(width: int, height: int, max_side: int) -> float:
    """Factor (<= 1) that brings the longer side down to ``max_side``."""
    longest = max(width, height)
    return min(1.0, max_side / longest) if longest > 0 else 1.0
