"""Decode a video with OpenCV and cut it into face-cropped windows.

Decoding streams: frames are read in order, and each sampled frame is cropped and resized into
the windows it belongs to as soon as it is decoded. No array ever holds a whole video, nor more
than one full-resolution frame, so memory grows neither with a video's length nor with its
resolution. Long gaps between windows are skipped by seeking rather than decoding, for as long
as seeking pays: a seek decodes from the keyframe before its target, so in a file with few
keyframes every seek decodes from near the start again (100,000 frames at 1000 fps with one
keyframe took minutes). A ``SeekBudget`` compares what seeks cost with what decoding their gaps
forward would have cost, and once seeking has cost more, the rest of the video is decoded
forward: sampling then costs at most a few decodes of the whole video, never one per sampled
frame. Window times come from the frames' timestamps, so variable-frame-rate videos get their
real times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from model.config import DetectorConfig
from model.container import HEAD_BYTES, image_format, mp4_problem
from model.errors import VideoError
from model.faces import FaceDetector
from model.fingerprint import Fingerprint, hash_frame, hash_indices
from model.frames import (
    Box,
    WindowPlan,
    center_box,
    crop,
    enlarge_box,
    pad_window,
    plan_windows,
    window_span,
)

# Seeking costs a keyframe decode; below this many frames, decoding forward is cheaper.
SEEK_MIN_GAP_FRAMES = 48
# Seeks made before their cost is judged, and how many times the forward decode of the frames
# they skipped they may cost in all before the rest of the video is decoded forward instead.
SEEKS_BEFORE_JUDGING = 3
SEEK_LOSS_FACTOR = 2.0


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class Window:
    """One model input: ``frames`` is uint8 RGB [T, S, S, 3], ``mask`` marks real frames."""

    frames: np.ndarray
    mask: np.ndarray
    start_s: float
    end_s: float
    face_source: str  # "mtcnn", "previous" (box carried from an earlier window) or "center"


@dataclass(frozen=True)
class SampledVideo:
    """A whole video's windows, stacked: frames [W, T, S, S, 3] uint8, mask [W, T], times [W]."""

    info: VideoInfo
    frames: np.ndarray
    mask: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    fingerprint: Fingerprint | None = None  # when the sampler hashes frames


@dataclass
class _Filling:
    """A window whose first frame has been decoded: its face box and the crops so far."""

    plan: WindowPlan
    box: Box
    face_source: str
    crops: list[np.ndarray]
    times: list[float]


def _open(path: str) -> cv2.VideoCapture:
    if not os.path.exists(path):
        raise VideoError("not_found", f"{path} does not exist")
    if os.path.getsize(path) == 0:
        raise VideoError("empty_file", f"{path} is zero bytes")
    with open(path, "rb") as handle:
        image = image_format(handle.read(HEAD_BYTES))
    if image is not None:  # FFmpeg opens a still image as a one-frame video
        raise VideoError("not_a_video", f"{path} is a {image} image, not a video")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        code, detail = mp4_problem(path) or ("unreadable", "OpenCV could not open it as a video")
        raise VideoError(code, f"{path}: {detail}")
    return capture


def _count_frames(capture: cv2.VideoCapture) -> int:
    """Count by decoding, for containers whose header gives no usable frame count."""
    count = 0
    while capture.grab():
        count += 1
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return count


def probe(capture: cv2.VideoCapture) -> tuple[float, int]:
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if count <= 0:
        count = _count_frames(capture)
    if count <= 0:
        raise VideoError("no_frames", "the file holds no decodable video frames")
    return fps, count


@dataclass
class SeekBudget:
    """Whether seeking still pays on one video, from what seeks and forward decoding have cost.

    A seek that lands on a keyframe just before its target costs a few frames' decode; in a file
    whose keyframes are far apart it costs the decode of every frame since the last keyframe,
    more than decoding forward over the gap would. Once the seeks made so far (at least
    ``SEEKS_BEFORE_JUDGING``) have cost more than ``SEEK_LOSS_FACTOR`` times the forward decode
    of the frames they skipped, seeking stops for good.
    """

    frames: int = 0
    frames_s: float = 0.0
    seeks: int = 0
    skipped: int = 0
    seeks_s: float = 0.0
    stopped: bool = False

    def decoded(self, frames: int, seconds: float) -> None:
        """``frames`` frames were decoded forward in ``seconds``."""
        self.frames += frames
        self.frames_s += seconds

    def sought(self, skipped: int, seconds: float) -> None:
        """A seek over ``skipped`` frames took ``seconds``."""
        self.seeks += 1
        self.skipped += skipped
        self.seeks_s += seconds
        if self.seeks >= SEEKS_BEFORE_JUDGING and self.frames > 0:
            forward_s = self.skipped * self.frames_s / self.frames
            self.stopped = self.seeks_s > SEEK_LOSS_FACTOR * forward_s

    def seek_over(self, gap: int) -> bool:
        """Whether to seek over ``gap`` frames rather than decode them."""
        return gap >= SEEK_MIN_GAP_FRAMES and not self.stopped


