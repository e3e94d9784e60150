"""`deeptrust bench`: the scan's throughput, measured side by side in one run.

Every number comes from the same videos in the same run, so a machine busy with other work slows
them alike and their ratios hold where absolute numbers would not. Frames per second always
counts the frames a verdict rests on: sampled frames fed to the model.

- ``decode_fps``: decoding and sampling windows (MTCNN face boxes, crops) in one process.
- ``model_fps``: the detector alone over the decoded windows, in the scan's model-call size and
  from as many threads as the scan has workers: the most the scan could reach.
- ``prototype_fps``: the research prototype's loop (``bench.prototype``), in float32 as it ran.
  It and the model run half before the scan and half after, so a machine whose speed drifts
  during the run slows all three alike.
- ``scan_fps``, ``scan_videos_per_min``: ``pipelines.scan.run`` over the corpus into a temporary
  SQLite database, from start to finish, start-up included.
- ``peak_rss_short_mb``, ``peak_rss_long_mb``: peak memory of decoding and scoring a short and a
  long video, each in a fresh process (``bench.memory``).

``--options`` adds ``pipelines.bench.options`` (handed in by the command line): the fast path's
options one against another.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from sqlalchemy import select

from model.backbone import RANDOM
from model.bundle import load_bundle, save_bundle
from model.config import BackboneConfig, DetectorConfig
from model.detector import Detector
from model.quantize import calibration_frames
from model.runtime import AUTO, FLOAT32
from model.synth import write_corpus, write_video
from pipelines.bench.memory import in_fresh_process, peak_rss_mb, reset_peak_rss
from pipelines.bench.prototype import prototype_score
from pipelines.scan.decode import VideoClip, decode_video
from pipelines.scan.decoders import InProcessDecoders, Sampler
from pipelines.scan.limits import DecodeLimits
from pipelines.scan.listing import is_video
from pipelines.scan.one_video import local_ref, score_video
from pipelines.scan.options import ScanOptions
from pipelines.scan.outcomes import Failed
from pipelines.scan.run import run as run_scan
from pipelines.store import database

# The fast path on a 2-core CPU worker: two threads sharing the model, one decode group per
# thread (the local runner hands each thread whole groups, and a thread decodes its next video
# while it scores the last only within a group), and one decoder process for both threads.
FAST_SCAN_ARGS = (
    "--direct_num_workers=2",
    "--direct_running_mode=multi_threading",
    "--decode_groups=2",
    "--decoders=1",
)
# Videos the prototype loop scores: its cost per video does not depend on the video.
PROTOTYPE_VIDEOS = 8
# Frames of a source that a looped clip plays forth and back (10 s at 25 fps).
LOOP_FRAMES = 250


@dataclass(frozen=True)
class BenchSettings:
    """What to measure on: the corpus, the model, and the fast path's precision and options."""

    videos: int = 16
    video_seconds: float = 30.0
    image_size: int = 224
    precision: str = AUTO
    model: str | None = None
    corpus: str | None = None
    short_seconds: float = 10.0
    long_seconds: float = 600.0
    scan_args: tuple[str, ...] = FAST_SCAN_ARGS
    seed: int = 0


@dataclass(frozen=True)
class Rate:
    """Frames fed to the model over the seconds it took."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.frames + other.frames, self.seconds + other.seconds)


@dataclass
class Workspace:
    """The bench's inputs once prepared: corpus videos, bundle, and its loaded fast detector."""

    root: Path
    corpus: str
    videos: list[str]
    bundle: str
    detector: Detector
    manifest: dict[str, Any]
    # Each video's label (1 = fake) and whether only part of it is manipulated, by path.
    labels: dict[str, tuple[int, bool]] = field(default_factory=dict)


# --- inputs ----------------------------------------------------------------------------------


def list_videos(corpus: str | Path) -> list[str]:
    """The videos under ``corpus`` that a scan with default options would score."""
    extensions = PipelineOptions([]).view_as(ScanOptions).extensions
    return [
        str(path)
        for path in sorted(Path(corpus).rglob("*"))
        if path.is_file() and is_video(str(path), extensions)
    ]


def read_frames(path: str, limit: int) -> tuple[list[np.ndarray], float]:
    """The first ``limit`` frames of a video (BGR) and its frame rate."""
    capture = cv2.VideoCapture(path)
    frames = []
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        ok, frame = capture.read()
        while ok and len(frames) < limit:
            frames.append(frame)
            ok, frame = capture.read()
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path} holds no decodable frame")
    return frames, fps


