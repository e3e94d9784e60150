"""`deeptrust bench --bank`: how long matching one video against a large bank takes.

The bank is made of synthetic videos as the scan stores them: each a random 256-bit hash per
video, drifting a few bits from second to second as footage does, with each frame's mirror
image beside it, so the index's chunk tables are as clustered as a real bank's. The queries are
videos of ``query_frames`` frames: copies of banked videos (their frames moved by ``copy_bits``
bits) and unrelated ones, matched one at a time as the scan matches them. The index is built
once, as a worker builds it when the bank loads.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import numpy as np

from model.fingerprint import HASH_BYTES, Fingerprint
from pipelines.scan.matching import Bank, MatchSettings
from pipelines.store.bank import BankedFrames

FRAMES_PER_VIDEO = 60  # a minute of banked video, one hash a second
DRIFT_BITS = 6  # bits a video's hash moves from one second to the next
COPY_BITS = 20  # bits a re-encoded copy's frame is from the banked one


def _flip(hashes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    unpacked = np.unpackbits(hashes, axis=1)
    for row in unpacked:
        row[rng.choice(unpacked.shape[1], bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def _video(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A video's hashes: a random first frame, then a few bits of drift per second."""
    hashes = [rng.integers(0, 256, (1, HASH_BYTES), dtype=np.uint8)]
    for _ in range(frames - 1):
        hashes.append(_flip(hashes[-1], DRIFT_BITS, rng))
    return np.concatenate(hashes)


def synthetic_bank(hashes: int, rng: np.random.Generator) -> tuple[BankedFrames, list]:
    """A bank of about ``hashes`` rows (frames and their mirror images), and its videos' hashes."""
    videos = max(1, hashes // (2 * FRAMES_PER_VIDEO))
    frames = [_video(rng, FRAMES_PER_VIDEO) for _ in range(videos)]
    mirrored = [_video(rng, FRAMES_PER_VIDEO) for _ in range(videos)]
    times = np.arange(FRAMES_PER_VIDEO, dtype=float)
    shelf = BankedFrames(
        hashes=np.concatenate(
            [np.concatenate([f, m]) for f, m in zip(frames, mirrored, strict=True)]
        ),
        video=np.repeat(np.arange(videos), 2 * FRAMES_PER_VIDEO),
        time_s=np.tile(np.concatenate([times, times]), videos),
        quality=np.full(2 * FRAMES_PER_VIDEO * videos, 100),
        videos=[(f"s3://bank/video-{i}.mp4", "etag:bench") for i in range(videos)],
    )
    return shelf, frames


def _query(hashes: np.ndarray) -> Fingerprint:
    return Fingerprint(
        hashes,
        hashes,
        np.full(len(hashes), 100),
        np.arange(len(hashes), dtype=float),
    )


def run_bank_bench(
    hashes: int, queries: int, query_frames: int, seed: int, progress: Callable[[str], None]
) -> dict:
    """Milliseconds to match one video against a bank of ``hashes`` rows, over ``queries``
    videos, half of them copies of banked ones."""
    rng = np.random.default_rng(seed)
    progress(f"bench: making a bank of {hashes} hashes")
    frames, videos = synthetic_bank(hashes, rng)
    started = time.perf_counter()
    shelf = Bank(frames, MatchSettings())
    build_s = time.perf_counter() - started
    asked = []
    for i in range(queries):
        if i % 2 == 0:
            source = videos[rng.integers(len(videos))][:query_frames]
            asked.append((True, _query(_flip(source, COPY_BITS, rng))))
        else:
            asked.append((False, _query(_video(rng, query_frames))))
    progress(f"bench: matching {queries} videos of {query_frames} frames")
    times_ms, right = [], 0
    for is_copy, query in asked:
        started = time.perf_counter()
        found = shelf.match(query)
        times_ms.append((time.perf_counter() - started) * 1000)
        right += (found is not None) == is_copy
    ms = np.array(times_ms)
    return {
        "bank_hashes": len(shelf),
        "bank_videos": shelf.videos,
        "query_frames": query_frames,
        "queries": queries,
        "index_build_s": round(build_s, 3),
        "match_ms_median": round(float(np.median(ms)), 2),
        "match_ms_p95": round(float(np.percentile(ms, 95)), 2),
        "match_ms_max": round(float(ms.max()), 2),
        "correct": right,
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }
