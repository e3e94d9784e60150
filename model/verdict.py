"""One video's verdict from its window scores: the JSON shape shared by `score` and the scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from model.aggregate import segments, video_score
from model.config import DecisionConfig
from model.video import VideoInfo


def verdict(
    window_scores: Sequence[float],
    starts: Sequence[float],
    ends: Sequence[float],
    frames_analyzed: int,
    info: VideoInfo,
    decision: DecisionConfig,
) -> dict[str, Any]:
    """Score, flag and segments for one video, with its metadata."""
    score = video_score(window_scores, decision)
    return {
        "score": round(score, 6),
        "flagged": bool(score >= decision.threshold),
        "threshold": decision.threshold,
        "segments": segments(starts, ends, window_scores),
        "frames_analyzed": int(frames_analyzed),
        "duration_s": round(info.duration_s, 3),
        "width": info.width,
        "height": info.height,
        "fps": round(info.fps, 3),
    }
