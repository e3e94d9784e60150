"""Decode videos into face-cropped windows and cut them into batches that mix videos.

Videos are dealt to ``decode_groups`` groups in turn. Each group is decoded by one DoFn call,
which yields a batch whenever it holds ``min_batch_windows`` windows and the rest when the
group ends; within a group, the next video decodes while the last one is scored. Groups decode
in parallel, only light references are shuffled (never decoded frames), and every batch is
emitted from ``process``: Beam 2.77's Dask runner drops whatever a DoFn emits in
``finish_bundle``, which is where ``BatchElements`` emits its last batch.

Each video is decoded in a child process (``pipelines.scan.isolation``) under a time limit, after a
size check on the listing's metadata, so a hostile upload costs one error row and nothing more.
A worker process's threads share ``decoders`` such children (``pipelines.scan.decoders``).

The decoder also hashes one frame a second (``model.fingerprint``). With a bank of known fakes
(``pipelines.scan.matching``), each decoded video is matched against it before it joins a batch:
a match leaves as a :class:`~pipelines.scan.outcomes.Matched` on the tagged output ``matched``
and never reaches the model. The bank is loaded once per worker process and checked for changes
at the start of every bundle.

A video that fails leaves the step as a :class:`~pipelines.scan.outcomes.Failed` on the tagged
output ``failed``; batches leave on the main output. :func:`decode_video` is the one path from a
listed video to its windows, which ``deeptrust score`` and ``deeptrust bench`` share.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from model.config import DetectorConfig
from model.errors import VideoError
from model.fingerprint import Fingerprint
from model.storage import is_s3, prefer_standard_retries, temporary_copy
from model.video import VideoInfo
from pipelines.scan import metrics
from pipelines.scan.decoders import ChildDecoders, Decoders, Sampler
from pipelines.scan.limits import DecodeLimits
from pipelines.scan.listing import VideoRef
from pipelines.scan.matching import Bank, KnownFakes
from pipelines.scan.outcomes import Failed, Matched
from pipelines.store import database

_LOG = logging.getLogger(__name__)
# The tags of DecodeVideos' outputs: batches of VideoClip on the main one, Failed and Matched on
# the others.
BATCHES, FAILED, MATCHED = "batches", "failed", "matched"


@dataclass(frozen=True)
class DecodedVideo:
    """What the verdict needs from a video besides its window scores."""

    ref: VideoRef
    info: VideoInfo
    starts: np.ndarray  # [W] seconds
    ends: np.ndarray  # [W] seconds
    frames_analyzed: int
    fingerprint: Fingerprint | None = None


@dataclass(frozen=True)
class VideoClip:
    """A decoded video: its windows' frames [W, T, S, S, 3] uint8 and masks [W, T]."""

    video: DecodedVideo
    frames: np.ndarray
    mask: np.ndarray

    @property
    def windows(self) -> int:
        return len(self.frames)


class AssignDecodeGroups(beam.DoFn):
    """VideoRef -> (group, VideoRef), dealing the videos of a bundle to the groups in turn.

    Groups then differ by at most one video per bundle, so workers that take the same number
    of groups get the same work: the local runner hands each of its threads whole groups, in
    turn. Each bundle starts at the group its first video's URI hashes to, so that bundles do
    not all favour the first group.
    """

    def __init__(self, groups: int) -> None:
        self._groups = groups

    def start_bundle(self) -> None:
        self._next: int | None = None

    def process(self, ref: VideoRef) -> Iterator[tuple[int, VideoRef]]:
        if self._next is None:
            self._next = zlib.crc32(ref.uri.encode()) % self._groups
        yield self._next, ref
        self._next = (self._next + 1) % self._groups


def _download(uri: str, name: str) -> None:
    """Copy ``uri`` through Beam's filesystems, which the pipeline's options configure."""
    with (
        open(name, "wb") as out,
        FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as src,
    ):
        shutil.copyfileobj(src, out)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path holding ``uri``'s bytes; remote objects are copied to a temporary file
    (``model.storage.temporary_copy``), deleted on exit."""
    if not is_s3(uri) and "://" not in uri:
        yield uri
        return
    try:
        path = temporary_copy(uri, _download)
    except Exception as err:
        raise _fetch_error(uri, err) from err
    try:
        yield str(path)
    finally:
        path.unlink()


def _fetch_error(uri: str, err: Exception) -> VideoError:
    """The error row's reason for a failed read: a refused or missing object, or any other."""
    status = getattr(err, "code", None)  # Beam's S3ClientError carries the HTTP status
    if is_s3(uri) and status == 403:
        return VideoError("s3_forbidden", f"S3 refused to read {uri}: {err}")
    if is_s3(uri) and (status == 404 or isinstance(err, FileNotFoundError)):
        return VideoError("s3_not_found", f"{uri} is gone since the listing: {err}")
    return VideoError("fetch_failed", f"could not read {uri}: {err}")


