"""Backbone features per video, extracted in batches that span videos, and cached on disk.

Retraining the head (new threshold, new epochs, a platform's extra labels) should not pay for
the backbone again: features are stored per (video bytes, backbone weights, sampling settings).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.detector import Detector
from model.errors import VideoError
from model.hashing import sha256_file
from model.video import VideoInfo, Window, WindowSampler


@dataclass
class VideoFeatures:
    """Everything the head and the verdict need from one video."""

    features: np.ndarray  # [W, T, D] float32, zero where masked
    mask: np.ndarray  # [W, T] bool
    starts: np.ndarray  # [W] seconds
    ends: np.ndarray  # [W] seconds
    face_sources: list[str]
    info: VideoInfo

    @property
    def frames_analyzed(self) -> int:
        return int(self.mask.sum())

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            features=self.features.astype(np.float16),
            mask=self.mask,
            starts=self.starts,
            ends=self.ends,
            face_sources=np.array(self.face_sources),
            info=np.array(
                [self.info.fps, self.info.frame_count, self.info.width, self.info.height]
            ),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> VideoFeatures:
        with np.load(path) as data:
            fps, count, width, height = data["info"].tolist()
            return cls(
                features=data["features"].astype(np.float32),
                mask=data["mask"],
                starts=data["starts"],
                ends=data["ends"],
                face_sources=[str(s) for s in data["face_sources"]],
                info=VideoInfo(float(fps), int(count), int(width), int(height)),
            )


def detector_fingerprint(detector: Detector) -> str:
    """Identifies what the features depend on: backbone weights and how frames are sampled."""
    digest = hashlib.sha256()
    for weight in detector.backbone.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    cfg = detector.config
    settings = {"sampling": cfg.sampling, "face": cfg.face, "backbone": cfg.backbone}
    digest.update(json.dumps(settings, default=repr, sort_keys=True).encode())
    return digest.hexdigest()[:20]


class FeatureExtractor:
    """Decodes videos into windows and runs the backbone over many videos' frames at once."""

    def __init__(
        self,
        detector: Detector,
        sampler: WindowSampler,
        cache_dir: str | Path | None = None,
        batch_frames: int = 256,
    ) -> None:
        self._detector = detector
        self._sampler = sampler
        self._batch_frames = batch_frames
        self._cache: Path | None = None
        if cache_dir is not None:
            self._cache = Path(cache_dir) / detector_fingerprint(detector)
            self._cache.mkdir(parents=True, exist_ok=True)

    def extract(
        self, paths: Iterable[str], progress: Callable[[str], None] | None = None
    ) -> dict[str, VideoFeatures | VideoError]:
        """Features for every path; a video that cannot be decoded maps to its VideoError."""
        paths = list(paths)
        results: dict[str, VideoFeatures | VideoError] = {}
        queue: list[tuple[str, Path | None, VideoInfo, list[Window]]] = []
        queued_frames = 0
        for done, path in enumerate(paths, start=1):
            cached = self._cache_path(path)
            if cached is not None and cached.is_file():
                results[path] = VideoFeatures.load(cached)
            else:
                try:
                    info, windows = self._sampler.open(path)
                    window_list = list(windows)
                    if not window_list:
                        raise VideoError("no_frames", "no frame of the sampled windows decoded")
                except VideoError as err:
                    results[path] = err
                else:
                    queue.append((path, cached, info, window_list))
                    queued_frames += sum(int(w.mask.sum()) for w in window_list)
                    if queued_frames >= self._batch_frames:
                        results.update(self._flush(queue))
                        queue, queued_frames = [], 0
            if progress is not None:
                progress(f"features: {done}/{len(paths)} videos")
        results.update(self._flush(queue))
        return {path: results[path] for path in paths}

    def _cache_path(self, path: str) -> Path | None:
        if self._cache is None:
            return None
        return self._cache / f"{sha256_file(path)}.npz"

    def _flush(self, queue) -> dict[str, VideoFeatures]:
        if not queue:
            return {}
        frames = np.concatenate([np.stack([w.frames for w in ws]) for _, _, _, ws in queue])
        mask = np.concatenate([np.stack([w.mask for w in ws]) for _, _, _, ws in queue])
        features = self._detector.window_features(frames, mask)
        out = {}
        offset = 0
        for path, cached, info, windows in queue:
            n = len(windows)
            item = VideoFeatures(
                features=features[offset : offset + n],
                mask=mask[offset : offset + n],
                starts=np.array([w.start_s for w in windows]),
                ends=np.array([w.end_s for w in windows]),
                face_sources=[w.face_source for w in windows],
                info=info,
            )
            offset += n
            if cached is not None:
                item.save(cached)
            out[path] = item
        return out
