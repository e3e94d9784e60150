"""The watcher's pipeline graph: the queue's uploads through the scan's own steps.

    impulse every poll_wait_s -> receive uploads (SQS) -> decode in isolated children, under the
    scan's limits, matching known fakes -> score batches (the scan's RunInference handler) ->
    write each row, then delete each message whose videos all have rows

Every step works element by element, with no grouping or windowing, so a streaming runner
moves each receive's videos through the whole graph as they come: Beam 2.77's local runner
fires windows only when a pipeline ends, which an unbounded one never does. Batching is the
receiving step's bounded wait (``--max_batch_wait_s``) and the decoder's own cut of batches
(``--min_batch_windows``).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from model.config import DetectorConfig
from pipelines.scan.decode import BATCHES, FAILED, MATCHED, DecodeGroups
from pipelines.scan.decoders import Decoders
from pipelines.scan.inference import ScoreWindows
from pipelines.scan.options import ScanOptions
from pipelines.watch.acknowledging import WriteAndAcknowledge
from pipelines.watch.options import WatchSettings
from pipelines.watch.receiving import SKIPPED, QueuedRef, ReceiveUploads


def _is_queued(item: object) -> bool:
    return isinstance(item, QueuedRef)


class WatchUploads(beam.PTransform):
    """PBegin -> rows in the database for every upload the queue announces; runs until
    stopped."""

    def __init__(
        self,
        settings: WatchSettings,
        scan: ScanOptions,
        config: DetectorConfig,
        model_version: str,
        run_id: str,
        handler: ModelHandler,
        decoders: Decoders,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._scan = scan
        self._config = config
        self._model_version = model_version
        self._run_id = run_id
        self._handler = handler
        self._decoders = decoders

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        settings, scan, version = self._settings, self._scan, self._model_version
        received = (
            pbegin
            | "Every poll" >> PeriodicImpulse(fire_interval=settings.poll_wait_s)
            | "Receive uploads"
            >> beam.ParDo(
                ReceiveUploads(
                    settings,
                    scan.db,
                    version,
                    self._run_id,
                    scan.liveness,
                    scan.db_retry,
                    scan.extensions,
                )
            ).with_outputs(SKIPPED, main="videos")
        )
        decoded = received.videos | "Extract windows" >> DecodeGroups(
            self._config, scan.min_batch_windows, scan.limits, self._decoders, scan.known_fakes
        )
        scored = decoded[BATCHES] | "Score windows" >> ScoreWindows(
            self._handler, self._config.decision
        )
        branches = {
            "scored rows": scored,
            "matched rows": decoded[MATCHED],
            "error rows": decoded[FAILED],
            "already scored": received[SKIPPED] | "Skipped only" >> beam.Filter(_is_queued),
        }
        # A writer per branch, each fused into the step that feeds it (as in the scan).
        return [
            branch
            | f"Write and acknowledge {name}"
            >> beam.ParDo(
                WriteAndAcknowledge(settings, scan.db, self._run_id, version, scan.db_retry)
            )
            for name, branch in branches.items()
        ] | "Every write done" >> beam.Flatten()


def build_watch(
    pipeline: beam.Pipeline,
    settings: WatchSettings,
    scan: ScanOptions,
    config: DetectorConfig,
    model_version: str,
    run_id: str,
    *,
    handler: ModelHandler,
    decoders: Decoders,
) -> beam.PCollection:
    """Put the watcher onto ``pipeline``: running it scores uploads until it is stopped."""
    return pipeline | "Watch uploads" >> WatchUploads(
        settings, scan, config, model_version, run_id, handler, decoders
    )
