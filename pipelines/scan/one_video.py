"""One video decoded and scored the scan's way, for ``deeptrust score`` and ``deeptrust bench``.

The scan splits the same path into its steps (``decode.decode_video``, then the detector over
batches, then ``inference.scored``); here they run back to back for a single video, so a video
scored alone gets the scan's size limit, its decoder (by default an isolated child process with
a time limit) and its verdict.
"""

from __future__ import annotations

import os
from pathlib import Path

from model.adaptive import AdaptiveSampling, score_videos
from model.config import DecisionConfig
from model.detector import Detector
from pipelines.scan.decode import decode_video
from pipelines.scan.decoders import Sampler
from pipelines.scan.inference import scored
from pipelines.scan.listing import VideoRef
from pipelines.scan.outcomes import Failed, Outcome


def local_ref(path: str | Path) -> VideoRef:
    """A reference to a local file, sized from the disk (no content version: nothing is stored)."""
    return VideoRef(str(path), "", os.path.getsize(path))


def score_video(
    ref: VideoRef,
    sampler: Sampler,
    detector: Detector,
    max_bytes: int,
    decision: DecisionConfig,
    adaptive: AdaptiveSampling | None = None,
) -> Outcome:
    """``ref`` decoded by ``sampler`` and scored by ``detector`` (on every window, or adaptively):
    Scored, or Failed with the reason the scan would give."""
    decoded = decode_video(ref, sampler, max_bytes)
    if isinstance(decoded, Failed):
        return decoded
    videos = [(decoded.frames, decoded.mask)]
    (windows,) = score_videos(detector.score_windows, videos, decision.threshold, adaptive)
    return scored(decoded.video, windows, decision)
