"""``deeptrust watch`` end to end: a moto server with S3 and SQS on 127.0.0.1, a bucket that
notifies the queue, the watcher in a process of its own, uploads arriving one every 2 s."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from badmedia import SCORED, write_broken_copies
from media import make_clip
from scanning import scan, table
from watching import Uploads, Watcher, notifying_bucket, wait_for

pytestmark = pytest.mark.e2e

UPLOAD_EVERY_S = 2.0
# Short, so that a killed watcher's messages come back within the test.
FAST = ("--poll_wait_s", "1", "--max_batch_wait_s", "1", "--visibility_timeout_s", "10")


@pytest.fixture
def uploads(s3_server, monkeypatch) -> Uploads:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", s3_server)
    return notifying_bucket(s3_server)


@pytest.fixture
def videos(corpus, tmp_path) -> dict[str, tuple[str, str]]:
    """Ten uploads, three of them bad: key -> (local file, expected status or error reason)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    expected = write_broken_copies(
        bad, make_clip(bad / "good.mp4", width=160, height=120, seconds=1)
    )
    good = sorted(corpus.rglob("*.mp4"))[:7]
    chosen = {f"day 1/{v.parent.name}/{v.name}": (str(v), SCORED) for v in good}
    chosen |= {f"day 1/bad/{name}": (str(bad / name), why) for name, why in expected.items()}
    return dict(sorted(chosen.items(), key=lambda item: item[0].split("/")[-1]))


def upload_all(uploads: Uploads, videos: dict, every_s: float = UPLOAD_EVERY_S) -> None:
    s3 = uploads.s3
    for number, (key, (path, _)) in enumerate(videos.items()):
        if number:
            time.sleep(every_s)  # the pace of the uploads is what is under test
        s3.upload_file(path, uploads.bucket, key)


def rows_by_uri(db_url: str) -> dict[str, list[dict]]:
    try:
        rows = table(db_url)
    except Exception:  # the watcher has not created the tables yet
        return {}
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(row["video_uri"], []).append(row)
    return found


def video_rows(uploads: Uploads, db_url: str, keys) -> dict[str, list[dict]] | None:
    """The rows of every upload in ``keys``, once each has one."""
    found = rows_by_uri(db_url)
    wanted = {f"s3://{uploads.bucket}/{key}" for key in keys}
    return {uri: found[uri] for uri in wanted} if wanted <= found.keys() else None


def s3_event(uploads: Uploads, key: str, size: int = 1000) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "eventTime": "2026-12-04T12:00:00.000Z",
                    "s3": {
                        "bucket": {"name": uploads.bucket},
                        "object": {"key": key.replace(" ", "+"), "size": size, "eTag": "0f"},
                    },
                }
            ]
        }
    )


