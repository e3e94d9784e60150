"""An exported detector (``deeptrust export``), run with LiteRT and NumPy alone.

This module imports no TensorFlow: an edge device installs ``ai-edge-litert`` and NumPy, copies
the export folder, and scores face-cropped windows (uint8 [W, T, S, S, 3] with masks [W, T], as
``export.json``'s ``sampling`` and ``face`` settings describe them) into the verdict a scan
gives. Finding and cropping the face is the device's own step: the scan's face detector (MTCNN)
runs in TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model.aggregate import video_score
from model.config import DecisionConfig
from model.hashing import sha256_file
from model.litert import LiteModel
from model.runtime import CPU_CHUNK_PER_REPLICA

EXPORT_MANIFEST = "export.json"
BACKBONE_LITE = "backbone.tflite"
HEAD_LITE = "head.tflite"


class EdgeDetector:
    """The exported backbone and head: windows -> fake probability per window, and a verdict."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        root = Path(folder)
        try:
            self.manifest: dict[str, Any] = json.loads((root / EXPORT_MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{root} is not a deeptrust export: {err}") from err
        for name in (BACKBONE_LITE, HEAD_LITE):
            expected = self.manifest["files"].get(name)
            if not (root / name).is_file() or sha256_file(root / name) != expected:
                raise ValueError(f"{root / name} is missing or does not match export.json")
        self.decision = DecisionConfig(**self.manifest["decision"])
        self._feature_dim = int(self.manifest["backbone"]["feature_dim"])
        self._backbone = LiteModel(root / BACKBONE_LITE, threads)
        self._head = LiteModel(root / HEAD_LITE, threads)

    def score_windows(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """uint8 frames [W, T, S, S, 3] and mask [W, T] -> fake probability per window [W]."""
        features = np.zeros((*mask.shape, self._feature_dim), np.float32)
        real = frames[mask]
        if len(real):
            features[mask] = np.concatenate(
                [
                    self._backbone(frames=real[i : i + CPU_CHUNK_PER_REPLICA])
                    for i in range(0, len(real), CPU_CHUNK_PER_REPLICA)
                ]
            )
        if len(features) == 0:
            return np.zeros(0, np.float32)
        return self._head(features=features, mask=mask).reshape(-1)

    def verdict(self, frames: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        """The video's score and flag from all its windows, as the scan aggregates them."""
        scores = self.score_windows(frames, mask)
        score = video_score(scores, self.decision)
        return {
            "score": round(score, 6),
            "flagged": bool(score >= self.decision.threshold),
            "threshold": self.decision.threshold,
            "window_scores": [round(float(s), 6) for s in scores],
            "model_version": self.manifest["model_version"],
        }
