"""Score window batches with RunInference and turn each video's window scores into its verdict.

``WindowModelHandler`` loads the bundle once per worker process (RunInference keeps the model
in a shared handle that all threads of the process use). The bundle builds its detector under
the tf.distribute strategy that spans the local GPUs. A batch is a list of videos; their windows
go through the detector together, in model calls of at most ``max_batch_windows`` windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from model.adaptive import AdaptiveSampling, WindowScores, score_videos
from model.bundle import load_bundle
from model.config import DecisionConfig
from model.detector import Detector
from model.errors import BundleError
from model.runtime import FLOAT32
from model.verdict import verdict
from pipelines.scan import metrics
from pipelines.scan.decode import DecodedVideo, VideoClip
from pipelines.scan.outcomes import Scored


class WindowModelHandler(ModelHandler[VideoClip, PredictionResult, Future[Detector]]):
    """VideoClips -> one PredictionResult per video, holding its WindowScores.

    ``model_version`` is the bundle's; ``adaptive`` turns adaptive sampling on."""

    def __init__(
        self,
        bundle_uri: str,
        model_version: str,
        max_batch_windows: int,
        precision: str = FLOAT32,
        adaptive: AdaptiveSampling | None = None,
    ) -> None:
        if max_batch_windows < 1:
            raise ValueError("max_batch_windows must be at least 1")
        self._bundle_uri = bundle_uri
        self._model_version = model_version
        self._max_batch_windows = max_batch_windows
        self._precision = precision
        self._adaptive = adaptive
        self._windows_scored = metrics.distribution("windows_per_verdict")
        self._batch_windows = metrics.distribution("inference_batch_windows")
        self._inference_ms = metrics.distribution("inference_ms")

    def load_model(self) -> Future[Detector]:
        """Start loading the detector in a background thread and return at once.

        Beam sets RunInference up before the decode step that feeds it, so a load that blocked
        here would hold back the decoder's start by seconds. Instead the bundle loads and traces
        while the decoder process starts and the first video decodes; ``run_inference`` waits
        for it, and raises what the load raised.
        """
        loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-detector")
        try:
            return loader.submit(self._load)
        finally:
            loader.shutdown(wait=False)

    def _load(self) -> Detector:
        detector, manifest = load_bundle(self._bundle_uri, precision=self._precision)
        if manifest["model_version"] != self._model_version:
            raise BundleError(
                f"{self._bundle_uri} changed during the scan: it now holds model "
                f"{manifest['model_version']}, the scan started with {self._model_version}"
            )
        detector.warm_up()  # trace for the one batch shape now, not on the first batch
        return detector

    def run_inference(
        self,
        batch: Sequence[VideoClip],
        model: Future[Detector],
        inference_args: dict[str, Any] | None = None,
    ) -> list[PredictionResult]:
        detector = model.result()
        step = self._max_batch_windows

        def score(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
            self._batch_windows.update(len(frames))
            return np.concatenate(
                [
                    detector.score_windows(frames[i : i + step], mask[i : i + step])
                    for i in range(0, len(frames), step)
                ]
            )

        videos = [(clip.frames, clip.mask) for clip in batch]
        threshold = detector.config.decision.threshold
        with metrics.timed_ms(self._inference_ms):
            results = score_videos(score, videos, threshold, self._adaptive)
        for result in results:
            self._windows_scored.update(len(result.indices))
        return [
            PredictionResult(clip.video, result, self._model_version)
            for clip, result in zip(batch, results, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[VideoClip]) -> int:
        return sum(clip.frames.nbytes for clip in batch)

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE


def scored(video: DecodedVideo, windows: WindowScores, decision: DecisionConfig) -> Scored:
    """A video's outcome from the windows it was scored on: the verdict ``decision`` gives."""
    at = windows.indices
    body = verdict(
        windows.scores, video.starts[at], video.ends[at], windows.frames, video.info, decision
    )
    return Scored(video.ref, body, video.fingerprint)


def _scored_prediction(prediction: PredictionResult, decision: DecisionConfig) -> Scored:
    return scored(prediction.example, prediction.inference, decision)


class ScoreWindows(beam.PTransform):
    """Window batches -> one Scored outcome per video."""

    def __init__(self, handler: ModelHandler, decision: DecisionConfig) -> None:
        super().__init__()
        self._handler = handler
        self._decision = decision

    def expand(self, batches: beam.PCollection[list[VideoClip]]) -> beam.PCollection[Scored]:
        return (
            batches
            # Batches arrive already cut (see scan.decode), so RunInference must not re-batch.
            | "Run the detector" >> RunInference(self._handler.with_no_batching())
            | "Verdict per video" >> beam.Map(_scored_prediction, self._decision)
        )
