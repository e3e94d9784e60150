"""The scan's graph on a test pipeline, with a fake model handler instead of a trained bundle.

No detector is loaded here: ``FakeHandler`` scores each video by its name. Most tests decode with
``NamedSampler``, which makes windows by the file's name; one decodes real videos in this process
(``InProcessDecoders``). The scan writes into SQLite, whose table the tests read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from scanning import every_window, scan_run, table

from model.config import DetectorConfig
from model.errors import VideoError
from model.video import SampledVideo, VideoInfo
from pipelines.scan.decode import BATCHES, FAILED, ExtractWindows, VideoClip
from pipelines.scan.decoders import InProcessDecoders
from pipelines.scan.graph import build_scan
from pipelines.scan.limits import DecodeLimits
from pipelines.scan.listing import VideoRef, content_version
from pipelines.scan.options import ScanOptions
from pipelines.scan.outcomes import Failed
from pipelines.store import database, runs
from pipelines.store.migrations import migrate

pytestmark = pytest.mark.component

VERSION = "fake-model"
RUN_ID = "run-component"
# Window scores the fake handler gives a video, by the start of its file name.
SCORES = {"fake": 0.9, "real": 0.1}
WINDOWS = 2


class FakeHandler(ModelHandler[VideoClip, PredictionResult, None]):
    """Every window of a video whose name starts ``fake`` scores 0.9, any other 0.1."""

    def load_model(self) -> None:
        return None

    def run_inference(
        self, batch: Sequence[VideoClip], model: None, inference_args: dict | None = None
    ) -> list[PredictionResult]:
        return [
            PredictionResult(clip.video, every_window(clip, score_of(clip.video.ref)), VERSION)
            for clip in batch
        ]


def score_of(ref: VideoRef) -> float:
    name = Path(ref.uri).name
    return SCORES["fake"] if name.startswith("fake") else SCORES["real"]


class NamedSampler:
    """Windows of black frames for any file, except one named ``broken*``, which is unreadable."""

    def __init__(self, config: DetectorConfig) -> None:
        self._frames = config.sampling.frames_per_window
        self._size = config.backbone.input_size

    def sample(self, path: str) -> SampledVideo:
        if Path(path).name.startswith("broken"):
            raise VideoError("unreadable", "not a video")
        shape = (WINDOWS, self._frames)
        return SampledVideo(
            info=VideoInfo(fps=8.0, frame_count=8 * WINDOWS, width=64, height=48),
            frames=np.zeros((*shape, self._size, self._size, 3), np.uint8),
            mask=np.ones(shape, bool),
            starts=np.arange(WINDOWS, dtype=float),
            ends=np.arange(WINDOWS, dtype=float) + 1.0,
        )


@dataclass(frozen=True)
class NamedDecoders:
    """Decoders (``pipelines.scan.decoders``) that decode with a NamedSampler."""

    @contextlib.contextmanager
    def open(self, config: DetectorConfig, timeout_s: float) -> Iterator[NamedSampler]:
        yield NamedSampler(config)


def started_run(db_url: str, input_uri: str) -> None:
    """The database as ``pipelines.scan.run`` leaves it before the pipeline starts."""
    engine = database.connect(db_url)
    try:
        migrate(engine)
        tables = database.Tables.reflect(engine)
        runs.start_run(engine, tables, RUN_ID, input_uri, VERSION, "local")
    finally:
        engine.dispose()


def scan_folder(folder: Path, db_url: str, config: DetectorConfig, decoders: Any, *extra: str):
    """Run the scan's graph over ``folder`` on a test pipeline with the fake handler."""
    argv = ["--input", str(folder), "--model", "unused", "--db", db_url, *extra]
    started_run(db_url, str(folder))
    options = PipelineOptions([*argv, "--runner=FnApiRunner"])
    with test_pipeline.TestPipeline(options=options) as pipeline:
        scan = options.view_as(ScanOptions)
        handler = FakeHandler()
        build_scan(pipeline, scan, config, VERSION, RUN_ID, handler=handler, decoders=decoders)


def outcomes(db_url: str) -> dict[str, tuple]:
    """Each row's file name -> (status, score, flagged, error_reason, frames_analyzed)."""
    return {
        Path(r["video_uri"]).name: (
            r["status"],
            r["score"],
            r["flagged"],
            r["error_reason"],
            r["frames_analyzed"],
        )
        for r in table(db_url)
    }


