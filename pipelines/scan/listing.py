"""List the videos under ``--input`` and decide which of them this scan must score.

Listing goes through Beam's filesystems (``fileio``), so a local folder and an ``s3://`` prefix
read alike; S3 settings come from Beam's S3 options (``--s3_endpoint_url``) or the environment
(``AWS_ENDPOINT_URL_S3``).

A video's ``content_version`` identifies its exact bytes. On S3 it is the ETag with the size: the
ETag of a multipart upload is not an MD5 of the content, but together with the size it still
changes whenever the object is rewritten. Elsewhere it is the SHA-256 of the bytes. An object
that cannot be read (refused, or gone since the match) gets ``unreadable:size:<bytes>``: the
decoder then fails to read it too, and its error row says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

from model.storage import is_s3, prefer_standard_retries
from pipelines.scan import metrics
from pipelines.scan.sharding import shard_of
from pipelines.store import database

_GLOB_CHARS = "*?["
_READ_BLOCK = 1 << 20
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRef:
    """One object to scan: where it is, which bytes it holds, and how many (from the listing)."""

    uri: str
    content_version: str
    size_bytes: int


@dataclass(frozen=True)
class ListingTally:
    """How many videos the listing found, and how many of them were already scored."""

    seen: int
    skipped: int


def input_pattern(uri: str) -> str:
    """The file pattern for ``--input``: a glob as given, one file, or all under a folder/prefix."""
    if any(ch in uri for ch in _GLOB_CHARS):
        return uri
    if is_s3(uri):
        is_object = not uri.endswith("/") and FileSystems.exists(uri)
        return uri if is_object else FileSystems.join(uri.rstrip("/"), "**")
    return FileSystems.join(uri, "**") if os.path.isdir(uri) else uri


def is_video(path: str, extensions: Iterable[str]) -> bool:
    return os.path.splitext(path)[1].lower().lstrip(".") in set(extensions)


def content_version(metadata: FileMetadata) -> str:
    """``etag:<etag>:size:<bytes>`` for S3 objects, ``sha256:<hex>`` for anything else."""
    try:
        if is_s3(metadata.path):
            etag = FileSystems.checksum(metadata.path).strip('"')
            return f"etag:{etag}:size:{metadata.size_in_bytes}"
        digest = hashlib.sha256()
        with FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for block in iter(lambda: f.read(_READ_BLOCK), b""):
                digest.update(block)
        return f"sha256:{digest.hexdigest()}"
    except (BeamIOError, OSError) as err:
        _LOG.warning("%s: cannot read its version: %s", metadata.path, err)
        return f"unreadable:size:{metadata.size_in_bytes}"


class DescribeVideos(beam.DoFn):
    """Keeps the video files among the matches and gives each its content version."""

    def __init__(self, extensions: tuple[str, ...]) -> None:
        self._extensions = extensions
        self._videos = metrics.counter("videos_listed")
        self._other = metrics.counter("non_video_objects")

    def setup(self) -> None:
        prefer_standard_retries()

    def process(self, metadata: FileMetadata) -> Iterator[VideoRef]:
        if not is_video(metadata.path, self._extensions):
            self._other.inc()
            return
        self._videos.inc()
        yield VideoRef(metadata.path, content_version(metadata), metadata.size_in_bytes)


class ListVideos(beam.PTransform):
    """PBegin -> VideoRef for every video file under ``uri``, or for those in one shard.

    ``shard`` is ``(index, count)``: only objects whose URI hashes to ``index`` of ``count``
    shards are listed (see ``pipelines.scan.sharding``), so parallel scans split an archive.
    """

    def __init__(
        self, uri: str, extensions: tuple[str, ...], shard: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self._uri = uri
        self._extensions = extensions
        self._shard = shard

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[VideoRef]:
        matched = (
            pbegin
            | "Input" >> beam.Create([self._uri])
            | "As a file pattern" >> beam.Map(input_pattern)
            | "Match files" >> fileio.MatchAll()
        )
        if self._shard is not None:
            index, count = self._shard
            matched = matched | "Keep this shard" >> beam.Filter(
                lambda metadata: shard_of(metadata.path, count) == index
            )
        return matched | "Describe videos" >> beam.ParDo(DescribeVideos(self._extensions))


@dataclass(frozen=True)
class Planned:
    """A listed video and whether this scan skips it."""

    ref: VideoRef
    skip: bool


class PlanScan(beam.DoFn):
    """Marks videos that already have a scored row for this content and model version.

    Error rows do not count, so failed videos are retried by the next scan; with ``rescan`` no
    video is skipped.
    """

    def __init__(
        self, db_url: str, model_version: str, rescan: bool, retry: database.Retry = database.ONCE
    ) -> None:
        self._db_url = db_url
        self._model_version = model_version
        self._rescan = rescan
        self._retry = retry
        self._skipped = metrics.counter("videos_skipped")

    def setup(self) -> None:
        self._engine = database.connect(self._db_url)
        self._table = database.Tables.reflect(self._engine).results

    def process(self, ref: VideoRef) -> Iterator[Planned]:
        skip = False
        if not self._rescan:
            skip = database.transaction(
                self._engine,
                lambda conn: database.is_scored(
                    conn, self._table, ref.uri, ref.content_version, self._model_version
                ),
                self._retry,
            )
        if skip:
            self._skipped.inc()
        yield Planned(ref, skip)

    def teardown(self) -> None:
        self._engine.dispose()


class TallyListing(beam.DoFn):
    """Counts the grouped listing outcomes into one ListingTally, emitted from ``process``."""

    def process(self, group: tuple[str, Iterable[bool]]) -> Iterator[ListingTally]:
        _, skips = group
        seen = skipped = 0
        for skip in skips:
            seen += 1
            skipped += bool(skip)
        yield ListingTally(seen, skipped)


class CountListing(beam.PTransform):
    """Planned -> one ListingTally for the whole listing (none when nothing was listed)."""

    def expand(self, planned: beam.PCollection[Planned]) -> beam.PCollection[ListingTally]:
        return (
            planned
            | "Key by listing" >> beam.Map(lambda item: ("listing", item.skip))
            | "Gather" >> beam.GroupByKey()
            | "Tally" >> beam.ParDo(TallyListing())
        )
