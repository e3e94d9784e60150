"""MTCNN run as traced graphs finds exactly the faces the package's eager calls find."""

from __future__ import annotations

import cv2
import pytest

from model.config import FaceCropConfig
from model.faces import FaceDetector

pytestmark = pytest.mark.component

# Several sizes in a row: after the first few, the graphs relax to take any image size.
SIZES = ((512, 512), (320, 240), (240, 320), (200, 150))


def test_traced_mtcnn_finds_the_boxes_the_eager_one_finds():
    from mtcnn import MTCNN
    from skimage import data

    traced = FaceDetector(FaceCropConfig())._mtcnn
    eager = MTCNN(stages="face_detection_only")
    for size in SIZES:
        image = cv2.resize(data.astronaut(), size, interpolation=cv2.INTER_AREA)
        want = eager.detect_faces(image)
        got = traced.detect_faces(image)
        assert want, "the astronaut's face is found"
        assert [face["box"] for face in got] == [face["box"] for face in want]
        assert [face["confidence"] for face in got] == pytest.approx(
            [face["confidence"] for face in want], abs=1e-4
        )