def decode_video(ref: VideoRef, sampler: Sampler, max_bytes: int) -> VideoClip | Failed:
    """``ref``'s windows, or why it has none: over ``max_bytes`` (from the listing, before any
    download), unreadable, or failed in the decoder. Never raises for the video's sake."""
    try:
        if ref.problem is not None:  # the listing found no regular file: never opened
            raise VideoError(ref.problem.code, ref.problem.detail)
        if ref.size_bytes > max_bytes:
            raise VideoError(
                "too_large",
                f"{ref.size_bytes} bytes, over the {max_bytes} allowed (--max_video_bytes)",
            )
        with local_copy(ref.uri) as path:
            sampled = sampler.sample(path)
    except VideoError as err:
        return _failed(ref, err.code, err.detail)
    except Exception as err:  # a failed video is a row, never a failed pipeline
        _LOG.exception("decoding %s failed", ref.uri)
        return _failed(ref, "decode_failed", f"{type(err).__name__}: {err}")
    video = DecodedVideo(
        ref=ref,
        info=sampled.info,
        starts=sampled.starts,
        ends=sampled.ends,
        frames_analyzed=int(sampled.mask.sum()),
        fingerprint=sampled.fingerprint,
    )
    return VideoClip(video, sampled.frames, sampled.mask)


def _failed(ref: VideoRef, code: str, detail: str) -> Failed:
    _LOG.warning("%s: %s: %s", ref.uri, code, detail)
    return Failed(ref, code, detail)


class DecodeVideos(beam.DoFn):
    """(group, [VideoRef]) -> batches (lists of VideoClip), Failed on the ``failed`` tag and,
    with ``known`` fakes to match against, Matched on the ``matched`` tag.

    The copies of this step in one worker process (one per thread) share the decoders that
    ``decoders`` describes (by default one child process), and the bank.
    """

    def __init__(
        self,
        config: DetectorConfig,
        min_batch_windows: int,
        limits: DecodeLimits | None = None,
        decoders: Decoders | None = None,
        known: KnownFakes | None = None,
    ) -> None:
        self._config = config
        self._min_batch_windows = min_batch_windows
        self._limits = DecodeLimits() if limits is None else limits
        self._decoder_spec = ChildDecoders() if decoders is None else decoders
        self._known = known
        self._matched = metrics.counter("videos_matched")
        self._decoded = metrics.counter("videos_decoded")
        self._failed = metrics.counter("videos_failed")
        self._windows = metrics.counter("windows")
        self._frames = metrics.counter("frames_decoded")
        self._decode_ms = metrics.distribution("decode_ms")

    def setup(self) -> None:
        prefer_standard_retries()
        self._resources = contextlib.ExitStack()
        self._decoders = self._resources.enter_context(
            self._decoder_spec.open(self._config, self._limits.timeout_s)
        )
        # One thread fetches and decodes the next video while this one's batch is scored.
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-ahead")
        self._bank_db = None if self._known is None else database.connect(self._known.db_url)
        self._bank: Bank | None = None

    def start_bundle(self) -> None:
        if self._known is not None:
            self._bank = self._known.current(self._bank_db)

    def teardown(self) -> None:
        self._ahead.shutdown(cancel_futures=True)
        self._resources.close()
        if self._bank_db is not None:
            self._bank_db.dispose()

    def process(
        self, group: tuple[int, Iterable[VideoRef]]
    ) -> Iterator[list[VideoClip] | beam.pvalue.TaggedOutput]:
        _, refs = group
        batch: list[VideoClip] = []
        windows = videos = failed = 0
        for outcome in self._decoded_ahead(refs):
            videos += 1
            if isinstance(outcome, Failed):
                self._failed.inc()
                failed += 1
                yield beam.pvalue.TaggedOutput(FAILED, outcome)
                continue
            self._decoded.inc()
            matched = self._match(outcome.video)
            if matched is not None:
                self._matched.inc()
                yield beam.pvalue.TaggedOutput(MATCHED, matched)
                continue
            self._windows.inc(outcome.windows)
            self._frames.inc(outcome.video.frames_analyzed)
            batch.append(outcome)
            windows += outcome.windows
            if windows >= self._min_batch_windows:
                yield batch
                batch, windows = [], 0
        if batch:
            yield batch
        _LOG.info("decoded a group of %d videos, %d of them failed", videos, failed)

    def _match(self, video: DecodedVideo) -> Matched | None:
        """The video as a known fake, when it matches one in the bank."""
        if self._bank is None or video.fingerprint is None:
            return None
        found = self._bank.match(video.fingerprint)
        if found is None:
            return None
        _LOG.info(
            "%s matches the known fake %s (%.0f %% of its frames, mean distance %.1f)",
            video.ref.uri,
            found.video_uri,
            100 * found.share,
            found.distance,
        )
        return Matched(video.ref, video.info, found, video.fingerprint)

    def _decoded_ahead(self, refs: Iterable[VideoRef]) -> Iterator[VideoClip | Failed]:
        """Each video's outcome, in order, with the next video decoding while the caller works.

        Video i+1 is submitted before video i is awaited, so the one decode thread starts it as
        soon as i is done and the child decodes it while the caller scores i. No more than one
        video is decoded ahead.
        """
        ahead: Future[tuple[VideoClip | Failed, float]] | None = None
        for ref in refs:
            current, ahead = ahead, self._ahead.submit(self._timed_decode, ref)
            if current is not None:
                yield self._collect(current)
        if ahead is not None:
            yield self._collect(ahead)

    def _timed_decode(self, ref: VideoRef) -> tuple[VideoClip | Failed, float]:
        start = time.perf_counter()
        outcome = decode_video(ref, self._decoders, self._limits.max_bytes)
        return outcome, (time.perf_counter() - start) * 1000

    def _collect(self, decoding: Future[tuple[VideoClip | Failed, float]]) -> VideoClip | Failed:
        outcome, decode_ms = decoding.result()
        self._decode_ms.update(round(decode_ms))  # here: Beam counts no update from other threads
        return outcome


