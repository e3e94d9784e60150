"""Match a new video against the bank of known fakes, the way vPDQ matches videos.

vPDQ compares two videos frame by frame: frames whose PDQ quality is under ``quality`` are
dropped from both; a frame matches when some frame of the other video lies within Hamming
distance ``distance``; a video matches a banked one when at least ``query_share`` of its frames
match that video's, and at least ``bank_share`` of the banked video's frames match it (vPDQ's
defaults: 50, 31, 80 % and 0 %, so a copy cut to a part of the banked video matches too).
Banked frames include each frame's mirror image (``pipelines.store.bank``), so a flipped copy
matches as well.

**The index.** Comparing every frame with every banked hash costs (frames x bank) popcounts.
Instead, :class:`HashIndex` is a multi-index hash (Norouzi, Punjani and Fleet, CVPR 2012): each
256-bit hash is cut into 16 chunks of 16 bits, and each chunk position has a table from chunk
value to the banked rows holding it. By the pigeonhole principle, two hashes within distance
``d`` agree to within ``d // 16`` bits in at least one chunk (were every chunk ``d // 16 + 1``
or more bits apart, they would be at least ``16 * (d // 16 + 1) > d`` apart). So a query looks
up, in each of the 16 tables, its own chunk and every value within ``d // 16`` bits of it (17
lookups a table at the default 31), and only the rows found are compared in full. No row
within ``d`` is missed, and at 100,000 banked hashes a frame meets a few hundred candidates.
The tables are sorted arrays with offsets, so a whole video's frames are looked up in a few
NumPy operations.

**Per worker.** :class:`KnownFakes` describes the bank a scan matches against; each worker
process loads it once, shared by its threads, and at the start of every bundle checks the bank's
stamp and reloads a bank that changed.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine

from model.fingerprint import HASH_BYTES, Fingerprint
from pipelines.store import bank, database

_LOG = logging.getLogger(__name__)
CHUNKS = 16
CHUNK_BITS = 16


@dataclass(frozen=True)
class MatchSettings:
    """vPDQ's thresholds; the scan's ``--match_*`` options."""

    quality: int = 50
    distance: int = 31
    query_share: float = 0.8
    bank_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.quality <= 100:
            raise ValueError("--match_quality must be 0..100")
        if not 0 <= self.distance < 128:
            raise ValueError("--match_distance must be 0..127")
        if not 0.0 < self.query_share <= 1.0 or not 0.0 <= self.bank_share <= 1.0:
            raise ValueError("--match_query_share must be in (0, 1], --match_bank_share in [0, 1]")


@dataclass(frozen=True)
class BankMatch:
    """The banked video a new video matched, the share of the new video's frames that matched
    it, and their mean Hamming distance to it."""

    video_uri: str
    content_version: str
    share: float
    distance: float


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of packed hashes viewed as [N, 4] uint64."""
    return np.bitwise_count(words).sum(axis=1)


def _flip_masks(radius: int) -> np.ndarray:
    """Every 16-bit mask of at most ``radius`` set bits (0 first)."""
    masks = [0]
    for bits in range(1, radius + 1):
        for chosen in itertools.combinations(range(CHUNK_BITS), bits):
            masks.append(sum(1 << b for b in chosen))
    return np.array(masks, np.int64)


def _chunks(hashes: np.ndarray) -> np.ndarray:
    """[N, 32] packed hashes -> [N, 16] chunk values."""
    return hashes.reshape(-1, CHUNKS, 2).astype(np.int64) @ np.array([256, 1])


