"""The scan's pipeline graph: listing, planning, decoding (and matching known fakes), scoring and
writing, wired together.

:func:`build_scan` puts the scan onto a pipeline that the caller made, with the model handler and
the decoders the caller chose: ``pipelines.scan.run`` passes the bundle's ``WindowModelHandler``
and a pool of decoder processes, a test may pass a fake handler and an in-process decoder.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler

from model.config import DetectorConfig
from pipelines.scan.decode import BATCHES, FAILED, MATCHED, ExtractWindows
from pipelines.scan.decoders import Decoders
from pipelines.scan.inference import ScoreWindows
from pipelines.scan.listing import CountListing, ListVideos, PlanScan
from pipelines.scan.options import ScanOptions
from pipelines.scan.writing import WriteModerationResults


class ScanVideos(beam.PTransform):
    """PBegin -> rows in the database, for every new video under ``scan.input``.

    ``handler`` scores window batches (lists of ``VideoClip``) into one ``PredictionResult`` of
    window scores per video; ``decoders`` says where videos decode.
    """

    def __init__(
        self,
        scan: ScanOptions,
        config: DetectorConfig,
        model_version: str,
        run_id: str,
        handler: ModelHandler,
        decoders: Decoders,
    ) -> None:
        super().__init__()
        self._scan = scan
        self._config = config
        self._model_version = model_version
        self._run_id = run_id
        self._handler = handler
        self._decoders = decoders

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        scan, config, version = self._scan, self._config, self._model_version
        planned = (
            pbegin
            | "List videos"
            >> ListVideos(scan.input, scan.extensions, scan.listing_shard, scan.max_video_bytes)
            | "Plan the scan"
            >> beam.ParDo(
                PlanScan(scan.db, version, scan.rescan, self._run_id, scan.liveness, scan.db_retry)
            )
        )
        tally = planned | "Count the listing" >> CountListing()
        decoded = (
            planned
            | "Drop already scored" >> beam.FlatMap(lambda item: [] if item.skip else [item.ref])
            | "Extract windows"
            >> ExtractWindows(
                config,
                scan.decode_groups,
                scan.min_batch_windows,
                scan.limits,
                self._decoders,
                scan.known_fakes,
            )
        )
        scored = decoded[BATCHES] | "Score windows" >> ScoreWindows(self._handler, config.decision)
        # A writer per branch, so rows reach the database as videos finish: the local runner
        # fuses each writer into the step that feeds it, where one writer behind a Flatten would
        # run only once every branch had ended. The writers emit nothing; the last Flatten joins
        # them because the Dask runner computes only the last step's graph.
        run_id, size, retry = self._run_id, scan.write_batch_size, scan.db_retry
        branches = {
            "scored rows": scored,
            "matched rows": decoded[MATCHED],
            "error rows": decoded[FAILED],
            "the listing": tally,
        }
        return [
            branch
            | f"Write {name}" >> WriteModerationResults(scan.db, run_id, version, size, retry)
            for name, branch in branches.items()
        ] | "Every write done" >> beam.Flatten()


def build_scan(
    pipeline: beam.Pipeline,
    scan: ScanOptions,
    config: DetectorConfig,
    model_version: str,
    run_id: str,
    *,
    handler: ModelHandler,
    decoders: Decoders,
) -> beam.PCollection:
    """Put the scan of ``scan.input`` onto ``pipeline``; running the pipeline writes run
    ``run_id``'s rows. Returns the (empty) collection that ends once every write is done."""
    return pipeline | "Scan videos" >> ScanVideos(
        scan, config, model_version, run_id, handler, decoders
    )