def _iter_frames(
    capture: cv2.VideoCapture, plans: list[WindowPlan], first: np.ndarray, hashed: np.ndarray
) -> Iterator[tuple[int, np.ndarray, float]]:
    """Yield (index, BGR frame, seconds) for every sampled or ``hashed`` index, in order,
    seeking over gaps.

    ``first`` is frame 0, just read: every plan starts there, and seeking back to it instead
    fails on some files (a one-frame video among them). Times count from frame 0's timestamp.
    Seeks stop when they cost more than decoding forward (``SeekBudget``).
    """
    origin_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
    yield 0, first, 0.0
    wanted = np.unique(np.concatenate([*(p.indices for p in plans), hashed]))
    budget = SeekBudget()
    position = 1
    for index in wanted[wanted > 0]:
        started = time.perf_counter()
        if budget.seek_over(int(index) - position):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            budget.sought(int(index) - position, time.perf_counter() - started)
            position = int(index)
        grabbed = 0
        while position < index:
            if not capture.grab():
                return
            position += 1
            grabbed += 1
        started = time.perf_counter() if grabbed == 0 else started
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        position += 1
        budget.decoded(grabbed + 1, time.perf_counter() - started)
        yield int(index), frame, (capture.get(cv2.CAP_PROP_POS_MSEC) - origin_ms) / 1000.0


class WindowSampler:
    """Turns a video file into model-ready windows, as the bundle's settings say.

    With ``fingerprint``, ``sample`` also hashes one frame a second (``model.fingerprint``) as
    it decodes, for matching against known videos: what the scan's decoders do.
    """

    def __init__(
        self,
        config: DetectorConfig,
        faces: FaceDetector | None = None,
        *,
        fingerprint: bool = False,
    ) -> None:
        self._config = config
        self._faces = faces
        self._fingerprint = fingerprint
        if faces is None and config.face.enabled:
            self._faces = FaceDetector(config.face)

    def open(self, path: str, hashed: list | None = None) -> tuple[VideoInfo, Iterator[Window]]:
        """Probe ``path`` and return its metadata with a lazy iterator over its windows.

        With a ``hashed`` list, each frame of ``model.fingerprint.hash_indices`` is hashed into
        it, as (hash, mirrored hash, quality, time), while the windows are read."""
        capture = _open(path)
        try:
            fps, count = probe(capture)
            ok, first = capture.read()
            if not ok or first is None:
                raise VideoError("no_frames", "the first frame could not be decoded")
        except Exception:
            capture.release()
            raise
        height, width = first.shape[:2]
        info = VideoInfo(fps=fps, frame_count=count, width=width, height=height)
        plans = plan_windows(count, fps, self._config.sampling)
        return info, self._windows(capture, plans, info, first, hashed)

    def sample(self, path: str) -> SampledVideo:
        """All of ``path``'s windows, stacked (at least the first: ``open`` decoded frame 0),
        and its fingerprint when the sampler hashes frames."""
        hashed: list | None = [] if self._fingerprint else None
        info, windows = self.open(path, hashed)
        clips = list(windows)
        return SampledVideo(
            info=info,
            frames=np.stack([w.frames for w in clips]),
            mask=np.stack([w.mask for w in clips]),
            starts=np.array([w.start_s for w in clips]),
            ends=np.array([w.end_s for w in clips]),
            fingerprint=None if hashed is None else Fingerprint.stack(hashed),
        )

    def _windows(
        self,
        capture: cv2.VideoCapture,
        plans: list[WindowPlan],
        info: VideoInfo,
        first: np.ndarray,
        hashed: list | None,
    ) -> Iterator[Window]:
        previous_box: Box | None = None
        upcoming = list(plans)
        filling: list[_Filling] = []
        to_hash = np.zeros(0, np.int64)
        if hashed is not None:
            to_hash = hash_indices(info.frame_count, info.fps)
        hash_at = set(to_hash.tolist())
        try:
            for index, bgr, time_s in _iter_frames(capture, plans, first, to_hash):
                if hashed is not None and index in hash_at:
                    hashed.append((*hash_frame(bgr), time_s))
                # Windows open in plan order, so each one's box can fall back on the last's.
                while upcoming and int(upcoming[0].indices[0]) == index:
                    plan = upcoming.pop(0)
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    box, source = self._face_box(rgb, previous_box, info.width, info.height)
                    previous_box = box if source != "center" else previous_box
                    filling.append(_Filling(plan, box, source, [], []))
                for window in filling:
                    if index in window.plan.indices:
                        window.crops.append(self._crop(bgr, window.box))
                        window.times.append(time_s)
                while filling and int(filling[0].plan.indices[-1]) <= index:
                    yield self._finish(filling.pop(0))
            # The header promised more frames than the stream holds: keep what was decoded.
            for window in filling:
                yield self._finish(window)
        finally:
            capture.release()

    def _crop(self, bgr: np.ndarray, box: Box) -> np.ndarray:
        size = self._config.backbone.input_size
        rgb = cv2.cvtColor(crop(bgr, box), cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)

    def _finish(self, window: _Filling) -> Window:
        stacked, mask = pad_window(window.crops, self._config.sampling.frames_per_window)
        start_s, end_s = window_span(window.plan, window.times)
        return Window(stacked, mask, start_s, end_s, window.face_source)

    def _face_box(
        self, frame_rgb: np.ndarray, previous_box: Box | None, width: int, height: int
    ) -> tuple[Box, str]:
        if self._faces is not None:
            found = self._faces.largest_face(frame_rgb)
            if found is not None:
                return enlarge_box(found, self._config.face.margin, width, height), "mtcnn"
            if previous_box is not None:
                return previous_box, "previous"
        return center_box(width, height), "center"
