"""Parsing S3 event notifications as the watcher receives them from SQS (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipelines.watch.events import BadEvent, parse_notification

pytestmark = pytest.mark.unit

VIDEOS = ("mp4", "mov")


def record(key: str, name: str = "ObjectCreated:Put", **obj) -> dict:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-12-04T13:35:43.840Z",
        "eventName": name,
        "s3": {
            "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
            "object": {"key": key, "size": 1234, "eTag": "0123abcd", **obj},
        },
    }


def body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


def test_one_upload_gives_its_object_and_time():
    (upload,) = parse_notification(body(record("day/a.mp4")), VIDEOS).uploads
    assert upload.uri == "s3://uploads/day/a.mp4"
    assert (upload.size, upload.etag, upload.version_id) == (1234, "0123abcd", None)
    assert upload.event_time == datetime(2026, 12, 4, 13, 35, 43, 840000, tzinfo=UTC)


def test_several_records_in_one_message_keep_their_order():
    parsed = parse_notification(
        body(record("a.mp4"), record("b.MOV", versionId="v2"), record("c.mp4")), VIDEOS
    )
    assert [u.key for u in parsed.uploads] == ["a.mp4", "b.MOV", "c.mp4"]
    assert parsed.uploads[1].version_id == "v2"


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("with+space.mp4", "with space.mp4"),
        ("a+dir%2Fx+y%2Bz.mp4", "a dir/x y+z.mp4"),
        ("%C3%BCn%C3%AFc%C3%B8d%C3%A9.mp4", "ünïcødé.mp4"),
        ("100%25.mp4", "100%.mp4"),
    ],
)
def test_keys_are_url_decoded_with_plus_for_spaces(encoded, key):
    (upload,) = parse_notification(body(record(encoded)), VIDEOS).uploads
    assert upload.key == key
    assert upload.uri == f"s3://uploads/{key}"


def test_a_quoted_etag_loses_its_quotes():
    (upload,) = parse_notification(body(record("a.mp4", eTag='"abc"')), VIDEOS).uploads
    assert upload.etag == "abc"


def test_the_test_event_names_nothing_and_says_so():
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}
    parsed = parse_notification(json.dumps(test_event), VIDEOS)
    assert parsed.uploads == ()
    assert "s3:TestEvent" in parsed.ignored[0]


def test_keys_that_are_not_videos_and_deletions_are_left_out_with_the_reason():
    parsed = parse_notification(
        body(
            record("notes.txt"),
            record("a.mp4"),
            record("noextension"),
            record("gone.mp4", name="ObjectRemoved:Delete"),
        ),
        VIDEOS,
    )
    assert [u.key for u in parsed.uploads] == ["a.mp4"]
    assert len(parsed.ignored) == 3
    assert "notes.txt: not a video" in parsed.ignored[0]
    assert "ObjectRemoved:Delete" in parsed.ignored[2]


def test_a_notification_through_sns_is_unwrapped():
    envelope = {"Type": "Notification", "Message": body(record("a.mp4"))}
    (upload,) = parse_notification(json.dumps(envelope), VIDEOS).uploads
    assert upload.key == "a.mp4"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not json at all",
        "[1, 2, 3]",
        '"a string"',
        '{"hello": "world"}',
        '{"Records": "nope"}',
        '{"Records": [{"s3": {"bucket": {"name": "b"}}}]}',
        '{"Records": [{"s3": {"bucket": {"name": ""}, "object": {"key": "a.mp4"}}}]}',
        '{"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "a.mp4", "size": "x"}}}]}',
        '{"Records": [42]}',
    ],
)
def test_garbage_is_a_bad_event(garbage):
    with pytest.raises(BadEvent):
        parse_notification(garbage, VIDEOS)


def test_a_malformed_event_time_is_no_time_not_a_bad_event():
    bad_time = record("a.mp4") | {"eventTime": "yesterday"}
    (upload,) = parse_notification(body(bad_time), VIDEOS).uploads
    assert upload.event_time is None
