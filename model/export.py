"""``deeptrust export``: a bundle's detector as LiteRT files for edge devices, checked.

The folder holds ``backbone.tflite`` (int8, calibrated on the bundle's own frames, or float32),
``head.tflite`` (float32, its LSTMs unrolled: see ``model.quantize``) and ``export.json`` (the
sampling, face-crop and decision settings, the model version, and each file's sha256). Before
it returns, the export is run in LiteRT (``model.edge``) on windows made of the bundle's
calibration frames and compared with the bundle's own float32 scores; the largest difference is
recorded.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import check_precision, load_bundle, read_calibration
from model.edge import BACKBONE_LITE, EXPORT_MANIFEST, HEAD_LITE, EdgeDetector
from model.hashing import sha256_file
from model.quantize import convert_backbone, convert_head, write_atomically
from model.runtime import FLOAT32, INT8, scored_version
from model.storage import fetch_tree, is_s3

LITERT = "litert"


def check_windows(calibration: np.ndarray, frames_per_window: int) -> tuple[np.ndarray, np.ndarray]:
    """The calibration frames cut into windows (the last one padded): the export's check input."""
    count = -(-len(calibration) // frames_per_window)
    frames = np.zeros((count * frames_per_window, *calibration.shape[1:]), np.uint8)
    frames[: len(calibration)] = calibration
    mask = np.arange(len(frames)) < len(calibration)
    shape = (count, frames_per_window)
    return frames.reshape(*shape, *calibration.shape[1:]), mask.reshape(shape)


def export_bundle(uri: str, out: str | Path, int8: bool = False) -> dict[str, Any]:
    """Write the LiteRT export of the bundle at ``uri`` to ``out``; returns export.json."""
    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix="deeptrust-export-") as tmp:
            return _export(fetch_tree(uri, tmp), Path(out), int8)
    return _export(Path(uri), Path(out), int8)


def _export(root: Path, out: Path, int8: bool) -> dict[str, Any]:
    detector, manifest = load_bundle(str(root), precision=FLOAT32)
    check_precision(manifest, INT8)  # the check windows come from the calibration frames
    calibration = read_calibration(root)
    write_atomically(
        out / BACKBONE_LITE, convert_backbone(detector.backbone, calibration if int8 else None)
    )
    write_atomically(out / HEAD_LITE, convert_head(detector.head))
    config = detector.config
    settings = config.to_dict()
    body: dict[str, Any] = {
        "format": LITERT,
        "model_version": scored_version(manifest["model_version"], INT8 if int8 else FLOAT32),
        "bundle_version": manifest["model_version"],
        "backbone_precision": INT8 if int8 else FLOAT32,
        "head_precision": FLOAT32,
        "backbone": {
            **settings["backbone"],
            "weights_label": manifest["backbone"]["weights_label"],
        },
        **{part: settings[part] for part in ("sampling", "face", "decision")},
        "files": {name: sha256_file(out / name) for name in (BACKBONE_LITE, HEAD_LITE)},
    }
    write_atomically(out / EXPORT_MANIFEST, (json.dumps(body, indent=2) + "\n").encode())
    frames, mask = check_windows(calibration, config.sampling.frames_per_window)
    expected = detector.score_windows(frames, mask)
    got = EdgeDetector(out).score_windows(frames, mask)
    body["check"] = {
        "windows": len(frames),
        "max_score_difference": round(float(np.abs(expected - got).max()), 6),
    }
    write_atomically(out / EXPORT_MANIFEST, (json.dumps(body, indent=2) + "\n").encode())
    return body
