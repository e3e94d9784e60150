"""The scan's pipeline graph: listing, planning, decoding, scoring and writing, wired together."""

from __future__ import annotations

import apache_beam as beam

from model.config import DetectorConfig
from pipelines.scan.decode import ExtractWindows
from pipelines.scan.inference import ScoreWindows, WindowModelHandler
from pipelines.scan.listing import CountListing, ListVideos, PlanScan
from pipelines.scan.options import ScanOptions
from pipelines.scan.writing import WriteModerationResults


class ScanVideos(beam.PTransform):
    """PBegin -> rows in the database, for every new video under ``scan.input``."""

    def __init__(
        self, scan: ScanOptions, config: DetectorConfig, model_version: str, run_id: str
    ) -> None:
        super().__init__()
        self._scan = scan
        self._config = config
        self._model_version = model_version
        self._run_id = run_id

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        scan, config, version = self._scan, self._config, self._model_version
        planned = (
            pbegin
            | "List videos"
            >> ListVideos(scan.input, scan.extensions, scan.listing_shard, scan.max_video_bytes)
            | "Plan the scan" >> beam.ParDo(PlanScan(scan.db, version, scan.rescan, scan.db_retry))
        )
        tally = planned | "Count the listing" >> CountListing()
        extracted = (
            planned
            | "Drop already scored" >> beam.FlatMap(lambda item: [] if item.skip else [item.ref])
            | "Extract windows"
            >> ExtractWindows(
                config,
                version,
                scan.decode_groups,
                scan.min_batch_windows,
                scan.limits,
                scan.decoders,
            )
        )
        handler = WindowModelHandler(scan.model, version, scan.max_batch_windows, scan.precision)
        scored = (
            extracted
            | "Window batches" >> beam.Filter(lambda item: isinstance(item, list))
            | "Score windows" >> ScoreWindows(handler, config.decision)
        )
        failed = extracted | "Failed videos" >> beam.Filter(lambda item: isinstance(item, dict))
        # A writer per branch, so rows reach the database as videos finish: the local runner
        # fuses each writer into the step that feeds it, where one writer behind a Flatten would
        # run only once every branch had ended. The writers emit nothing; the last Flatten joins
        # them because the Dask runner computes only the last step's graph.
        run_id, size, retry = self._run_id, scan.write_batch_size, scan.db_retry
        branches = {"scored rows": scored, "error rows": failed, "the listing": tally}
        return [
            branch | f"Write {name}" >> WriteModerationResults(scan.db, run_id, size, retry)
            for name, branch in branches.items()
        ] | "Every write done" >> beam.Flatten()
