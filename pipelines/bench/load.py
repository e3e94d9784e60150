"""Load check: the scan's peak memory against the number of objects, and decoding's against a
video's length and resolution, measured side by side in one run::

    python -m pipelines.bench.load --model BUNDLE [--objects 2000] [--baseline-objects 200] \\
        [--work DIR] [--json]

Every case runs in a fresh process, so each peak resident set (``ru_maxrss``) is that case's
own; the scan's decoder child is reported apart from the scan process. The inputs are written
with OpenCV into ``--work`` (a temporary folder by default), so the check needs nothing beyond
the scan's own dependencies. It also times decoding in the child process against decoding in
the caller, the price of isolating the decoder. With ``--json`` the last stdout line is one JSON
object; ``decode_peak_rss`` is what a benchmark can call for one video.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipelines.console import emit, progress

_FOURCC = "mp4v"
_OVERHEAD_VIDEOS = 20


def _peak_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


def write_video(path: Path, width: int, height: int, seconds: float, fps: float) -> Path:
    """A moving disc on a drifting background: cheap to encode, real to decode."""
    frames = max(1, round(seconds * fps))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {_FOURCC} video to {path}")
    frame = np.zeros((height, width, 3), np.uint8)
    radius = max(1, min(width, height) // 4)
    try:
        for i in range(frames):
            frame[:] = (i * 7) % 256
            center = (width // 2 + (i % 9) - 4, height // 2)
            cv2.circle(frame, center, radius, (255, 255, 255), -1)
            writer.write(frame)
    finally:
        writer.release()
    return path


def write_objects(folder: Path, count: int) -> Path:
    """``count`` small videos (32x32, three frames) under ``folder``, 100 per subfolder."""
    folder.mkdir(parents=True, exist_ok=True)
    first = write_video(folder / "seed.mp4", 32, 32, 0.3, 10.0)
    data = first.read_bytes()
    first.unlink()
    for i in range(count):
        target = folder / f"{i // 100:03d}" / f"object-{i:05d}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        # Distinct bytes (a trailing comment box) give each object its own content version.
        target.write_bytes(data + (16).to_bytes(4, "big") + b"free" + i.to_bytes(8, "big"))
    return folder


def _run_child(args: Sequence[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.bench.load", "--child", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load check case {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def decode_peak_rss(video: str, model: str) -> dict[str, Any]:
    """Decode one video as the scan does (in this process, no child), in a fresh process.

    Returns ``seconds``, ``rss_before_mb`` (with the face detector loaded) and ``peak_rss_mb``.
    """
    return _run_child(["decode", video, model])


def scan_peak_rss(folder: str, model: str, db_url: str) -> dict[str, Any]:
    """Scan ``folder`` in a fresh process: its peak RSS, its decoder child's, and the summary."""
    return _run_child(["scan", folder, model, db_url])


def _child_decode(video: str, model: str) -> dict[str, Any]:
    from model.bundle import detector_config, read_manifest
    from model.video import WindowSampler

    sampler = WindowSampler(detector_config(read_manifest(Path(model))))
    before = _peak_mb(resource.RUSAGE_SELF)
    start = time.perf_counter()
    sampled = sampler.sample(video)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "windows": len(sampled.frames),
        "rss_before_mb": before,
        "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
    }


def _child_scan(folder: str, model: str, db_url: str) -> dict[str, Any]:
    from pipelines.scan.run import run

    start = time.perf_counter()
    summary = run(["--input", folder, "--model", model, "--db", db_url])
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "videos": summary["videos_seen"],
        "scored": summary["scored"],
        "errors": summary["errors"],
        "status": summary["status"],
        "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
        # The decoder child has been waited for, so it counts among this process's children.
        "decoder_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN),
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


def check(model: str, objects: int, baseline_objects: int, work: Path) -> dict[str, Any]:
    """Every case, side by side."""
    result: dict[str, Any] = {"model": model}
    videos = work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    cases = {
        "short_320x240_10s": (320, 240, 10.0, 10.0),
        "medium_320x240_10min": (320, 240, 600.0, 10.0),
        "long_320x240_1h": (320, 240, 3600.0, 10.0),
        "hd_1280x720_10s": (1280, 720, 10.0, 10.0),
        "uhd_7680x4320_1s": (7680, 4320, 1.0, 10.0),
    }
    for name, (width, height, seconds, fps) in cases.items():
        progress(f"loadcheck: writing and decoding {name}")
        path = write_video(videos / f"{name}.mp4", width, height, seconds, fps)
        result[f"decode_{name}"] = decode_peak_rss(str(path), model)
    progress("loadcheck: decoding in the caller against in the decoder child")
    result["isolation"] = isolation_overhead(str(videos / "short_320x240_10s.mp4"), model)
    for count in (baseline_objects, objects):
        progress(f"loadcheck: scanning {count} small objects")
        folder = write_objects(work / f"objects-{count}", count)
        db_url = f"sqlite:///{work / f'objects-{count}.db'}"
        result[f"scan_{count}_objects"] = scan_peak_rss(str(folder), model, db_url)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        kind, *args = argv[1:]
        emit(_child_decode(*args) if kind == "decode" else _child_scan(*args))
        return 0
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench.load", description=__doc__)
    parser.add_argument("--model", required=True, help="a local model bundle")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--baseline-objects", type=int, default=200)
    parser.add_argument("--work", help="folder for the inputs (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deeptrust-loadcheck-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        result = check(args.model, args.objects, args.baseline_objects, work)
    if args.json:
        emit(result)
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
