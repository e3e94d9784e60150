"""The face's outline on a crop, for self-blended training fakes.

MTCNN's five landmarks (eyes, nose tip, mouth corners) come from the prototype's own face
detector, whose weights ship inside the ``mtcnn`` wheel (MIT licence). Five points do not trace a
jaw, so the outline is drawn from the proportions of a face around them: an ellipse from the
brows to the chin and from cheek to cheek, oriented along the line from the eyes to the mouth,
joined with the five points. ``docs/training.md`` says why this model was chosen over a
468-point face mesh.

When MTCNN finds no face on a crop, the outline falls back on the crop's geometry: the scan crops
``margin`` times the detected box around its centre, so the face fills the middle of the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.faces import compile_stages

OUTLINE_VERTICES = 24
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# Face proportions around the landmarks, in units of the eyes-to-mouth distance (height) and
# of the distance between the eyes (width).
BROW_ABOVE_EYES = 0.55
CHIN_BELOW_MOUTH = 0.8
HALF_WIDTH = 1.0


@dataclass(frozen=True)
class Outline:
    """A face outline in crop pixels ([K, 2] x, y), and where it came from."""

    points: np.ndarray
    source: str  # "landmarks" or "geometry"


def outline_from_keypoints(points: np.ndarray) -> np.ndarray:
    """[5, 2] keypoints (``KEYPOINTS`` order) -> [OUTLINE_VERTICES, 2] outline vertices."""
    left_eye, right_eye, _, mouth_left, mouth_right = points.astype(np.float64)
    eyes = (left_eye + right_eye) / 2.0
    mouth = (mouth_left + mouth_right) / 2.0
    down = mouth - eyes
    height = max(float(np.linalg.norm(down)), 1.0)
    down /= height
    across = np.array([-down[1], down[0]])
    width = max(float(np.linalg.norm(right_eye - left_eye)), height * 0.5)
    top = eyes - BROW_ABOVE_EYES * height * down
    bottom = mouth + CHIN_BELOW_MOUTH * height * down
    centre = (top + bottom) / 2.0
    half_height = float(np.linalg.norm(bottom - top)) / 2.0
    half_width = HALF_WIDTH * width
    angles = np.linspace(0.0, 2.0 * np.pi, OUTLINE_VERTICES, endpoint=False)
    return (
        centre
        + np.cos(angles)[:, None] * half_width * across
        + np.sin(angles)[:, None] * half_height * down
    )


def outline_from_geometry(size: int, margin: float) -> np.ndarray:
    """The outline of a face that fills ``1 / margin`` of a square crop, centred."""
    half = size / (2.0 * max(margin, 1.0))
    angles = np.linspace(0.0, 2.0 * np.pi, OUTLINE_VERTICES, endpoint=False)
    centre = np.array([size / 2.0, size / 2.0 + 0.1 * half])
    return centre + np.stack([np.cos(angles) * 0.8 * half, np.sin(angles) * 1.0 * half], axis=1)


class LandmarkFinder:
    """MTCNN with its landmark stage, on face crops."""

    def __init__(self, min_confidence: float = 0.9) -> None:
        from mtcnn import MTCNN  # loads three small TF models: do it once, lazily

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection")
        compile_stages(self._mtcnn)
        self._min_confidence = min_confidence

    def outline(self, crop_rgb: np.ndarray, margin: float) -> Outline:
        """The outline of the most confident face on ``crop_rgb``, or the crop's geometry."""
        found = self._mtcnn.detect_faces(np.ascontiguousarray(crop_rgb))
        faces = [f for f in found or [] if f.get("confidence", 0.0) >= self._min_confidence]
        if faces:
            best = max(faces, key=lambda f: f["box"][2] * f["box"][3])
            points = np.array([best["keypoints"][k] for k in KEYPOINTS], np.float64)
            return Outline(outline_from_keypoints(points), "landmarks")
        return Outline(outline_from_geometry(crop_rgb.shape[0], margin), "geometry")
