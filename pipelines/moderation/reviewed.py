"""Moderators' decisions as training data: confirmed videos are fakes, dismissed ones reals.

``deeptrust train DATA --from-reviews DB`` adds these videos to ``DATA``'s. A decision is about
exact bytes (a content version), so each video is used only while its object still holds them:
a local file whose SHA-256 changed, or an S3 object whose ETag or size did, is left out with a
message, as is one that no longer exists. An S3 object is downloaded only on the condition that
its ETag is still the one decided on (``IfMatch``), so the bytes trained on are the bytes decided
on even when the object is replaced meanwhile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apache_beam.io.filesystem import FileMetadata
from sqlalchemy import Engine, MetaData, select

from model.dataset import LabelledVideo
from model.storage import is_s3, s3_client, split_s3, temporary_copy
from pipelines.scan.listing import content_version, s3_content_version

# A decision -> the label its video trains as.
LABELS = {"confirmed": "fake", "dismissed": "real"}


@dataclass(frozen=True)
class ReviewedVideos:
    """The decided videos usable for training, and why the others were left out."""

    videos: list[LabelledVideo]
    skipped: list[str]


def _decided(engine: Engine) -> dict[tuple[str, str], set[str]]:
    """Each decided (video_uri, content_version) and the decisions its rows hold now."""
    metadata = MetaData()
    metadata.reflect(engine, only=["moderation_results"])
    results = metadata.tables["moderation_results"]
    query = (
        select(results.c.video_uri, results.c.content_version, results.c.review_status)
        .where(results.c.review_status.in_(tuple(LABELS)))
        .distinct()
    )
    decided: dict[tuple[str, str], set[str]] = {}
    with engine.connect() as conn:
        for uri, version, decision in conn.execute(query):
            decided.setdefault((uri, version), set()).add(decision)
    return decided


def _s3_copy(uri: str, etag: str, workdir: Path) -> Path:
    """The S3 object's bytes in ``workdir``, downloaded only while its ETag is ``etag``."""
    bucket, key = split_s3(uri)

    def download(_: str, name: str) -> None:
        body = s3_client().get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
        with open(name, "wb") as out:
            shutil.copyfileobj(body, out)

    return temporary_copy(uri, download, workdir)


def _exact_copy(uri: str, version: str, workdir: Path) -> tuple[str | None, str]:
    """(a local path holding exactly the bytes ``version`` names, or None; why not)."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            head = s3_client().head_object(Bucket=bucket, Key=key)
            etag = head["ETag"].strip('"')
            if s3_content_version(etag, head["ContentLength"]) != version:
                return None, "its bytes changed since the review"
            return str(_s3_copy(uri, head["ETag"], workdir)), ""
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return None, "it no longer exists"
            if code in ("412", "PreconditionFailed"):
                return None, "its bytes changed since the review"
            return None, f"it could not be read: {err}"
    if not os.path.isfile(uri):
        return None, "it no longer exists"
    if content_version(FileMetadata(uri, os.path.getsize(uri))) != version:
        return None, "its bytes changed since the review"
    return uri, ""


def reviewed_videos(
    engine: Engine, workdir: str | Path, progress: Callable[[str], None] = print
) -> ReviewedVideos:
    """The moderation database's decided videos as labelled videos, S3 objects copied into
    ``workdir``; each one left out is reported through ``progress`` and listed."""
    videos, skipped = [], []
    for (uri, version), decisions in sorted(_decided(engine).items()):
        if len(decisions) > 1:
            why = f"its rows hold different decisions ({', '.join(sorted(decisions))})"
            path = None
        else:
            path, why = _exact_copy(uri, version, Path(workdir))
        if path is None:
            message = f"{uri} ({version}) left out: {why}"
            progress(f"train: {message}")
            skipped.append(message)
            continue
        videos.append(LabelledVideo(path, LABELS[decisions.pop()]))
    return ReviewedVideos(videos, skipped)
