"""The watcher's graph on Beam's local runner, with S3 and SQS in this process (moto) and the
scan's fake model handler and decoders instead of a trained bundle (see test_scan_component)."""

from __future__ import annotations

import json
import threading

import apache_beam as beam
import boto3
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from moto import mock_aws
from scanning import table
from test_scan_component import SCORES, VERSION, FakeHandler, NamedDecoders
from watching import wait_for

from pipelines.scan.options import ScanOptions
from pipelines.store import database, runs
from pipelines.store.migrations import migrate
from pipelines.watch import lifecycle
from pipelines.watch.graph import build_watch
from pipelines.watch.options import WatchOptions

pytestmark = pytest.mark.component

RUN_ID = "watch-component"


@pytest.fixture
def aws(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


def record(s3, bucket: str, key: str) -> dict:
    """The S3 event record of ``key`` as it is now."""
    head = s3.head_object(Bucket=bucket, Key=key)
    return {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-12-04T12:00:00.000Z",
        "s3": {
            "bucket": {"name": bucket},
            "object": {
                "key": key.replace(" ", "+"),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
            },
        },
    }


def test_each_upload_gets_its_row_and_every_message_leaves_the_queue(aws, small_config, tmp_path):
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="uploads")
    queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    for key in ("day/fake one.mp4", "day/real-1.mp4", "day/gone.mp4", "day/notes.txt"):
        s3.put_object(Bucket="uploads", Key=key, Body=b"bytes of " + key.encode())
    bodies = [
        {
            "Records": [
                record(s3, "uploads", "day/fake one.mp4"),
                record(s3, "uploads", "day/real-1.mp4"),
            ]
        },
        {
            "Records": [
                record(s3, "uploads", "day/gone.mp4"),
                record(s3, "uploads", "day/notes.txt"),
            ]
        },
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"},
    ]
    s3.delete_object(Bucket="uploads", Key="day/gone.mp4")  # deleted before it is read
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    sqs.send_message(QueueUrl=queue, MessageBody="{not json")
    db_url = f"sqlite:///{tmp_path / 'watch.db'}"
    engine = database.connect(db_url)
    migrate(engine)
    runs.start_run(engine, database.Tables.reflect(engine), RUN_ID, queue, VERSION, "watch:local")
    engine.dispose()

    argv = ["--queue", queue, "--model", "unused", "--db", db_url, "--runner=FnApiRunner"]
    options = PipelineOptions([*argv, "--streaming", "--poll_wait_s=1", "--max_batch_wait_s=0.5"])

    def depth() -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])
        values = attributes["Attributes"]
        return int(values["ApproximateNumberOfMessages"]) + int(
            values["ApproximateNumberOfMessagesNotVisible"]
        )

    def stop_once_done() -> None:
        try:
            wait_for(lambda: depth() == 0, 60, "an empty queue", every_s=0.2)
        finally:
            lifecycle.request_stop()

    with lifecycle.stop_cleared():
        pipeline = beam.Pipeline(options=options)
        build_watch(
            pipeline,
            options.view_as(WatchOptions).settings,
            options.view_as(ScanOptions),
            small_config,
            VERSION,
            RUN_ID,
            handler=FakeHandler(),
            decoders=NamedDecoders(),
        )
        stopper = threading.Thread(target=stop_once_done)
        stopper.start()
        with pytest.raises(Exception, match=lifecycle.STOPPED):
            pipeline.run().wait_until_finish()
        stopper.join()

    rows = {r["video_uri"]: r for r in table(db_url)}
    fake, real = rows.pop("s3://uploads/day/fake one.mp4"), rows.pop("s3://uploads/day/real-1.mp4")
    assert (fake["status"], fake["score"], fake["flagged"]) == ("scored", SCORES["fake"], True)
    assert (real["status"], real["score"], real["flagged"]) == ("scored", SCORES["real"], False)
    head = s3.head_object(Bucket="uploads", Key="day/real-1.mp4")
    etag = head["ETag"].strip('"')
    assert real["content_version"] == f"etag:{etag}:size:{head['ContentLength']}"
    gone = rows.pop("s3://uploads/day/gone.mp4")
    assert (gone["status"], gone["error_reason"]) == ("error", "s3_not_found")
    ((uri, bad),) = rows.items()  # notes.txt and the test event made none
    assert uri.startswith("sqs://uploads/")
    assert (bad["status"], bad["error_reason"]) == ("error", "bad_event")
    assert all(r["run_id"] == RUN_ID for r in table(db_url))
