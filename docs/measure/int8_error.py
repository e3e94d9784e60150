"""Where int8's score error comes from: full int8 (calibrated) against weights-only int8.

Reproduces the "0.12 against 0.11" of docs/performance.md and tests/test_cheaper.py (measured
before the average-pool rewrite of model/avgpool.py, which full int8 now includes): on a
bundle, each quantization's largest window-score difference from float32 and its video AUC, over
a labelled corpus. If weights-only quantization (no calibration at all) moves the scores as much
as calibrated full int8, the error is the weights', and better calibration would not help.

    deeptrust synth /tmp/train --videos 16 --seed 1
    deeptrust synth /tmp/corpus --videos 12 --seed 1
    deeptrust train /tmp/train --out /tmp/bundle --backbone-weights random
    python docs/measure/int8_error.py /tmp/bundle /tmp/corpus

(The test bundle of tests/conftest.py, with its small 96-pixel settings, gave the quoted figures.)
"""

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from model.aggregate import video_score
from model.bundle import load_bundle, read_calibration
from model.detector import Detector
from model.litert import LiteModel
from model.metrics import roc_auc
from model.quantize import convert_backbone
from model.video import WindowSampler


def weights_only(backbone) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(backbone)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: weights only
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def main(bundle: str, corpus: str) -> None:
    detector, _ = load_bundle(bundle, precision="float32")
    sampler = WindowSampler(detector.config)
    videos = []
    for path in sorted(Path(corpus).rglob("*.mp4")):
        sampled = sampler.sample(str(path))
        videos.append((sampled.frames, sampled.mask, int(path.parent.name == "fake")))
    labels = np.array([label for *_, label in videos])
    decision = detector.config.decision

    def measure(model: Detector) -> tuple[list[np.ndarray], float]:
        windows = [model.score_windows(frames, mask) for frames, mask, _ in videos]
        return windows, roc_auc(labels, np.array([video_score(w, decision) for w in windows]))

    reference, auc = measure(detector)
    print(f"float32: video AUC {auc:.4f}")
    calibration = read_calibration(Path(bundle))
    for name, model in (
        ("full int8, calibrated", convert_backbone(detector.backbone, calibration)),
        ("weights-only int8", weights_only(detector.backbone)),
    ):
        lite = Detector(
            detector.config,
            detector.backbone,
            detector.head,
            detector.strategy,
            detector.weights_source,
            detector.runtime,
            LiteModel(model),
        )
        windows, auc = measure(lite)
        largest = max(np.abs(a - b).max() for a, b in zip(reference, windows, strict=True))
        print(f"{name}: largest window-score difference {largest:.3f}, video AUC {auc:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