def _is_batch(item: object) -> bool:
    return isinstance(item, list)


def _is_failed(item: object) -> bool:
    return isinstance(item, Failed)


def _is_matched(item: object) -> bool:
    return isinstance(item, Matched)


class DecodeGroups(beam.PTransform):
    """(group, [VideoRef]) -> ``{BATCHES: window batches (lists of VideoClip), FAILED: Failed,
    MATCHED: Matched}``; nothing is matched without ``known`` fakes.

    Per element, with no grouping of its own: the scan feeds it grouped listings, the watcher
    (``pipelines.watch``) the videos of one receive from its queue.
    """

    def __init__(
        self,
        config: DetectorConfig,
        min_batch_windows: int,
        limits: DecodeLimits,
        decoders: Decoders | None = None,
        known: KnownFakes | None = None,
    ) -> None:
        super().__init__()
        self._decode = DecodeVideos(config, min_batch_windows, limits, decoders, known)

    def expand(
        self, groups: beam.PCollection[tuple[int, Iterable[VideoRef]]]
    ) -> dict[str, beam.PCollection]:
        decoded = groups | "Decode and batch" >> beam.ParDo(self._decode).with_outputs(
            FAILED, MATCHED, main=BATCHES
        )
        # Beam 2.77's Dask runner ignores the tags and hands every output of a DoFn to each of
        # its consumers, so each side keeps its own kind (on other runners, everything passes).
        return {
            BATCHES: decoded[BATCHES] | "Batches only" >> beam.Filter(_is_batch),
            FAILED: decoded[FAILED] | "Failures only" >> beam.Filter(_is_failed),
            MATCHED: decoded[MATCHED] | "Matches only" >> beam.Filter(_is_matched),
        }


class ExtractWindows(beam.PTransform):
    """VideoRef -> ``{BATCHES: window batches (lists of VideoClip), FAILED: Failed,
    MATCHED: Matched}``, decoded in ``groups`` groups; nothing is matched without ``known``
    fakes."""

    def __init__(
        self,
        config: DetectorConfig,
        groups: int,
        min_batch_windows: int,
        limits: DecodeLimits,
        decoders: Decoders | None = None,
        known: KnownFakes | None = None,
    ) -> None:
        super().__init__()
        self._groups = groups
        self._decode = DecodeGroups(config, min_batch_windows, limits, decoders, known)

    def expand(self, refs: beam.PCollection[VideoRef]) -> dict[str, beam.PCollection]:
        return (
            refs
            | "Assign decode groups" >> beam.ParDo(AssignDecodeGroups(self._groups))
            | "Group videos" >> beam.GroupByKey()
            | "Decode" >> self._decode
        )
