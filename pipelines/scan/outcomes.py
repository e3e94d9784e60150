"""What became of one video: scored with a verdict, or failed with a reason.

The scan's steps, ``deeptrust score`` and ``deeptrust bench`` pass these small typed values;
only the writer (``pipelines.scan.writing``) turns them into ``moderation_results`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.scan.listing import VideoRef


@dataclass(frozen=True)
class Scored:
    """A video the detector scored: ``verdict`` is ``model.verdict.verdict``'s body."""

    ref: VideoRef
    verdict: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """A video that could not be scored: ``reason`` is the error code, ``detail`` says why."""

    ref: VideoRef
    reason: str
    detail: str


Outcome = Scored | Failed