class HashIndex:
    """Banked hashes, indexed for ``near`` (see the module's docstring)."""

    def __init__(self, hashes: np.ndarray, distance: int) -> None:
        self._words = np.ascontiguousarray(hashes).view(np.uint64).reshape(-1, HASH_BYTES // 8)
        self._distance = distance
        self._masks = _flip_masks(distance // CHUNKS)
        chunks = _chunks(hashes)  # [N, 16]
        self._order = np.argsort(chunks, axis=0, kind="stable").T.copy()  # [16, N]
        ordered = np.take_along_axis(chunks, self._order.T, axis=0).T  # [16, N] sorted
        values = np.arange((1 << CHUNK_BITS) + 1)
        self._offsets = np.stack([np.searchsorted(row, values) for row in ordered])  # [16, 65537]

    def __len__(self) -> int:
        return len(self._words)

    def near(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query row, banked row, distance) within the index's distance."""
        empty = np.zeros(0, np.int64)
        if not len(self) or not len(queries):
            return empty, empty, empty
        probes = _chunks(queries)[:, :, None] ^ self._masks[None, None, :]  # [M, 16, K]
        table = np.broadcast_to(np.arange(CHUNKS)[None, :, None], probes.shape)
        starts = self._offsets[table, probes].ravel()
        counts = self._offsets[table, probes + 1].ravel() - starts
        asked = np.broadcast_to(np.arange(len(queries))[:, None, None], probes.shape).ravel()
        hits = counts > 0
        starts, counts, asked, chunk = starts[hits], counts[hits], asked[hits], table.ravel()[hits]
        # Each hit is a run of ``count`` rows from ``start`` in its chunk's order.
        run_of = np.repeat(np.arange(len(counts)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = self._order[chunk[run_of], starts[run_of] + within]
        pairs = np.unique(asked[run_of] * len(self) + rows)
        query_rows, bank_rows = np.divmod(pairs, len(self))
        query_words = np.ascontiguousarray(queries).view(np.uint64).reshape(-1, HASH_BYTES // 8)
        distances = _popcount(query_words[query_rows] ^ self._words[bank_rows])
        close = distances <= self._distance
        return query_rows[close], bank_rows[close], distances[close]


class Bank:
    """The bank of known fakes, ready to match: its frames of sufficient quality, indexed."""

    def __init__(self, frames: bank.BankedFrames, settings: MatchSettings) -> None:
        self._frames = frames
        self._settings = settings
        self._index = HashIndex(frames.hashes, settings.distance)
        # A banked video's frames, counted by time: a frame and its mirror image are one frame.
        keys = np.stack([frames.video, np.round(frames.time_s * 1000).astype(np.int64)], axis=1)
        unique = np.unique(keys, axis=0) if len(keys) else keys
        self._frames_per_video = np.bincount(unique[:, 0], minlength=len(frames.videos))

    @property
    def videos(self) -> int:
        return len(self._frames.videos)

    def __len__(self) -> int:
        return len(self._index)

    def match(self, fingerprint: Fingerprint | None) -> BankMatch | None:
        """The banked video that ``fingerprint`` matches best (largest share, then smallest
        distance), or None when it matches none."""
        if fingerprint is None or not len(self):
            return None
        good = fingerprint.quality >= self._settings.quality
        queries = fingerprint.hashes[good]
        if not len(queries):
            return None
        query_rows, bank_rows, distances = self._index.near(queries)
        if not len(query_rows):
            return None
        videos = self._frames.video[bank_rows]
        best: BankMatch | None = None
        for video in np.unique(videos):
            mine = videos == video
            # Each query frame's closest frame of this video.
            closest: dict[int, int] = {}
            for row, d in zip(query_rows[mine].tolist(), distances[mine].tolist(), strict=True):
                closest[row] = min(d, closest.get(row, d))
            share = len(closest) / len(queries)
            times = np.unique(np.round(self._frames.time_s[bank_rows[mine]] * 1000))
            bank_share = len(times) / self._frames_per_video[video]
            if share < self._settings.query_share or bank_share < self._settings.bank_share:
                continue
            uri, version = self._frames.videos[video]
            found = BankMatch(uri, version, share, float(np.mean(list(closest.values()))))
            if best is None or (found.share, -found.distance) > (best.share, -best.distance):
                best = found
        return best


_CACHE: dict[tuple[str, MatchSettings], tuple[tuple[int, int | None], Bank]] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class KnownFakes:
    """Where a scan's bank lives and how it matches: a small picklable description that a step
    carries to its workers."""

    db_url: str
    settings: MatchSettings = MatchSettings()
    retry: database.Retry = database.ONCE

    def current(self, engine: Engine) -> Bank:
        """This process's bank, read through ``engine`` (on ``db_url``): loaded by the first
        caller, reloaded when its stamp has changed since."""
        key = (self.db_url, self.settings)
        table = bank.bank_table(engine)
        with _CACHE_LOCK:
            now = database.transaction(engine, lambda c: bank.stamp(c, table), self.retry)
            cached = _CACHE.get(key)
            if cached is not None and cached[0] == now:
                return cached[1]
            frames = database.transaction(
                engine, lambda c: bank.load_frames(c, table, self.settings.quality), self.retry
            )
            loaded = Bank(frames, self.settings)
            _CACHE[key] = (now, loaded)
        _LOG.info("bank of known fakes: %d frames of %d videos", len(loaded), loaded.videos)
        return loaded


def add_match_options(parser: argparse.ArgumentParser) -> None:
    """The scan's ``--match_*`` options, with vPDQ's defaults."""
    defaults = MatchSettings()
    parser.add_argument(
        "--match_quality",
        type=int,
        default=defaults.quality,
        help="frames of lower PDQ quality (0..100) are left out of matching (default: %(default)s)",
    )
    parser.add_argument(
        "--match_distance",
        type=int,
        default=defaults.distance,
        help="two frames match within this Hamming distance of their 256-bit PDQ hashes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--match_query_share",
        type=float,
        default=defaults.query_share,
        help="a video matches a banked one when this share of its frames match "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--match_bank_share",
        type=float,
        default=defaults.bank_share,
        help="... and this share of the banked video's frames match it (default: %(default)s)",
    )
