"""The scan end to end on SQLite: rows, skips, re-scans, new models, errors and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.runners.portability import prism_runner
from scanning import assert_summary_matches_table, new_version, scan, table
from sqlalchemy.exc import SQLAlchemyError

from pipelines import cli
from pipelines.scan.options import LOCAL_RUNNER, resolve_runner
from pipelines.scan.run import Stopped, stop_on_signals

# The scan, as ``python -m pipelines.scan`` runs it, with the test-only decoder child.
SCAN_WITH_FAULTY_DECODER = (
    "import sys; from faulty_decoder import CHILD; "
    "from pipelines.scan.decoders import ChildDecoders; from pipelines.scan.run import run; "
    "run(sys.argv[1:], decoders=ChildDecoders(child=CHILD))"
)


@pytest.mark.e2e
def test_30_videos_scan_skip_rescan_and_new_model(corpus30, bundle, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"

    first = scan(corpus30, bundle, db_url)
    assert (first["status"], first["videos_seen"], first["skipped"]) == ("succeeded", 30, 0)
    assert first["scored"] + first["errors"] == 30
    assert "random" in first["backbone_weights"]
    assert len(table(db_url)) == 30
    assert_summary_matches_table(first, db_url)

    again = scan(corpus30, bundle, db_url)
    assert (again["videos_seen"], again["skipped"], again["scored"]) == (30, 30, 0)
    assert len(table(db_url)) == 30

    rescan = scan(corpus30, bundle, db_url, "--rescan")
    assert (rescan["skipped"], rescan["scored"] + rescan["errors"]) == (0, 30)
    rows = table(db_url)
    assert len(rows) == 30
    assert {r["run_id"] for r in rows} == {rescan["run_id"]}
    assert_summary_matches_table(rescan, db_url)

    version = new_version(bundle, tmp_path / "bundle-v2")
    newer = scan(corpus30, tmp_path / "bundle-v2", db_url)
    assert (newer["model_version"], newer["skipped"], newer["scored"]) == (version, 0, 30)
    rows = table(db_url)
    assert len(rows) == 60
    assert sum(r["model_version"] == version for r in rows) == 30
    assert_summary_matches_table(newer, db_url)


@pytest.mark.e2e
def test_failed_videos_are_error_rows_with_reasons_and_are_retried(corpus, bundle, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sorted(corpus.rglob("*.mp4"))[0], videos / "good.mp4")
    (videos / "broken.mp4").write_bytes(b"not a video")
    (videos / "empty.mp4").touch()
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"

    first = scan(videos, bundle, db_url)
    assert (first["status"], first["scored"], first["errors"]) == ("succeeded", 1, 2)
    reasons = {Path(r["video_uri"]).name: r["error_reason"] for r in table(db_url)}
    assert reasons == {"good.mp4": None, "broken.mp4": "unreadable", "empty.mp4": "empty_file"}
    assert_summary_matches_table(first, db_url)

    second = scan(videos, bundle, db_url)
    assert (second["skipped"], second["scored"], second["errors"]) == (1, 0, 2)
    errors = [r for r in table(db_url) if r["status"] == "error"]
    assert {r["run_id"] for r in errors} == {second["run_id"]}
    assert len(table(db_url)) == 3


@pytest.mark.e2e
def test_deeptrust_scan_passes_beam_options_and_never_starts_prism(
    corpus, bundle, tmp_path, monkeypatch, capsys
):
    prism_calls = []

    def record_prism(self, *args, **kwargs):
        prism_calls.append(args)
        raise RuntimeError("Prism would download its binary here")

    # A spy, not a stand-in: DirectRunner silently falls back when Prism fails, so only a
    # record of the call shows whether a download would have been attempted.
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", record_prism)
    video = sorted(corpus.rglob("*.mp4"))[0]
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    code = cli.main(
        [
            "scan",
            "--input",
            str(video),
            "--model",
            str(bundle),
            "--db",
            db_url,
            "--runner=DirectRunner",
            "--labels=airflow-version=v3-0-0",
            "--job_name=nightly-scan",
        ]
    )
    assert code == cli.EXIT_OK
    assert prism_calls == []
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["runner"], summary["videos_seen"], summary["scored"]) == (LOCAL_RUNNER, 1, 1)
    assert [r["video_uri"] for r in table(db_url)] == [str(video)]


@pytest.mark.unit
def test_runner_names_resolve_to_runners_that_start_offline():
    assert resolve_runner(None) == resolve_runner("DirectRunner") == LOCAL_RUNNER
    assert resolve_runner("DaskRunner") == "apache_beam.runners.dask.dask_runner.DaskRunner"
    assert resolve_runner("DataflowRunner") == "DataflowRunner"


@pytest.mark.e2e
def test_a_tampered_bundle_fails_the_run_before_it_starts(corpus, bundle, tmp_path):
    tampered = tmp_path / "bundle"
    shutil.copytree(bundle, tampered)
    with (tampered / "head.keras").open("ab") as handle:
        handle.write(b"\0")
    db = tmp_path / "scan.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.scan",
            "--input",
            str(corpus),
            "--model",
            str(tampered),
            "--db",
            f"sqlite:///{db}",
            "--runner=DirectRunner",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == cli.EXIT_FAILED
    assert "tampered" in done.stderr
    assert not db.exists()


@pytest.mark.e2e
def test_code_in_the_bundle_head_is_refused_before_the_run_is_recorded(
    corpus, bundle_with_code_in_head, tmp_path, capsys
):
    db = tmp_path / "scan.db"
    argv = ["--input", str(corpus), "--model", str(bundle_with_code_in_head)]
    code = cli.main(["scan", *argv, "--db", f"sqlite:///{db}"])
    assert code == cli.EXIT_FAILED
    assert "safe mode" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.e2e
def test_an_unreachable_database_fails_the_run(corpus, bundle, capsys):
    db_url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    fast = ["--db_retry_backoff_s", "0.01"]
    code = cli.main(["scan", "--input", str(corpus), "--model", str(bundle), "--db", db_url, *fast])
    assert code == cli.EXIT_FAILED
    assert "could not start" in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "{bundle}"], "--input and --model are required"),
        (["--input", "{videos}"], "--input and --model are required"),
        (
            ["--input", "{videos}", "--model", "{bundle}", "--min_batch_windows", "65"],
            "must not exceed --max_batch_windows",
        ),
        (
            ["--input", "{videos}", "--model", "{bundle}", "--decode_groups", "0"],
            "--decode_groups must be at least 1",
        ),
        (
            ["--input", "{videos}", "--model", "{bundle}", "--decoders", "0"],
            "--decoders must be at least 1",
        ),
    ],
)
def test_unusable_options_are_a_usage_error(bundle, tmp_path, capsys, options, message):
    argv = [o.format(bundle=bundle, videos=tmp_path) for o in options]
    assert cli.main(["scan", *argv]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.e2e
def test_rows_reach_the_database_while_the_scan_still_runs(corpus, bundle, tmp_path):
    # One upload hangs its decoder for longer than the test waits. Rows of the other videos must
    # be committed meanwhile: a long local scan keeps its progress if it dies midway.
    videos = tmp_path / "videos"
    shutil.copytree(corpus, videos)
    shutil.copy(next(corpus.rglob("*.mp4")), videos / "hang.mp4")
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    command = [sys.executable, "-c", SCAN_WITH_FAULTY_DECODER, "--input", str(videos), "--model"]
    command += [str(bundle), "--db", db_url, "--write_batch_size", "1", "--decode_timeout_s", "900"]
    command += ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    tests = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    scanner = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        written = 0
        # SQLite tells no one of a commit, so this polls the table, waiting on the scan's exit
        # between looks: a scan that ends fails the test at once.
        while written == 0:
            assert time.monotonic() < deadline, "no row was committed in 5 minutes"
            with pytest.raises(subprocess.TimeoutExpired):  # the scan must still be running
                scanner.wait(timeout=0.5)
            with contextlib.suppress(SQLAlchemyError):  # until the scan has made its tables
                written = len(table(db_url))
    finally:
        scanner.kill()
        scanner.wait()
    assert "hang.mp4" not in {Path(r["video_uri"]).name for r in table(db_url)}


@pytest.mark.unit
def test_stop_signals_raise_stopped_only_within_the_scan():
    before = {each: signal.getsignal(each) for each in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(Stopped, match="SIGTERM"), stop_on_signals():
        signal.raise_signal(signal.SIGTERM)  # this thread runs the handler before it returns
    assert {each: signal.getsignal(each) for each in before} == before
