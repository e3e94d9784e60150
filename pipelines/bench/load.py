"""`deeptrust bench --load`: the scan's peak memory against the number of objects, and
decoding's against a video's length and resolution, measured side by side in one run.

Every case runs in a fresh process (``bench.memory``), so each peak resident set is that case's
own; the scan's decoder child is reported apart from the scan process. The inputs are written
with OpenCV into ``--work`` (a temporary folder by default), so the check needs nothing beyond
the scan's own dependencies. It also times decoding in the decoder child against decoding in
the caller, the price of isolating the decoder. With ``--json`` the last stdout line is one JSON
object.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.synth import write_video
from pipelines.bench.memory import children_peak_rss_mb, in_fresh_process, peak_rss_mb

_OVERHEAD_VIDEOS = 20
# Every decoding case: (width, height, seconds, frames per second).
DECODE_CASES = {
    "short_320x240_10s": (320, 240, 10.0, 10.0),
    "medium_320x240_10min": (320, 240, 600.0, 10.0),
    "long_320x240_1h": (320, 240, 3600.0, 10.0),
    "hd_1280x720_10s": (1280, 720, 10.0, 10.0),
    "uhd_7680x4320_1s": (7680, 4320, 1.0, 10.0),
}


def _peak_mb() -> float:
    return round(peak_rss_mb(), 1)


def moving_disc(width: int, height: int, seconds: float, fps: float) -> Iterator[np.ndarray]:
    """A moving disc on a drifting background: cheap to encode, real to decode."""
    frame = np.zeros((height, width, 3), np.uint8)
    radius = max(1, min(width, height) // 4)
    for i in range(max(1, round(seconds * fps))):
        frame[:] = (i * 7) % 256
        center = (width // 2 + (i % 9) - 4, height // 2)
        cv2.circle(frame, center, radius, (255, 255, 255), -1)
        yield frame


def write_objects(folder: Path, count: int) -> Path:
    """``count`` small videos (32x32, three frames) under ``folder``, 100 per subfolder."""
    folder.mkdir(parents=True, exist_ok=True)
    first = write_video(folder / "seed.mp4", moving_disc(32, 32, 0.3, 10.0), 10.0)
    data = first.read_bytes()
    first.unlink()
    for i in range(count):
        target = folder / f"{i // 100:03d}" / f"object-{i:05d}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        # Distinct bytes (a trailing comment box) give each object its own content version.
        target.write_bytes(data + (16).to_bytes(4, "big") + b"free" + i.to_bytes(8, "big"))
    return folder


def decode_peak_rss(video: str, model: str) -> dict[str, Any]:
    """Decode one video as the scan does (in this process, no child), in a fresh process.

    Returns ``seconds``, ``rss_before_mb`` (with the face detector loaded) and ``peak_rss_mb``.
    """
    return in_fresh_process(_decode_case, video, model)


def scan_peak_rss(folder: str, model: str, db_url: str) -> dict[str, Any]:
    """Scan ``folder`` in a fresh process: its peak RSS, its decoder child's, and the summary."""
    return in_fresh_process(_scan_case, folder, model, db_url)


def _decode_case(video: str, model: str) -> dict[str, Any]:
    from model.bundle import detector_config, read_manifest
    from model.video import WindowSampler

    sampler = WindowSampler(detector_config(read_manifest(Path(model))))
    before = _peak_mb()
    start = time.perf_counter()
    sampled = sampler.sample(video)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "windows": len(sampled.frames),
        "rss_before_mb": before,
        "peak_rss_mb": _peak_mb(),
    }


def _scan_case(folder: str, model: str, db_url: str) -> dict[str, Any]:
    from pipelines.scan.run import run

    start = time.perf_counter()
    summary = run(["--input", folder, "--model", model, "--db", db_url])
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "videos": summary["videos_seen"],
        "scored": summary["scored"],
        "errors": summary["errors"],
        "status": summary["status"],
        "peak_rss_mb": _peak_mb(),
        # The decoder child has been waited for, so it counts among this process's children.
        "decoder_peak_rss_mb": round(children_peak_rss_mb(), 1),
    }


def isolation_overhead(video: str, model: str, videos: int = _OVERHEAD_VIDEOS) -> dict[str, Any]:
    """Milliseconds per video decoded here against in the decoder child (its start excluded)."""
    from model.bundle import detector_config, read_manifest
    from model.video import WindowSampler
    from pipelines.scan.isolation import DecoderProcess

    config = detector_config(read_manifest(Path(model)))
    sampler = WindowSampler(config)
    child = DecoderProcess(config, timeout_s=600.0)
    try:
        sampler.sample(video)  # warm both: graphs traced, child started
        child.sample(video)
        timings = {}
        for name, decode in (("in_process", sampler.sample), ("isolated", child.sample)):
            start = time.perf_counter()
            for _ in range(videos):
                decode(video)
            timings[f"{name}_ms"] = round((time.perf_counter() - start) / videos * 1000, 1)
    finally:
        child.close()
    return {"videos": videos, **timings}


def check(
    model: str, objects: int, baseline_objects: int, work: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every case, side by side."""
    result: dict[str, Any] = {"model": model}
    videos = work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for name, (width, height, seconds, fps) in DECODE_CASES.items():
        progress(f"loadcheck: writing and decoding {name}")
        frames = moving_disc(width, height, seconds, fps)
        path = write_video(videos / f"{name}.mp4", frames, fps)
        result[f"decode_{name}"] = decode_peak_rss(str(path), model)
    progress("loadcheck: decoding in the caller against in the decoder child")
    result["isolation"] = isolation_overhead(str(videos / "short_320x240_10s.mp4"), model)
    for count in (baseline_objects, objects):
        progress(f"loadcheck: scanning {count} small objects")
        folder = write_objects(work / f"objects-{count}", count)
        db_url = f"sqlite:///{work / f'objects-{count}.db'}"
        result[f"scan_{count}_objects"] = scan_peak_rss(str(folder), model, db_url)
    return result


def run_load(
    model: str | None,
    objects: int,
    baseline_objects: int,
    work: str | None,
    image_size: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The load check in ``work`` (default: a temporary folder), on ``model`` or, without one,
    on a bundle with a random backbone of ``image_size`` pixels made on the fly."""
    with tempfile.TemporaryDirectory(prefix="deeptrust-loadcheck-") as tmp:
        root = Path(work) if work else Path(tmp)
        if model is None:
            from pipelines.bench.throughput import random_bundle

            model = random_bundle(root / "bundle", image_size)
        return check(model, objects, baseline_objects, root, progress)
