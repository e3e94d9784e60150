"""Known fakes: a confirmed fake's copies come back in a new upload and are matched, not scored.

The scan's real graph runs over the moto S3 server with the real decoder child; only the model
is a stand-in (``CountingHandler``), which flags videos by name and counts every video it is
asked to score, so the test can tell that the copies never reached it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import apache_beam as beam
import boto3
import cv2
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.options.pipeline_options import PipelineOptions
from media import copy_clip, unrelated_clip
from scanning import every_window, table

from model.video import probe
from pipelines.moderation.review import Review, open_database, record_review
from pipelines.scan import metrics
from pipelines.scan.decode import VideoClip
from pipelines.scan.decoders import ChildDecoders
from pipelines.scan.graph import build_scan
from pipelines.scan.options import ScanOptions
from pipelines.store import bank, database, runs
from pipelines.store.migrations import migrate

pytestmark = pytest.mark.e2e

VERSION = "fake-model"
COPIES = ("reencoded", "half_size", "brighter", "second_half", "mirrored")
OTHERS = 20


class CountingHandler(ModelHandler[VideoClip, PredictionResult, None]):
    """Flags videos whose name starts with ``fake``; counts each video it scores."""

    def __init__(self) -> None:
        self._scored = beam.metrics.Metrics.counter("test", "videos_sent_to_the_model")

    def load_model(self) -> None:
        return None

    def run_inference(
        self, batch: Sequence[VideoClip], model: None, inference_args: dict | None = None
    ) -> list[PredictionResult]:
        self._scored.inc(len(batch))
        return [
            PredictionResult(
                clip.video,
                every_window(
                    clip, 0.9 if Path(clip.video.ref.uri).name.startswith("fake") else 0.1
                ),
                VERSION,
            )
            for clip in batch
        ]


def scan(prefix: str, db_url: str, endpoint: str, config, run_id: str) -> dict:
    """Run the scan's graph over ``prefix``; returns the run's row and the model's count."""
    argv = ["--input", prefix, "--model", "unused", "--db", db_url, "--s3_endpoint_url", endpoint]
    engine = database.connect(db_url)
    tables = database.Tables.reflect(engine)
    runs.start_run(engine, tables, run_id, prefix, VERSION, "FnApiRunner")
    options = PipelineOptions([*argv, "--runner=FnApiRunner"])
    pipeline = beam.Pipeline(options=options)
    build_scan(
        pipeline,
        options.view_as(ScanOptions),
        config,
        VERSION,
        run_id,
        handler=CountingHandler(),
        decoders=ChildDecoders(),
    )
    result = pipeline.run()
    result.wait_until_finish()
    finished = runs.finish_run(engine, tables, run_id)
    engine.dispose()
    sent = result.metrics().query(MetricsFilter().with_name("videos_sent_to_the_model"))
    matched = result.metrics().query(
        MetricsFilter().with_namespace(metrics.NAMESPACE).with_name("videos_matched")
    )
    return finished | {
        "sent_to_model": sum(c.committed for c in sent["counters"]),
        "matched_counted": sum(c.committed for c in matched["counters"]),
    }


def test_copies_of_a_confirmed_fake_are_matched_without_a_model_call(
    corpus, small_config, s3_server, monkeypatch, tmp_path
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    client = boto3.client("s3")
    client.create_bucket(Bucket="uploads")
    original = sorted((corpus / "fake").glob("*.mp4"))[0]
    client.upload_file(str(original), "uploads", "day1/fake_original.mp4")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    engine = database.connect(db_url)
    migrate(engine)
    engine.dispose()

    first = scan("s3://uploads/day1/", db_url, s3_server, small_config, "run-1")
    assert (first["scored"], first["flagged"], first["sent_to_model"]) == (1, 1, 1)
    engine = open_database(db_url)
    record_review(engine, Review("s3://uploads/day1/fake_original.mp4", "confirmed", "mod", None))
    with engine.connect() as conn:
        banked = bank.load_frames(conn, bank.bank_table(conn), 0)
    engine.dispose()
    assert banked.videos == [
        ("s3://uploads/day1/fake_original.mp4", table(db_url)[0]["content_version"])
    ]
    assert len(banked.hashes) == 2 * first_row_frames(db_url)

    capture = cv2.VideoCapture(str(original))
    fps, frames = probe(capture)
    capture.release()
    made = tmp_path / "made"
    made.mkdir()
    for how in COPIES:
        # Named ``real_``: were they scored, the stand-in model would not flag them.
        path = copy_clip(original, made / f"real_copy_{how}.mp4", how, frames / fps)
        client.upload_file(str(path), "uploads", f"day2/{path.name}")
    for seed in range(OTHERS):
        path = unrelated_clip(made / f"fake_other_{seed:02d}.mp4", seed)
        client.upload_file(str(path), "uploads", f"day2/{path.name}")
    # The banked original is taken down; its hashes stay in the bank.
    client.delete_object(Bucket="uploads", Key="day1/fake_original.mp4")

    second = scan("s3://uploads/day2/", db_url, s3_server, small_config, "run-2")

    rows = {Path(r["video_uri"]).name: r for r in table(db_url) if r["run_id"] == "run-2"}
    matched = {name for name, r in rows.items() if r["status"] == "matched"}
    assert matched == {f"real_copy_{how}.mp4" for how in COPIES}
    for name in matched:
        row = rows[name]
        assert row["flagged"] and row["review_status"] == "pending"
        assert row["match_video_uri"] == "s3://uploads/day1/fake_original.mp4"
        assert row["match_share"] >= 0.8 and 0 <= row["match_distance"] <= 31
        assert row["score"] is None
    others = {name: r for name, r in rows.items() if name.startswith("fake_other_")}
    assert len(others) == OTHERS
    assert {r["status"] for r in others.values()} == {"scored"}
    # The model saw the 20 others and none of the copies; the summary and metrics count them.
    assert second["sent_to_model"] == OTHERS
    assert second["matched_counted"] == len(COPIES)
    assert (second["videos_seen"], second["scored"], second["matched"]) == (25, 20, 5)
    assert second["flagged"] == 25 and second["status"] == "succeeded"
    engine = database.connect(db_url)
    assert metrics.read_run_metrics(engine, "run-2").videos["matched"] == len(COPIES)
    engine.dispose()


def first_row_frames(db_url: str) -> int:
    """The hashed frames the first scan kept on the original's flagged row."""
    (row,) = table(db_url)
    return len(json.loads(row["frame_hashes"]))