def loop_clip(source: str, out: Path, seconds: float) -> Path:
    """Write ``seconds`` of ``source``'s start played forth and back, one frame at a time."""
    frames, fps = read_frames(source, LOOP_FRAMES)
    cycle = frames + frames[-2:0:-1] if len(frames) > 2 else frames
    count = max(1, round(seconds * fps))
    return write_video(out, (cycle[index % len(cycle)] for index in range(count)), fps)


def synth_corpus(
    out: Path, settings: BenchSettings, progress: Callable[[str], None]
) -> tuple[Path, dict[str, tuple[int, bool]]]:
    """A synthetic corpus whose videos are looped to ``video_seconds``, a typical upload length,
    and each video's label (1 = fake) and whether only part of it is manipulated."""
    short = write_corpus(out / "synth", settings.videos, seed=settings.seed)
    corpus = out / "corpus"
    labels = {}
    for video in short:
        looped = loop_clip(
            str(video.path), corpus / video.path.relative_to(out / "synth"), settings.video_seconds
        )
        partial = video.manipulated_start_s is not None and (
            video.manipulated_start_s > 0 or video.manipulated_end_s < video.seconds
        )
        labels[str(looped)] = (int(video.label == "fake"), partial)
    progress(f"bench: {len(short)} synthetic videos of {settings.video_seconds:g} s in {corpus}")
    return corpus, labels


def folder_labels(videos: Sequence[str]) -> dict[str, tuple[int, bool]]:
    """Labels of a corpus laid out in real/ and fake/ folders (partial manipulation unknown), by
    absolute path, as the scan records each video's URI."""
    return {
        os.path.abspath(path): (int(Path(path).parent.name == "fake"), False)
        for path in videos
        if Path(path).parent.name in ("real", "fake")
    }


def random_bundle(out: Path, image_size: int, videos: Sequence[str]) -> str:
    """A bundle with the default settings and an untrained (random) backbone and head, its int8
    calibration frames taken from ``videos``."""
    config = DetectorConfig(backbone=BackboneConfig(input_size=image_size))
    detector = Detector.build(config, RANDOM)
    save_bundle(
        out,
        detector,
        metrics={},
        training={"source": "deeptrust bench, untrained"},
        calibration=calibration_frames(config, videos, lambda _: None),
    )
    return str(out)


def prepare(root: Path, settings: BenchSettings, progress: Callable[[str], None]) -> Workspace:
    if settings.corpus:
        corpus, labels = Path(settings.corpus), None
    else:
        corpus, labels = synth_corpus(root, settings, progress)
    videos = list_videos(corpus)
    if not videos:
        raise ValueError(f"{corpus} holds no video")
    bundle = settings.model or random_bundle(root / "bundle", settings.image_size, videos)
    detector, manifest = load_bundle(bundle, precision=settings.precision)
    progress(
        f"bench: {len(videos)} videos, model {manifest['model_version']} "
        f"({manifest['backbone']['weights_label']}), precision {detector.runtime.precision}"
    )
    labels = labels if labels is not None else folder_labels(videos)
    return Workspace(root, str(corpus), videos, bundle, detector, manifest, labels)


# --- measurements ----------------------------------------------------------------------------


def timed(work: Callable[[], int]) -> Rate:
    """Run ``work``, which returns the frames it fed to the model, and time it."""
    start = time.perf_counter()
    frames = work()
    return Rate(frames, time.perf_counter() - start)


def decoded_clip(path: str, sampler: Sampler) -> VideoClip:
    """``path``'s windows by the scan's decode path; the bench's videos must all decode."""
    decoded = decode_video(local_ref(path), sampler, DecodeLimits.max_bytes)
    if isinstance(decoded, Failed):
        raise RuntimeError(f"the bench's video {path} did not decode: {decoded}")
    return decoded


def measure_decode(space: Workspace) -> tuple[Rate, list[VideoClip]]:
    """Sample every video into windows, in this process; returns them too, for
    ``measure_model``."""
    decoded: list[VideoClip] = []
    with InProcessDecoders().open(space.detector.config, DecodeLimits.timeout_s) as sampler:
        decoded_clip(space.videos[0], sampler)  # traces MTCNN's graphs, as a worker does once

        def work() -> int:
            decoded.extend(decoded_clip(path, sampler) for path in space.videos)
            return sum(clip.video.frames_analyzed for clip in decoded)

        return timed(work), decoded


