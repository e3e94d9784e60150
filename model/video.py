"""Decode a video with OpenCV and cut it into face-cropped windows.

Decoding streams: frames are read in order and only the sampled ones are kept, until the window
they belong to is complete. No array ever holds a whole video, so memory does not grow with its
length. Long gaps between windows are skipped by seeking rather than decoding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from model.config import DetectorConfig
from model.errors import VideoError
from model.faces import FaceDetector
from model.frames import Box, WindowPlan, center_box, crop, enlarge_box, pad_window, plan_windows

# Seeking costs a keyframe decode; below this many frames, decoding forward is cheaper.
SEEK_MIN_GAP_FRAMES = 48


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


def _open(path: str) -> cv2.VideoCapture:
    if not os.path.exists(path):
        raise VideoError("not_found", f"{path} does not exist")
    if os.path.getsize(path) == 0:
        raise VideoError("empty_file", f"{path} is zero bytes")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise VideoError("unreadable", f"OpenCV could not open {path} as a video")
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


def _iter_frames(
    capture: cv2.VideoCapture, plans: list[WindowPlan]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, BGR frame) for every sampled index, in order, seeking over long gaps."""
    wanted = np.unique(np.concatenate([p.indices for p in plans]))
    position = 0
    for index in wanted:
        if index - position >= SEEK_MIN_GAP_FRAMES:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            position = int(index)
        while position < index:
            if not capture.grab():
                return
            position += 1
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        position += 1
        yield int(index), frame


class WindowSampler:
    """Turns a video file into model-ready windows, as the bundle's settings say."""

    def __init__(self, config: DetectorConfig, faces: FaceDetector | None = None) -> None:
        self._config = config
        self._faces = faces
        if faces is None and config.face.enabled:
            self._faces = FaceDetector(config.face)

    def open(self, path: str) -> tuple[VideoInfo, Iterator[Window]]:
        """Probe ``path`` and return its metadata with a lazy iterator over its windows."""
        capture = _open(path)
        try:
            fps, count = probe(capture)
            ok, first = capture.read()
            if not ok or first is None:
                raise VideoError("no_frames", "the first frame could not be decoded")
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        except Exception:
            capture.release()
            raise
        height, width = first.shape[:2]
        info = VideoInfo(fps=fps, frame_count=count, width=width, height=height)
        plans = plan_windows(count, fps, self._config.sampling)
        return info, self._windows(capture, plans, info)

    def _windows(
        self, capture: cv2.VideoCapture, plans: list[WindowPlan], info: VideoInfo
    ) -> Iterator[Window]:
        previous_box: Box | None = None
        pending: dict[int, np.ndarray] = {}
        remaining = list(plans)
        try:
            for index, bgr in _iter_frames(capture, plans):
                pending[index] = bgr
                while remaining and int(remaining[0].indices[-1]) <= index:
                    window, previous_box = self._make_window(
                        remaining.pop(0), pending, previous_box, info
                    )
                    if window is not None:
                        yield window
                    keep_from = int(remaining[0].indices[0]) if remaining else index + 1
                    pending = {i: f for i, f in pending.items() if i >= keep_from}
            # The header promised more frames than the stream holds: keep what was decoded.
            for plan in remaining:
                window, previous_box = self._make_window(plan, pending, previous_box, info)
                if window is not None:
                    yield window
        finally:
            capture.release()

    def _make_window(
        self,
        plan: WindowPlan,
        decoded: dict[int, np.ndarray],
        previous_box: Box | None,
        info: VideoInfo,
    ) -> tuple[Window | None, Box | None]:
        indices = [i for i in plan.indices.tolist() if i in decoded]
        if not indices:
            return None, previous_box
        end_s = plan.end_s
        if indices[-1] != int(plan.indices[-1]) and info.fps > 0:
            end_s = (indices[-1] + 1) / info.fps
        rgb = [cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB) for i in indices]
        box, source = self._face_box(rgb[0], previous_box, info.width, info.height)
        size = self._config.backbone.input_size
        resized = [
            cv2.resize(crop(f, box), (size, size), interpolation=cv2.INTER_AREA) for f in rgb
        ]
        stacked, mask = pad_window(resized, self._config.sampling.frames_per_window)
        window = Window(stacked, mask, plan.start_s, end_s, source)
        return window, (box if source != "center" else previous_box)

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