def test_watcher_scores_each_upload_within_seconds_and_leaves_the_queue_empty(
    uploads, videos, bundle, tmp_path
):
    db_url = f"sqlite:///{tmp_path / 'watch.db'}"
    sqs = uploads.sqs
    # A message that earlier watchers received three times and never finished: poison.
    poison = sqs.send_message(QueueUrl=uploads.queue, MessageBody=s3_event(uploads, "x/p.mp4"))
    for _ in range(3):  # with the bucket's s3:TestEvent, which stays harmless
        got = sqs.receive_message(
            QueueUrl=uploads.queue, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        assert poison["MessageId"] in {m["MessageId"] for m in got["Messages"]}
    watcher = Watcher(uploads, bundle, db_url, tmp_path, *FAST, "--max_receives", "2")
    try:
        watcher.wait_until_alive()
        sqs.send_message(QueueUrl=uploads.queue, MessageBody="<html>not an event</html>")
        sqs.send_message(QueueUrl=uploads.queue, MessageBody=s3_event(uploads, "day 1/gone.mp4"))
        uploads.s3.put_object(Bucket=uploads.bucket, Key="day 1/notes.txt", Body=b"hello")
        upload_all(uploads, videos)
        rows = wait_for(lambda: video_rows(uploads, db_url, videos), 90, "a row per upload")
        wait_for(lambda: uploads.depth() == (0, 0), 30, "an empty queue")
        assert watcher.stop() == 0, watcher.log
    finally:
        watcher.close()

    s3 = uploads.s3
    for key, (_, expected) in videos.items():
        (row,) = rows[f"s3://{uploads.bucket}/{key}"]
        assert (row["error_reason"] or row["status"]) == expected, row
        head = s3.head_object(Bucket=uploads.bucket, Key=key)
        etag = head["ETag"].strip('"')
        assert row["content_version"] == f"etag:{etag}:size:{head['ContentLength']}"
    everything = rows_by_uri(db_url)
    gone = everything.pop(f"s3://{uploads.bucket}/day 1/gone.mp4")
    assert [(r["status"], r["error_reason"]) for r in gone] == [("error", "s3_not_found")]
    exhausted = everything.pop(f"s3://{uploads.bucket}/x/p.mp4")
    assert [(r["status"], r["error_reason"]) for r in exhausted] == [("error", "retries_exhausted")]
    (bad_event,) = [uri for uri in everything if uri.startswith("sqs://uploads-")]
    assert everything.pop(bad_event)[0]["error_reason"] == "bad_event"
    assert len(everything) == len(videos)  # the .txt key and the S3 test event made no row

    dead = sqs.receive_message(
        QueueUrl=uploads.dead_letter_queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = {m["MessageAttributes"]["deeptrust_reason"]["StringValue"]: m for m in dead}
    assert sorted(reasons) == ["bad_event", "retries_exhausted"]
    assert reasons["bad_event"]["Body"] == "<html>not an event</html>"
    assert (
        reasons["retries_exhausted"]["MessageAttributes"]["source_message_id"]["StringValue"]
        == (poison["MessageId"])
    )

    summary = json.loads(watcher.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert summary["scored"] == sum(why == SCORED for _, why in videos.values())
    assert summary["errors"] == 3 + 3  # bad uploads, the deleted object, two poison messages

    # The nightly scan skips what the watcher scored and retries only its error rows.
    nightly = scan(f"s3://{uploads.bucket}/day 1/", bundle, db_url)
    assert nightly["skipped"] == summary["scored"]
    assert nightly["scored"] == 0
    assert nightly["errors"] == 3


def test_a_watcher_killed_midway_and_started_again_leaves_one_row_per_upload(
    uploads, videos, bundle, tmp_path
):
    db_url = f"sqlite:///{tmp_path / 'watch.db'}"
    watcher = Watcher(uploads, bundle, db_url, tmp_path, *FAST)
    pacing = threading.Thread(target=upload_all, args=(uploads, videos))
    try:
        watcher.wait_until_alive()
        pacing.start()
        # Killed while uploads keep coming: whatever it held comes back after 10 s.
        wait_for(lambda: len(rows_by_uri(db_url)) >= 3, 60, "the first rows")
        watcher.kill()
    finally:
        watcher.close()
    assert 3 <= len(rows_by_uri(db_url)) < len(videos)

    watcher.liveness.unlink(missing_ok=True)  # a killed watcher cannot remove it
    again = Watcher(uploads, bundle, db_url, tmp_path, *FAST)
    try:
        again.wait_until_alive()
        pacing.join()
        rows = wait_for(lambda: video_rows(uploads, db_url, videos), 90, "a row per upload")
        wait_for(lambda: uploads.depth() == (0, 0), 30, "an empty queue")
        assert again.stop() == 0, again.log
    finally:
        pacing.join()
        again.close()

    assert Counter(len(found) for found in rows.values()) == {1: len(videos)}
    assert len(rows_by_uri(db_url)) == len(videos)
    for key, (_, expected) in videos.items():
        (row,) = rows[f"s3://{uploads.bucket}/{key}"]
        assert (row["error_reason"] or row["status"]) == expected, row
    assert uploads.depth(uploads.dead_letter_queue) == (0, 0)
