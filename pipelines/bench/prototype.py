"""The research prototype's scoring loop, kept as the baseline that ``deeptrust bench`` beats.

The prototype read the first frames of a video (every 2nd frame from the start), ran MTCNN on
the first of them and reused that one box, resized each crop to the backbone's input size, and
called ``model.predict`` on one frame at a time before the LSTM head saw the sequence. It looked
at the first second or so of a video and nothing after. This module does exactly that, with
this project's backbone and head, so the bench compares loops rather than models.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.detector import Detector
from model.errors import VideoError
from model.frames import Box, center_box, crop, pad_window

# The prototype sampled every 2nd frame from the start, whatever the frame rate.
PROTOTYPE_STEP = 2


def first_frames(path: str, count: int, step: int = PROTOTYPE_STEP) -> list[np.ndarray]:
    """Up to ``count`` RGB frames: every ``step``-th frame from the start, decoded in order."""
    capture = cv2.VideoCapture(path)
    frames: list[np.ndarray] = []
    try:
        index = 0
        while len(frames) < count:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise VideoError("no_frames", f"{path}: no frame could be decoded")
    return frames


def prototype_box(mtcnn, frame_rgb: np.ndarray) -> Box:
    """The most confident MTCNN face on the full frame, or the centre square when none."""
    faces = mtcnn.detect_faces(frame_rgb)
    height, width = frame_rgb.shape[:2]
    if not faces:
        return center_box(width, height)
    x, y, w, h = (max(int(v), 0) for v in max(faces, key=lambda f: f["confidence"])["box"])
    return x, y, min(x + w, width), min(y + h, height)


def prototype_score(path: str, detector: Detector, mtcnn) -> tuple[float, int]:
    """The prototype's verdict for ``path``: (fake probability, frames fed to the model)."""
    length = detector.config.sampling.frames_per_window
    size = detector.config.backbone.input_size
    frames = first_frames(path, length)
    box = prototype_box(mtcnn, frames[0])
    features = [
        detector.backbone.predict(
            cv2.resize(crop(frame, box), (size, size), interpolation=cv2.INTER_AREA)[None],
            verbose=0,
        )[0]
        for frame in frames
    ]
    sequence, mask = pad_window(features, length)
    score = detector.head.predict([sequence[None], mask[None]], verbose=0)
    return float(np.asarray(score).reshape(-1)[0]), len(frames)
