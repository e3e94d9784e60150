"""Only regular files are inputs: FIFOs, devices, sockets and dead-end links get error rows.

A FIFO named ``f.mp4`` used to hang the scan in its listing, before any row was written, and
broken or looping links named ``*.mp4`` were dropped without a word.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from media import make_clip
from scanning import table

from model.hashing import TooLong, sha256_file, sha256_stream
from pipelines.scan.listing import ListingProblem, ListVideos, VideoRef, local_problem
from pipelines.scan.options import LOCAL_RUNNER

# The scan must end within SCAN_BOUND_S, well under the decode time limit it runs with: a read
# that blocks in the listing (where no limit reached) fails the test, and so does a special file
# left for the decoder's time limit to stop.
SCAN_BOUND_S = 180
DECODE_TIMEOUT_S = 600
LISTING_BOUND_S = 60


def within(seconds: float, work) -> None:
    """Run ``work()`` in a daemon thread; fail if it has not ended within ``seconds``.

    Reading a FIFO blocks for ever, so a listing that reads one must fail the test, not hang it.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as err:  # handed to the test's thread
            failure.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if failure:
        raise failure[0]


def special_folder(folder: Path) -> dict[str, str]:
    """A FIFO, a socket, a /dev/zero link, a broken and a looping link, each named like a video.

    Returns the error code each must get.
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.mp4")
    os.mkfifo(folder / "fifo.txt")  # not named like a video: ignored, as any other such file
    (folder / "zero.mp4").symlink_to("/dev/zero")
    (folder / "broken.mp4").symlink_to(folder / "gone.mp4")
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    (folder / "deep").mkdir()
    (folder / "deep" / "ping.mp4").symlink_to(folder / "deep" / "pong.mp4")
    (folder / "deep" / "pong.mp4").symlink_to(folder / "deep" / "ping.mp4")
    return {
        "fifo.mp4": "not_a_regular_file",
        "zero.mp4": "not_a_regular_file",
        "broken.mp4": "broken_link",
        "loop.mp4": "link_loop",
        "deep/ping.mp4": "link_loop",
        "deep/pong.mp4": "link_loop",
    }


@pytest.fixture
def bound_socket():
    """A listening Unix socket named ``sock.mp4`` in a short folder (socket paths are short)."""
    with tempfile.TemporaryDirectory(prefix="dt") as folder:
        path = Path(folder) / "sock.mp4"
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            yield path


@pytest.mark.component
def test_special_entries_are_named_without_being_opened(tmp_path, bound_socket):
    expected = special_folder(tmp_path)
    video = tmp_path / "good.mp4"
    video.write_bytes(b"not opened by local_problem either way")
    assert local_problem(str(video)) is None
    assert local_problem(str(tmp_path / "link_to_good.mp4")) is None  # does not exist at all
    (tmp_path / "link_to_good.mp4").symlink_to(video)
    assert local_problem(str(tmp_path / "link_to_good.mp4")) is None
    for name, code in expected.items():
        problem = local_problem(str(tmp_path / name))
        assert problem is not None and problem.code == code, name
    assert "a FIFO" in local_problem(str(tmp_path / "fifo.mp4")).detail
    zero = local_problem(str(tmp_path / "zero.mp4")).detail
    assert "a character device" in zero and "/dev/zero" in zero
    assert "gone.mp4" in local_problem(str(tmp_path / "broken.mp4")).detail
    assert "a socket" in local_problem(str(bound_socket)).detail


@pytest.mark.component
def test_the_listing_gives_every_special_entry_a_problem_and_hashes_only_files(tmp_path):
    expected = special_folder(tmp_path)
    good = tmp_path / "good.mp4"
    good.write_bytes(b"video bytes")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"x" * 100)  # over max_bytes: not read, refused later as too_large
    expected = [
        *expected.items(),
        ("good.mp4", f"sha256:{sha256_file(good)}"),
        ("big.mp4", "unhashed:size:100"),
    ]

    def list_them() -> None:
        with test_pipeline.TestPipeline(runner=LOCAL_RUNNER) as pipeline:
            refs = pipeline | ListVideos(str(tmp_path), ("mp4",), max_bytes=99)
            problems = refs | "Name each" >> beam.Map(
                lambda ref: (
                    os.path.relpath(ref.uri, tmp_path),
                    ref.problem.code if ref.problem else ref.content_version,
                )
            )
            assert_that(problems, equal_to(expected))

    within(LISTING_BOUND_S, list_them)


@pytest.mark.component
def test_a_glob_finds_the_broken_links_it_matches(tmp_path):
    (tmp_path / "broken.mp4").symlink_to(tmp_path / "gone.mp4")
    (tmp_path / "broken.mov").symlink_to(tmp_path / "gone.mov")
    with test_pipeline.TestPipeline(runner=LOCAL_RUNNER) as pipeline:
        refs = pipeline | ListVideos(str(tmp_path / "*.mp4"), ("mp4", "mov"))
        assert_that(
            refs,
            equal_to(
                [
                    VideoRef(
                        str(tmp_path / "broken.mp4"),
                        "unreadable:size:0",
                        0,
                        ListingProblem(
                            "broken_link",
                            f"{tmp_path / 'broken.mp4'} is a symbolic link to "
                            f"{str(tmp_path / 'gone.mp4')!r}, which does not exist",
                        ),
                    )
                ]
            ),
        )


@pytest.mark.unit
def test_one_hash_refuses_more_bytes_than_its_limit(tmp_path):
    data = os.urandom(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, limit=len(data)) == hashlib.sha256(data).hexdigest()
    with pytest.raises(TooLong):
        sha256_file(path, limit=len(data) - 1)
    assert sha256_stream(io.BytesIO(b"")) == hashlib.sha256(b"").hexdigest()


@pytest.mark.e2e
def test_special_entries_and_a_good_video_give_one_row_each_in_bounded_time(tmp_path, bundle):
    folder = tmp_path / "uploads"
    expected = special_folder(folder)
    make_clip(folder / "good.mp4", width=160, height=120, seconds=1)
    expected["good.mp4"] = "scored"
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    command = [sys.executable, "-m", "pipelines.scan", "--input", str(folder)]
    command += ["--model", str(bundle), "--db", db_url]
    command += ["--decode_timeout_s", str(DECODE_TIMEOUT_S)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # Before, the listing's hash blocked on the FIFO for ever: the timeout turns that into a fail.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=SCAN_BOUND_S, env=env, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert (summary["videos_seen"], summary["scored"], summary["errors"]) == (7, 1, 6)
    rows = {os.path.relpath(r["video_uri"], folder): r for r in table(db_url)}
    outcomes = {
        name: r["status"] if r["status"] == "scored" else r["error_reason"]
        for name, r in rows.items()
    }
    assert outcomes == expected
    assert "a FIFO" in rows["fifo.mp4"]["error_detail"]
