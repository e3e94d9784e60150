"""Bad inputs: every odd upload ends as a scored row or an error row with a specific reason.

``crash.mp4`` and ``hang.mp4`` make the decoder child crash (SIGSEGV) or hang: the tests start
the test-only child ``faulty_decoder`` (no file crashes or hangs this OpenCV build on demand),
which misbehaves inside a real child process, so the parent's isolation is what is tested.
"""

from __future__ import annotations

import json
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from badmedia import (
    EXPECTED,
    MAX_VIDEO_BYTES,
    ODD_NAMES,
    SCORED,
    VFR_FRAMES,
    VFR_SECONDS,
    vfr_time,
    write_bad_inputs,
)
from conftest import SMALL_CONFIG
from faulty_decoder import CHILD
from scanning import assert_summary_matches_table, table

from model.container import image_format, mp4_problem
from model.errors import VideoError
from model.frames import plan_windows
from pipelines.scan.decoders import ChildDecoders
from pipelines.scan.isolation import DecoderPool, DecoderProcess
from pipelines.scan.run import run


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_inputs")
    write_bad_inputs(folder)
    return folder


def outcome(row: dict) -> str:
    return SCORED if row["status"] == SCORED else row["error_reason"]


@pytest.mark.e2e
def test_a_folder_of_bad_inputs_and_good_videos_gives_one_row_each(bad_inputs, bundle, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    limits = ["--decode_timeout_s", "20", "--max_video_bytes", str(MAX_VIDEO_BYTES)]
    argv = ["--input", str(bad_inputs), "--model", str(bundle), "--db", db_url, *limits]

    summary = run(argv, decoders=ChildDecoders(child=CHILD))

    errors = sum(expected != SCORED for expected in EXPECTED.values())
    assert (summary["status"], summary["videos_seen"], summary["errors"]) == (
        "succeeded",
        len(EXPECTED),
        errors,
    )
    assert summary["scored"] == len(EXPECTED) - errors
    assert_summary_matches_table(summary, db_url)
    rows = table(db_url)
    assert len(rows) == len(EXPECTED)
    by_name = {Path(row["video_uri"]).name: row for row in rows}
    assert {name: outcome(row) for name, row in by_name.items()} == EXPECTED
    for name in ODD_NAMES:  # spaces, unicode and SQL quotes reach the table as they are
        assert by_name[name]["video_uri"] == str(bad_inputs / name)

    assert by_name["crash.mp4"]["error_detail"] == "the decoder process died (killed by SIGSEGV)"
    assert by_name["hang.mp4"]["error_detail"].startswith("no result within 20 s")
    assert by_name["huge.mp4"]["error_detail"].startswith(f"{MAX_VIDEO_BYTES + 1} bytes, over")

    def shape(name: str) -> tuple:
        row = by_name[name]
        return row["width"], row["height"], row["frames_analyzed"], len(json.loads(row["segments"]))

    assert shape("one_frame.mp4") == (176, 144, 1, 1)  # one partly filled window
    assert shape("tiny_16x16.mp4") == (16, 16, 16, 2)  # upscaled to the model's input
    assert shape("uhd_8k.mp4") == (7680, 4320, 5, 1)
    assert shape("portrait.mp4") == (240, 320, 24, 3)  # rotation metadata applied

    long = by_name["hour_long_64x48.mp4"]
    segments = json.loads(long["segments"])
    assert long["duration_s"] == 3600.0
    assert len(segments) == SMALL_CONFIG.sampling.max_windows
    assert (segments[0]["start_s"], segments[-1]["end_s"]) == (0.0, 3600.0)

    # Variable frame rate: window times are the frames' own timestamps, not index / mean fps.
    vfr = by_name["vfr.mp4"]
    plans = plan_windows(VFR_FRAMES, vfr["fps"], SMALL_CONFIG.sampling)
    segments = json.loads(vfr["segments"])
    assert [s["start_s"] for s in segments] == [round(vfr_time(p.indices[0]), 3) for p in plans]
    assert segments[-1]["end_s"] == VFR_SECONDS


def children() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


@pytest.mark.component
def test_a_crashing_decoder_costs_one_video_and_a_fresh_one_decodes_the_next(bad_inputs):
    before = children()
    decoder = DecoderProcess(SMALL_CONFIG, timeout_s=300, child=CHILD)
    try:
        decoder.start()
        (first,) = children() - before
        with pytest.raises(VideoError) as caught:
            decoder.sample(str(bad_inputs / "crash.mp4"))
        assert (caught.value.code, caught.value.detail) == (
            "decoder_crashed",
            "the decoder process died (killed by SIGSEGV)",
        )
        assert not psutil.pid_exists(first)
        sampled = decoder.sample(str(bad_inputs / "good_a.mp4"))
        (second,) = children() - before
        assert second != first
        assert sampled.frames.shape == (3, 8, 96, 96, 3)
    finally:
        decoder.close()
    assert children() == before


@pytest.mark.component
def test_a_hanging_decoder_is_stopped_at_the_time_limit(bad_inputs):
    before = children()
    decoder = DecoderProcess(SMALL_CONFIG, timeout_s=1.0, child=CHILD)
    decoder.start()
    (child,) = children() - before
    with pytest.raises(VideoError) as caught:
        decoder.sample(str(bad_inputs / "hang.mp4"))
    assert caught.value.code == "decode_timeout"
    assert (
        caught.value.detail == "no result within 1 s (--decode_timeout_s); the decoder was stopped"
    )
    assert not psutil.pid_exists(child)
    assert children() == before


def hang_then_queue(pool: DecoderPool, threads: ThreadPoolExecutor, folder: Path):
    """Two threads' videos for a pool of one decoder: a hang takes it first, a good video waits."""
    (decoder,) = pool._decoders
    taken = threading.Event()
    real_sample = decoder.sample

    def sample(path: str):  # a spy: the pool handed its one decoder to the hang
        taken.set()
        return real_sample(path)

    decoder.sample = sample
    hung = threads.submit(pool.sample, str(folder / "hang.mp4"))
    assert taken.wait(60), "the hang did not take the pool's decoder"
    del decoder.sample
    return hung, threads.submit(pool.sample, str(folder / "good_a.mp4"))


@pytest.mark.component
def test_a_video_queued_behind_a_hang_on_a_shared_decoder_still_gets_its_full_time(bad_inputs):
    """Two threads share one decoder: the second video's time limit starts when it is sent."""
    before = children()
    pool = DecoderPool(SMALL_CONFIG, timeout_s=3.0, size=1, child=CHILD)
    pool.start()
    try:
        with ThreadPoolExecutor(max_workers=2) as threads:
            hung, queued = hang_then_queue(pool, threads, bad_inputs)
            with pytest.raises(VideoError) as caught:
                hung.result()
            assert caught.value.code == "decode_timeout"
            assert queued.result().frames.shape == (3, 8, 96, 96, 3)
    finally:
        pool.close()
    assert children() == before


@pytest.mark.component
def test_a_video_waiting_behind_a_hang_starts_a_spare_decoder(bad_inputs):
    """The hang keeps its child until its time limit; the video waiting for it need not wait."""
    before = children()
    pool = DecoderPool(SMALL_CONFIG, timeout_s=30.0, size=1, spare_after_s=1.0, child=CHILD)
    pool.start()
    try:
        with ThreadPoolExecutor(max_workers=2) as threads:
            hung, queued = hang_then_queue(pool, threads, bad_inputs)
            assert queued.result().frames.shape == (3, 8, 96, 96, 3)
            assert not hung.done()  # decoded in a spare, before the hang's time limit
            assert len(children() - before) == 2
            with pytest.raises(VideoError) as caught:
                hung.result()
            assert caught.value.code == "decode_timeout"
        (spare,) = children() - before  # the hung child was stopped
        again = pool.sample(str(bad_inputs / "good_b.mp4"))
        assert again.frames.shape[1:] == (8, 96, 96, 3)
        assert len(children() - before) == 1  # the stopped child restarts for its next video
        assert children() - before == {spare}  # the spare stayed in the pool and decoded it
    finally:
        pool.close()
    assert children() == before


def box(kind: bytes, payload: bytes = b"", large: bool = False) -> bytes:
    if large:  # size 1: the real size follows as 64 bits
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def handler(kind: bytes) -> bytes:
    return box(b"hdlr", bytes(8) + kind + bytes(12))


def track(kind: bytes) -> bytes:
    return box(
        b"trak", box(b"tkhd", bytes(84)) + box(b"mdia", box(b"mdhd", bytes(24)) + handler(kind))
    )


FTYP = box(b"ftyp", b"isom\0\0\2\0isomiso2")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (FTYP + box(b"mdat", bytes(64)), "truncated"),
        (FTYP + box(b"mdat", bytes(64), large=True), "truncated"),
        (FTYP + box(b"moov", track(b"soun")) + box(b"mdat", bytes(8)), "no_video_stream"),
        (FTYP + box(b"moov", box(b"mvhd", bytes(100))), "no_video_stream"),
        (FTYP + box(b"moov", track(b"soun") + track(b"vide")), None),
        (FTYP + box(b"mdat", bytes(8)) + box(b"moov", track(b"vide")), None),
        (b"RIFF\0\0\0\0AVI LIST", None),  # not an MP4: no verdict
        (FTYP[:6], None),
    ],
    ids=[
        "no-moov",
        "no-moov-64-bit-box",
        "audio-track-only",
        "no-tracks",
        "audio-and-video",
        "moov-after-mdat",
        "avi",
        "cut-inside-a-header",
    ],
)
def test_mp4_box_structure_explains_unopenable_files(tmp_path, data, problem):
    path = tmp_path / "upload.mp4"
    path.write_bytes(data)
    found = mp4_problem(str(path))
    assert (found[0] if found else None) == problem


@pytest.mark.unit
@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\0\0", "PNG"),
        (b"GIF89a\x01\0", "GIF"),
        (b"\0\0\0\x18ftypmp42", None),
        (b"", None),
    ],
    ids=["jpeg", "png", "gif", "mp4", "empty"],
)
def test_images_are_told_apart_by_their_first_bytes(head, kind):
    assert image_format(head) == kind