def stacked_windows(decoded: Sequence[VideoClip]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([v.frames for v in decoded]), np.concatenate([v.mask for v in decoded])


def measure_model(
    detector: Detector, frames: np.ndarray, mask: np.ndarray, batch: int, threads: int = 1
) -> Rate:
    """The detector alone over decoded windows: ``batch`` windows a call, from ``threads``
    threads sharing the model, as the scan's worker threads share it."""
    detector.warm_up()
    calls = [(frames[i : i + batch], mask[i : i + batch]) for i in range(0, len(frames), batch)]

    def work() -> int:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda call: detector.score_windows(*call), calls))
        return int(mask.sum())

    return timed(work)


class PrototypeLoop:
    """The prototype's loop, in float32 as it ran, with its models loaded and warm."""

    def __init__(self, bundle: str, warm_up_video: str) -> None:
        from mtcnn import MTCNN  # the prototype's detector, called as the prototype called it

        self._detector, _ = load_bundle(bundle, precision=FLOAT32)
        self._mtcnn = MTCNN()
        prototype_score(warm_up_video, self._detector, self._mtcnn)

    def measure(self, videos: Sequence[str]) -> Rate:
        return timed(
            lambda: sum(prototype_score(path, self._detector, self._mtcnn)[1] for path in videos)
        )


@dataclass(frozen=True)
class Scanned:
    """One scan of the bench's corpus: its rate, summary, and each video's score."""

    rate: Rate
    summary: dict[str, Any]
    scores: dict[str, float]

    @property
    def videos_per_min(self) -> float:
        return 60 * self.summary["scored"] / self.rate.seconds


def scan_results(db_url: str, run_id: str) -> tuple[int, dict[str, float]]:
    """Frames the run's verdicts rest on, as the moderation table records them, and each
    video's score."""
    engine = database.connect(db_url)
    try:
        results = database.Tables.reflect(engine).results
        query = select(results.c.video_uri, results.c.score, results.c.frames_analyzed).where(
            results.c.run_id == run_id
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        return sum(r.frames_analyzed or 0 for r in rows), {r.video_uri: r.score for r in rows}
    finally:
        engine.dispose()


def measure_scan(space: Workspace, precision: str, scan_args: Sequence[str]) -> Scanned:
    """``pipelines.scan.run`` from start to finish over the corpus, into a fresh SQLite file."""
    fd, name = tempfile.mkstemp(prefix="bench-", suffix=".db", dir=space.root)
    os.close(fd)
    db_url = f"sqlite:///{name}"
    where = ["--input", space.corpus, "--model", space.bundle, "--db", db_url]
    start = time.perf_counter()
    summary = run_scan([*where, "--precision", precision, *scan_args])
    seconds = time.perf_counter() - start
    if summary["errors"] or summary["scored"] != summary["videos_seen"]:
        raise RuntimeError(f"the bench's scan did not score every video: {summary}")
    frames, scores = scan_results(db_url, summary["run_id"])
    return Scanned(Rate(frames, seconds), summary, scores)


def decode_and_score(bundle: str, video: str, precision: str) -> float:
    """Peak RSS (MiB) of decoding and scoring ``video``, with ``bundle`` loaded and warm.

    Loading and tracing the model peak above what scoring needs, which would hide any growth
    with the video's length, so the peak starts over once the model is warm.
    """
    detector, _ = load_bundle(bundle, precision=precision)
    config = detector.config
    with InProcessDecoders().open(config, DecodeLimits.timeout_s) as sampler:
        detector.warm_up()
        reset_peak_rss()
        outcome = score_video(
            local_ref(video), sampler, detector, DecodeLimits.max_bytes, config.decision
        )
    if isinstance(outcome, Failed):
        raise RuntimeError(f"the bench's video {video} was not scored: {outcome}")
    return peak_rss_mb()


def measure_peak_rss(space: Workspace, settings: BenchSettings) -> tuple[float, float]:
    """Peak RSS of decoding and scoring a short and a long clip of the same source."""
    source = space.videos[0]
    short = loop_clip(source, space.root / "rss" / "short.mp4", settings.short_seconds)
    long = loop_clip(source, space.root / "rss" / "long.mp4", settings.long_seconds)
    precision = space.detector.runtime.precision
    return (
        in_fresh_process(decode_and_score, space.bundle, str(short), precision),
        in_fresh_process(decode_and_score, space.bundle, str(long), precision),
    )


# --- the run ---------------------------------------------------------------------------------


def scan_shape(scan_args: Sequence[str]) -> tuple[int, int]:
    """Windows in the scan's typical model call, and its worker threads (which share the model).

    Decoding cuts a batch as soon as it holds ``min_batch_windows`` windows.
    """
    options = PipelineOptions(list(scan_args))
    workers = options.view_as(DirectOptions).direct_num_workers
    return options.view_as(ScanOptions).min_batch_windows, workers or os.cpu_count() or 1


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3)
