"""`deeptrust report`: a static HTML page of one scan's flagged videos, for moderators.

``DIR/index.html`` lists the flagged videos, highest score first. Each gets a plot of its window
scores over time (from the row's ``segments``) and a strip of face crops from its most
suspicious window, decoded again from the video itself (a local path or ``s3://``). The crops use
the face settings of the bundle given with ``--model``, else the defaults. A video that cannot be
read gets a placeholder that says why; the report itself does not fail. The page comes from the
templates the review app shares (``pages``), which escape everything that comes from the
database; file names never derive from it.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from sqlalchemy import Engine, inspect, select

from model.config import FaceCropConfig
from model.errors import VideoError
from model.faces import FaceDetector
from model.frames import center_box, crop, enlarge_box
from model.storage import fetch, is_s3
from model.video import probe
from pipelines.moderation import pages
from pipelines.store import database, runs

STRIP_FRAMES = 6
THUMBNAIL_PX = 160
PLOTS = "plots"
# A run still going, or one that died without finishing: its counts are what it wrote so far.
UNFINISHED = ("running", "abandoned")
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlaggedVideo:
    """A flagged row with what the page shows of it."""

    row: dict[str, Any]
    segments: list[dict[str, float]]
    score_plot: str | None  # path relative to the report folder
    strip: str | None
    strip_problem: str | None  # why there is no strip

    @property
    def name(self) -> str:
        return self.row["video_uri"].rstrip("/").rsplit("/", 1)[-1]

    @property
    def top(self) -> dict[str, float] | None:
        return most_suspicious(self.segments) if self.segments else None


def most_suspicious(segments: list[dict[str, float]]) -> dict[str, float]:
    return max(segments, key=lambda s: s["score"])


def load_run(engine: Engine, run_id: str | None) -> dict[str, Any]:
    """The ``scan_runs`` row of ``run_id``, or of the latest scan when it is None."""
    if not inspect(engine).has_table("scan_runs"):
        raise ValueError("the database holds no scan_runs table: is --db the scan's database?")
    runs = database.Tables.reflect(engine).runs
    query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(1)
    if run_id is not None:
        query = select(runs).where(runs.c.run_id == run_id)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise ValueError(f"no scan run {run_id}" if run_id else "no scan has run on this database")
    return dict(row._mapping)


def window_frames(path: str, start_s: float, end_s: float, count: int) -> list[tuple[float, Any]]:
    """Up to ``count`` RGB frames spread over [start_s, end_s), each with its time in seconds."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise VideoError("unreadable", "OpenCV could not open it as a video")
    try:
        fps, frame_count = probe(capture)
        if fps <= 0:
            raise VideoError("no_fps", "the video does not say its frame rate")
        first = min(int(start_s * fps), frame_count - 1)
        last = max(first, min(math.ceil(end_s * fps), frame_count) - 1)
        wanted = set(np.linspace(first, last, count).round().astype(int).tolist())
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        frames = []
        for index in range(first, max(wanted) + 1):
            if index not in wanted:
                if not capture.grab():
                    break
                continue
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append((index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    finally:
        capture.release()
    if not frames:
        raise VideoError("no_frames", f"no frame between {start_s:.1f} s and {end_s:.1f} s decoded")
    return frames


class FaceCropper:
    """Crops frames to the face box of the first one, as the scan crops a window."""

    def __init__(self, face: FaceCropConfig) -> None:
        self._face = face
        self._detector: FaceDetector | None = None

    def crops(self, frames: list[Any]) -> list[Any]:
        height, width = frames[0].shape[:2]
        box = center_box(width, height)
        if self._face.enabled:
            if self._detector is None:
                self._detector = FaceDetector(self._face)
            found = self._detector.largest_face(frames[0])
            if found is not None:
                box = enlarge_box(found, self._face.margin, width, height)
        size = (THUMBNAIL_PX, THUMBNAIL_PX)
        return [cv2.resize(crop(f, box), size, interpolation=cv2.INTER_AREA) for f in frames]


def plot_scores(video: dict[str, Any], segments: list[dict[str, float]], out: Path) -> None:
    """Each window's score over time, the threshold, and the most suspicious window shaded."""
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    ax = fig.subplots()
    for segment in segments:
        ax.plot(
            [segment["start_s"], segment["end_s"]],
            [segment["score"]] * 2,
            color="tab:red" if segment["score"] >= video["threshold"] else "tab:blue",
            linewidth=4,
            solid_capstyle="butt",
        )
    top = most_suspicious(segments)
    ax.axvspan(top["start_s"], top["end_s"], color="tab:red", alpha=0.12, label="most suspicious")
    ax.axhline(video["threshold"], color="black", linestyle="--", linewidth=1, label="threshold")
    end = max([s["end_s"] for s in segments] + [video["duration_s"] or 0.0])
    ax.set(xlim=(0, end), ylim=(0, 1), xlabel="time in the video (s)", ylabel="window score")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(out, dpi=100)


def plot_strip(frames: list[tuple[float, Any]], crops: list[Any], out: Path) -> None:
    fig = Figure(figsize=(1.7 * len(crops), 2.0), layout="constrained")
    for ax, (at, _), face in zip(
        np.atleast_1d(fig.subplots(1, len(crops))), frames, crops, strict=True
    ):
        ax.imshow(face)
        ax.set_title(f"{at:.1f} s", fontsize=9)
        ax.axis("off")
    fig.savefig(out, dpi=100)


def face_strip(uri: str, top: dict[str, float], cropper: FaceCropper, out: Path) -> None:
    """Decode the window ``top`` of the video at ``uri`` and save its face crops to ``out``."""
    with tempfile.TemporaryDirectory(prefix="deeptrust-report-") as tmp:
        local = fetch(uri, tmp) if is_s3(uri) else Path(uri)
        if not local.is_file():
            raise VideoError("not_found", "the file does not exist")
        frames = window_frames(str(local), top["start_s"], top["end_s"], STRIP_FRAMES)
    plot_strip(frames, cropper.crops([f for _, f in frames]), out)


def describe_video(
    index: int, row: dict[str, Any], cropper: FaceCropper, out: Path
) -> FlaggedVideo:
    """Plots for one flagged row; a video that cannot be read gets a reason instead of a strip."""
    segments = json.loads(row["segments"] or "[]")
    if row["status"] == "matched":
        return FlaggedVideo(row, [], None, None, "a known fake, matched without a model call")
    if not segments:
        return FlaggedVideo(row, [], None, None, "the row records no windows")
    scores = f"{PLOTS}/video-{index:03d}-scores.png"
    plot_scores(row, segments, out / scores)
    strip = f"{PLOTS}/video-{index:03d}-faces.png"
    top = most_suspicious(segments)
    try:
        face_strip(row["video_uri"], top, cropper, out / strip)
    except VideoError as err:
        return FlaggedVideo(row, segments, scores, None, f"{err.code}: {err.detail}")
    except Exception as err:  # storage, codec or detector trouble: a placeholder, not a failure
        _LOG.warning("report: no face strip for %s: %s", row["video_uri"], err)
        return FlaggedVideo(row, segments, scores, None, f"{type(err).__name__}: {err}")
    return FlaggedVideo(row, segments, scores, strip, None)


def write_report(
    engine: Engine,
    out: str | Path,
    run_id: str | None,
    face: FaceCropConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Write ``out/index.html`` and its plots for a run's flagged videos; returns a summary."""
    run = load_run(engine, run_id)
    if run["status"] in UNFINISHED:
        with engine.connect() as conn:
            counted = runs.counts(conn, database.Tables.reflect(engine).ledger, run["run_id"])
        run = run | dict(zip(("scored", "matched", "flagged", "errors"), counted, strict=True))
    rows = database.flagged_results(engine, run["run_id"])
    root = Path(out)
    (root / PLOTS).mkdir(parents=True, exist_ok=True)
    cropper = FaceCropper(face)
    videos = []
    for index, row in enumerate(rows, start=1):
        progress(f"report: {index}/{len(rows)} {row['video_uri']}")
        videos.append(describe_video(index, row, cropper, root))
    page = root / "index.html"
    page.write_text(render_page(run, videos), encoding="utf-8")
    return {
        "report": str(page),
        "run_id": run["run_id"],
        "flagged": len(videos),
        "frames_unavailable": sum(v.strip is None for v in videos),
    }


# --- the page ---

_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 2rem auto; max-width: 70rem;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; }
.run, .facts { border-collapse: collapse; margin: 0.5rem 0 1rem; }
.run th, .run td, .facts th, .facts td { text-align: left; padding: 0.15rem 0.8rem 0.15rem 0; }
.run th, .facts th { color: #555; font-weight: normal; }
.video { border: 1px solid #ccc; border-radius: 6px; padding: 0.8rem 1.2rem; margin: 1.2rem 0; }
.video h2 { margin: 0.2rem 0; font-size: 1.25rem; }
.uri { color: #555; word-break: break-all; }
.score { font-weight: bold; color: #b00; }
.placeholder { border: 2px dashed #b88; background: #fff4f4; color: #733; padding: 1.2rem;
               text-align: center; border-radius: 6px; }
img { max-width: 100%; }
.empty { font-size: 1.2rem; padding: 2rem 0; }
"""


def _video_counts(run: dict[str, Any]) -> str:
    matched = f"{run['matched']} matched known fakes, " if run["matched"] else ""
    written = f"{run['scored']} scored, {matched}{run['flagged']} flagged, {run['errors']} errors"
    if run["status"] in UNFINISHED:
        return f"the run did not finish: {written} written before it stopped"
    return f"{run['videos_seen']} listed, {run['skipped']} skipped, {written}"


def render_page(run: dict[str, Any], videos: list[FlaggedVideo]) -> str:
    """The report's page, from the template the review app shares (``pages``)."""
    overview = [
        ("run", run["run_id"]),
        ("status", run["status"]),
        ("input", run["input_uri"]),
        ("model version", run["model_version"]),
        ("started (UTC)", pages.when(run["started_at"])),
        ("finished (UTC)", pages.when(run["finished_at"])),
        ("videos", _video_counts(run)),
    ]
    template = pages.environment().get_template("report.html")
    return template.render(run=run, videos=videos, overview=overview, style=_STYLE) + "\n"