def test_the_graph_writes_one_row_per_listed_video(small_config, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("fake_a.mp4", "real_b.mp4", "broken.mp4"):
        (folder / name).write_bytes(b"x" * 10)
    (folder / "fake_huge.mp4").write_bytes(b"x" * 100)
    (folder / "notes.txt").write_text("not listed")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"

    scan_folder(folder, db_url, small_config, NamedDecoders(), "--max_video_bytes", "50")

    frames = WINDOWS * small_config.sampling.frames_per_window
    assert outcomes(db_url) == {
        "fake_a.mp4": ("scored", pytest.approx(0.9), True, None, frames),
        "real_b.mp4": ("scored", pytest.approx(0.1), False, None, frames),
        "broken.mp4": ("error", None, None, "unreadable", None),
        "fake_huge.mp4": ("error", None, None, "too_large", None),
    }
    rows = {Path(r["video_uri"]).name: r for r in table(db_url)}
    assert {r["run_id"] for r in rows.values()} == {RUN_ID}
    assert {r["model_version"] for r in rows.values()} == {VERSION}
    assert rows["fake_a.mp4"]["review_status"] == "pending"
    assert [s["score"] for s in json.loads(rows["fake_a.mp4"]["segments"])] == [0.9] * WINDOWS
    assert "over the 50 allowed" in rows["fake_huge.mp4"]["error_detail"]
    assert (scan_run(db_url, RUN_ID)["videos_seen"], scan_run(db_url, RUN_ID)["skipped"]) == (4, 0)


def test_a_video_another_live_scan_claimed_is_skipped_and_counted_as_such(small_config, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("fake_a.mp4", "real_b.mp4"):
        (folder / name).write_bytes(b"x" * 10)
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    engine = database.connect(db_url)
    try:
        migrate(engine)
        tables = database.Tables.reflect(engine)
        runs.start_run(engine, tables, "run-other", str(folder), VERSION, "local")
        uri = str(folder / "fake_a.mp4")
        key = (uri, content_version(FileMetadata(uri, 10)), VERSION)
        with engine.begin() as conn:
            assert runs.claim(conn, tables, key, "run-other", runs.Liveness()) == "run-other"
    finally:
        engine.dispose()

    scan_folder(folder, db_url, small_config, NamedDecoders())

    assert set(outcomes(db_url)) == {"real_b.mp4"}
    run = scan_run(db_url, RUN_ID)
    assert (run["videos_seen"], run["skipped"]) == (2, 1)


def test_decoding_sends_failures_and_batches_apart(small_config, tmp_path):
    refs = [
        VideoRef(str(tmp_path / "fake_a.mp4"), "c1", 10),
        VideoRef(str(tmp_path / "broken.mp4"), "c2", 10),
        VideoRef(str(tmp_path / "real_b.mp4"), "c3", 10),
        VideoRef(str(tmp_path / "real_huge.mp4"), "c4", 1000),
    ]
    limits = DecodeLimits(max_bytes=100)
    with test_pipeline.TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        decoded = (
            pipeline
            | beam.Create(refs)
            | ExtractWindows(small_config, 2, 1, limits, NamedDecoders())
        )
        assert_that(
            decoded[FAILED],
            equal_to(
                [
                    Failed(refs[1], "unreadable", "not a video"),
                    Failed(
                        refs[3], "too_large", "1000 bytes, over the 100 allowed (--max_video_bytes)"
                    ),
                ]
            ),
            label="failures",
        )
        videos = decoded[BATCHES] | beam.FlatMap(lambda batch: [c.video.ref for c in batch])
        assert_that(videos, equal_to([refs[0], refs[2]]), label="decoded")


def test_real_videos_decoded_in_process_are_scored_by_the_fake_model(
    corpus, small_config, tmp_path
):
    folder = tmp_path / "videos"
    folder.mkdir()
    for kind in ("fake", "real"):
        source = sorted((corpus / kind).glob("*.mp4"))[0]
        (folder / f"{kind}_clip.mp4").write_bytes(source.read_bytes())
    (folder / "broken.mp4").write_bytes(b"these bytes are not a video")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"

    scan_folder(folder, db_url, small_config, InProcessDecoders())

    found = outcomes(db_url)
    assert {name: found[name][:4] for name in found} == {
        "fake_clip.mp4": ("scored", pytest.approx(0.9), True, None),
        "real_clip.mp4": ("scored", pytest.approx(0.1), False, None),
        "broken.mp4": ("error", None, None, "unreadable"),
    }
    assert found["fake_clip.mp4"][4] > 0 and found["real_clip.mp4"][4] > 0
