"""What became of one video: scored with a verdict, matched to a known fake, or failed.

The scan's steps, ``deeptrust score`` and ``deeptrust bench`` pass these small typed values;
only the writer (``pipelines.scan.writing``) turns them into ``moderation_results`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.fingerprint import Fingerprint
from model.video import VideoInfo
from pipelines.scan.listing import VideoRef
from pipelines.scan.matching import BankMatch


@dataclass(frozen=True)
class Scored:
    """A video the detector scored: ``verdict`` is ``model.verdict.verdict``'s body;
    ``fingerprint`` its perceptual hashes, kept when it is flagged."""

    ref: VideoRef
    verdict: dict[str, Any]
    fingerprint: Fingerprint | None = None


@dataclass(frozen=True)
class Matched:
    """A video that matched a known fake in the bank: flagged without a model call."""

    ref: VideoRef
    info: VideoInfo
    match: BankMatch
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Failed:
    """A video that could not be scored: ``reason`` is the error code, ``detail`` says why."""

    ref: VideoRef
    reason: str
    detail: str


Outcome = Scored | Matched | Failed
