"""Face boxes with MTCNN, the prototype's detector (its weights ship inside the `mtcnn` wheel)."""

from __future__ import annotations

import cv2
import numpy as np

from model.config import FaceCropConfig
from model.frames import Box, downscale_factor, scale_box


class FaceDetector:
    """Finds the most prominent face on a frame, searching a downscaled copy for speed."""

    def __init__(self, config: FaceCropConfig) -> None:
        from mtcnn import MTCNN  # loads three small TF models: do it once, lazily

        self._config = config
        self._mtcnn = MTCNN(stages="face_detection_only")
        compile_stages(self._mtcnn)

    def largest_face(self, frame_rgb: np.ndarray) -> Box | None:
        """The largest confident face box in ``frame_rgb`` (original pixels), or None."""
        height, width = frame_rgb.shape[:2]
        factor = downscale_factor(width, height, self._config.detect_max_side)
        small = frame_rgb
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < 12:  # MTCNN's smallest proposal window
            return None
        found = self._mtcnn.detect_faces(np.ascontiguousarray(small))
        best: Box | None = None
        best_area = 0
        for face in found or []:
            if face.get("confidence", 0.0) < self._config.min_confidence:
                continue
            x, y, w, h = (int(v) for v in face["box"])
            if w * h > best_area:
                best_area = w * h
                best = (max(x, 0), max(y, 0), max(x, 0) + w, max(y, 0) + h)
        if best is None:
            return None
        return scale_box(best, 1.0 / factor)


def compile_stages(mtcnn) -> None:
    """Run each MTCNN network as a traced graph instead of layer by layer in eager mode.

    The ``mtcnn`` package calls its Keras networks eagerly, once per pyramid scale; tracing them
    gives the same boxes in about a third of the time. ``reduce_retracing`` lets the graphs take
    any image size after the first few, so new video resolutions do not trace again.
    """
    import tensorflow as tf

    for stage in mtcnn.stages:
        stage._model = tf.function(stage.model, reduce_retracing=True)
