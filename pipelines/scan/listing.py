"""List the videos under ``--input`` and decide which of them this scan must score.

Listing goes through Beam's filesystems (``fileio``), so a local folder and an ``s3://`` prefix
read alike; S3 settings come from Beam's S3 options (``--s3_endpoint_url``) or the environment
(``AWS_ENDPOINT_URL_S3``).

A video's ``content_version`` identifies its exact bytes. On S3 it is the ETag with the size: the
ETag of a multipart upload is not an MD5 of the content, but together with the size it still
changes whenever the object is rewritten. Elsewhere it is the SHA-256 of the bytes. An object
that cannot be read (refused, or gone since the match) gets ``unreadable:size:<bytes>``: the
decoder then fails to read it too, and its error row says why.

Only regular files are read. In a local folder, anything else named like a video (a FIFO, a
device, a socket, a link that leads nowhere or back to itself, a link to any of those) is listed
with a ``ListingProblem`` and is never opened: the decode step turns it into an error row with the
problem's code. Beam's match leaves out links it cannot follow, so the listing walks the folder for
them too. A file over ``max_bytes`` is not hashed (``unhashed:size:<bytes>``): it gets the error
row ``too_large`` without being read.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from sqlalchemy import Connection

from model.hashing import TooLong, sha256_stream
from model.storage import is_s3, prefer_standard_retries
from pipelines.scan import metrics
from pipelines.scan.sharding import shard_of
from pipelines.store import database, runs

_GLOB_CHARS = "*?["
_LOG = logging.getLogger(__name__)
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


@dataclass(frozen=True)
class ListingProblem:
    """Why a listed entry is not a video file that can be read: an error code and its detail."""

    code: str
    detail: str


@dataclass(frozen=True)
class VideoRef:
    """One object to scan: where it is, which bytes it holds, and how many (from the listing).

    ``problem`` is set when the listing found something that must not be read (a FIFO, a device,
    a broken or looping link); the decode step then writes its error row without opening it.
    """

    uri: str
    content_version: str
    size_bytes: int
    problem: ListingProblem | None = None


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


def is_local(path: str) -> bool:
    """Whether ``path`` names the local filesystem (no ``scheme://``)."""
    return "://" not in path


def local_problem(path: str) -> ListingProblem | None:
    """Why the local entry ``path`` is not a regular file to read, or None when it is one.

    Only ``stat`` is used: a FIFO or a device is never opened, since opening or reading one can
    block for ever or never end.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if not os.path.islink(path):
            return None  # gone or unreadable: the hash and the decoder report it as before
        target = os.readlink(path)
        if err.errno == errno.ELOOP:
            return ListingProblem(
                "link_loop", f"{path} is a symbolic link to {target!r} that loops back on itself"
            )
        return ListingProblem(
            "broken_link", f"{path} is a symbolic link to {target!r}, which does not exist"
        )
    if stat.S_ISREG(mode):
        return None
    kind = next((name for is_kind, name in _SPECIAL_KINDS if is_kind(mode)), "not a file")
    via = f" (through a symbolic link to {os.readlink(path)!r})" if os.path.islink(path) else ""
    return ListingProblem("not_a_regular_file", f"{path} is {kind}{via}, not a regular file")


def _local_sha256(path: str, limit: int | None) -> str:
    """SHA-256 of a local regular file, refusing one that was swapped for anything else."""
    # O_NONBLOCK: should a FIFO have taken the file's place since the listing, opening it
    # returns at once instead of waiting for a writer, and fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path} is no longer a regular file")
        return sha256_stream(handle, limit)


def s3_content_version(etag: str, size: int) -> str:
    """The content version of an S3 object with this (unquoted) ETag and size."""
    return f"etag:{etag}:size:{size}"


def content_version(metadata: FileMetadata, max_bytes: int | None = None) -> str:
    """``etag:<etag>:size:<bytes>`` for S3 objects, ``sha256:<hex>`` for anything else.

    Files over ``max_bytes`` are not read (``unhashed:size:<bytes>``): they are refused as
    too large anyway.
    """
    size = metadata.size_in_bytes
    try:
        if is_s3(metadata.path):
            return s3_content_version(FileSystems.checksum(metadata.path).strip('"'), size)
        if max_bytes is not None and size > max_bytes:
            return f"unhashed:size:{size}"
        if is_local(metadata.path):
            return f"sha256:{_local_sha256(metadata.path, max_bytes)}"
        with FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f"sha256:{sha256_stream(f, max_bytes)}"
    except (BeamIOError, OSError, TooLong) as err:
        _LOG.warning("%s: cannot read its version: %s", metadata.path, err)
        return f"unreadable:size:{size}"


def unlisted_links(pattern: str) -> list[FileMetadata]:
    """Local entries matching ``pattern`` that Beam's match leaves out: links it cannot follow.

    Beam's local match walks the folder like this and drops every entry whose size it cannot
    read, which is what broken and looping links are; they are found here so that each gets its
    error row. Remote patterns and single files give none.
    """
    if not is_local(pattern) or not any(ch in pattern for ch in _GLOB_CHARS):
        return []
    prefix = re.match(r"^[^[*?]*", pattern).group(0)
    found = []
    for folder, _, names in os.walk(os.path.dirname(prefix) or "."):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not os.path.exists(path):
                found.append(FileMetadata(path, 0, 0.0))
    return list(FileSystems.get_filesystem(pattern).match_files(found, pattern))


class DescribeVideos(beam.DoFn):
    """Keeps the video files among the matches and gives each its content version."""

    def __init__(self, extensions: tuple[str, ...], max_bytes: int | None = None) -> None:
        self._extensions = extensions
        self._max_bytes = max_bytes
        self._videos = metrics.counter("videos_listed")
        self._other = metrics.counter("non_video_objects")
        self._special = metrics.counter("special_files")

    def setup(self) -> None:
        prefer_standard_retries()

    def process(self, metadata: FileMetadata) -> Iterator[VideoRef]:
        if not is_video(metadata.path, self._extensions):
            self._other.inc()
            return
        self._videos.inc()
        problem = local_problem(metadata.path) if is_local(metadata.path) else None
        if problem is not None:
            self._special.inc()
            _LOG.warning("%s: %s", problem.code, problem.detail)
            size = metadata.size_in_bytes
            yield VideoRef(metadata.path, f"unreadable:size:{size}", size, problem)
            return
        version = content_version(metadata, self._max_bytes)
        yield VideoRef(metadata.path, version, metadata.size_in_bytes)


class ListVideos(beam.PTransform):
    """PBegin -> VideoRef for every video file under ``uri``, or for those in one shard.

    ``shard`` is ``(index, count)``: only objects whose URI hashes to ``index`` of ``count``
    shards are listed (see ``pipelines.scan.sharding``), so parallel scans split an archive.
    """

    def __init__(
        self,
        uri: str,
        extensions: tuple[str, ...],
        shard: tuple[int, int] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        super().__init__()
        self._uri = uri
        self._extensions = extensions
        self._shard = shard
        self._max_bytes = max_bytes

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[VideoRef]:
        pattern = (
            pbegin
            | "Input" >> beam.Create([self._uri])
            | "As a file pattern" >> beam.Map(input_pattern)
        )
        matched = (
            pattern | "Match files" >> fileio.MatchAll(),
            pattern | "Find broken links" >> beam.FlatMap(unlisted_links),
        ) | "Every entry" >> beam.Flatten()
        if self._shard is not None:
            index, count = self._shard
            matched = matched | "Keep this shard" >> beam.Filter(
                lambda metadata: shard_of(metadata.path, count) == index
            )
        return matched | "Describe videos" >> beam.ParDo(
            DescribeVideos(self._extensions, self._max_bytes)
        )


@dataclass(frozen=True)
class Planned:
    """A listed video and whether this scan skips it."""

    ref: VideoRef
    skip: bool


class PlanScan(beam.DoFn):
    """Marks the videos this scan skips: those that already have a scored row for this content
    and model version, and those another live scan has claimed (``store.runs``).

    Error rows do not count, so failed videos are retried by the next scan; with ``rescan`` only
    another live scan's claim makes a video skipped.
    """

    def __init__(
        self,
        db_url: str,
        model_version: str,
        rescan: bool,
        run_id: str,
        liveness: runs.Liveness,
        retry: database.Retry = database.ONCE,
    ) -> None:
        self._db_url = db_url
        self._model_version = model_version
        self._rescan = rescan
        self._run_id = run_id
        self._liveness = liveness
        self._retry = retry
        self._skipped = metrics.counter("videos_skipped")

    def setup(self) -> None:
        self._engine = database.connect(self._db_url)
        self._tables = database.Tables.reflect(self._engine)

    def process(self, ref: VideoRef) -> Iterator[Planned]:
        skip = database.transaction(self._engine, lambda conn: self._skips(conn, ref), self._retry)
        if skip:
            self._skipped.inc()
        yield Planned(ref, skip)

    def _skips(self, conn: Connection, ref: VideoRef) -> bool:
        key = (ref.uri, ref.content_version, self._model_version)
        if not self._rescan and database.is_scored(conn, self._tables.results, *key):
            return True
        holder = runs.claim(conn, self._tables, key, self._run_id, self._liveness)
        if holder != self._run_id:
            _LOG.info("%s is being scored by scan %s: skipped", ref.uri, holder)
            return True
        return False

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
