"""What an SQS message about an upload says: the S3 objects it names, and what it leaves out.

Pure: a message body in, a :class:`Notification` out, or :class:`BadEvent` for a body that is no
S3 event notification. S3 sends its notifications as JSON with a ``Records`` list (usually one
record, sometimes several), object keys URL-encoded with ``+`` for spaces, and one
``s3:TestEvent`` when a bucket's notification is first set up. A notification that went through
SNS first arrives wrapped in an SNS envelope, whose ``Message`` holds the S3 notification.

Only ``ObjectCreated:*`` records of keys that look like videos become :class:`Upload` values;
every other record is left out with the reason, so the watcher can say why a message made no
row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

TEST_EVENT = "s3:TestEvent"
# Longest excerpt of a bad body kept in its error row.
BODY_EXCERPT = 500


class BadEvent(ValueError):
    """A message body that is not an S3 event notification; the text says what is wrong."""


@dataclass(frozen=True)
class Upload:
    """One object created in a bucket, as the event describes it."""

    bucket: str
    key: str
    size: int
    etag: str | None
    version_id: str | None
    event_time: datetime | None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Notification:
    """The uploads a message names, and why each of its other records was left out."""

    uploads: tuple[Upload, ...]
    ignored: tuple[str, ...] = ()


def excerpt(body: str) -> str:
    """The start of a message body, short enough for an error row."""
    return body if len(body) <= BODY_EXCERPT else body[:BODY_EXCERPT] + "..."


def parse_notification(body: str, extensions: Iterable[str]) -> Notification:
    """The uploads of video files (by extension, as the scan lists them) that ``body`` names.

    Raises BadEvent for a body that is not JSON, not an S3 notification (or one wrapped by
    SNS), or holds a record without a bucket name and key.
    """
    try:
        document = json.loads(body)
    except (TypeError, ValueError) as err:
        raise BadEvent(f"the message is not JSON ({err}): {excerpt(str(body))!r}") from err
    if isinstance(document, dict) and document.get("Type") == "Notification":
        return parse_notification(document.get("Message", ""), extensions)  # through SNS
    if not isinstance(document, dict):
        raise BadEvent(f"the message is not an S3 event notification: {excerpt(body)!r}")
    if document.get("Event") == TEST_EVENT:
        return Notification((), (f"{TEST_EVENT} for bucket {document.get('Bucket')!r}",))
    records = document.get("Records")
    if not isinstance(records, list):
        raise BadEvent(f"the message has no Records list: {excerpt(body)!r}")
    wanted = {e.lower().lstrip(".") for e in extensions}
    uploads, ignored = [], []
    for number, record in enumerate(records):
        upload = _upload(record, number)
        name = record.get("eventName", "")
        if not name.startswith("ObjectCreated:"):
            ignored.append(f"{upload.uri}: {name or 'an event with no name'}, not an upload")
        elif os.path.splitext(upload.key)[1].lower().lstrip(".") not in wanted:
            ignored.append(f"{upload.uri}: not a video (extensions {','.join(sorted(wanted))})")
        else:
            uploads.append(upload)
    return Notification(tuple(uploads), tuple(ignored))


def _upload(record: Any, number: int) -> Upload:
    """The object that record ``number`` names; BadEvent when it names none."""
    try:
        s3 = record["s3"]
        bucket, obj = s3["bucket"]["name"], s3["object"]
        key = unquote_plus(obj["key"])
        size = int(obj.get("size") or 0)
    except (TypeError, KeyError, ValueError) as err:
        raise BadEvent(f"record {number} names no S3 object ({type(err).__name__}: {err})") from err
    if not isinstance(bucket, str) or not bucket or not key:
        raise BadEvent(f"record {number} has an empty bucket name or key")
    etag = obj.get("eTag") or obj.get("etag") or None
    return Upload(
        bucket=bucket,
        key=key,
        size=size,
        etag=etag.strip('"') if isinstance(etag, str) else None,
        version_id=obj.get("versionId") or None,
        event_time=_event_time(record.get("eventTime")),
    )


def _event_time(value: Any) -> datetime | None:
    """The record's ``eventTime`` (ISO 8601, UTC), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
