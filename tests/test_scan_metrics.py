"""The scan's metrics: Beam metrics in the pipeline, and each run pushed to a real Pushgateway."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from datetime import UTC
from pathlib import Path

import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult
from apache_beam.testing import test_pipeline
from prometheus_client.parser import text_string_to_metric_families

from pipelines.scan import metrics, writing
from pipelines.scan.run import run
from pipelines.store import database
from tests.rows import finished_run, verdict
from tests.scanning import scan, scan_run, table

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pushgateway(tmp_path):
    """Debian's prometheus-pushgateway on a free port, without persistence; yields its URL."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.fail(
            "prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway)"
        )
    url = f"http://127.0.0.1:{free_port()}"
    log = (tmp_path / "pushgateway.log").open("w")
    process = subprocess.Popen(
        [binary, f"--web.listen-address={url.removeprefix('http://')}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ready(process, f"{url}/-/ready", tmp_path / "pushgateway.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_until_ready(process: subprocess.Popen, ready_url: str, log: Path) -> None:
    """Poll ``ready_url`` until it answers 200; fail if the process exits or time runs out."""
    attempts = int(READY_TIMEOUT_S / 0.05)
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        try:  # waits 50 ms between polls, and notices a gateway that died
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the pushgateway exited with {process.returncode}: {log.read_text()}")
    pytest.fail(f"the pushgateway was not ready after {READY_TIMEOUT_S} s: {log.read_text()}")


def pushed(url: str) -> dict[tuple[str, frozenset], float]:
    """The samples the gateway serves for the scan's job, keyed by name and labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") == metrics.JOB:
                samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The one sample named ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


def publish(db_url: str, run_id: str, gateway: str | None) -> str:
    engine = database.connect(db_url)
    try:
        return metrics.publish_run(engine, run_id, gateway)
    finally:
        engine.dispose()


def run_rows(version: str) -> list[dict]:
    return [
        writing.scored_row("/videos/a.mp4", "sha256:a", version, verdict(0.9, True)),
        writing.scored_row("/videos/b.mp4", "sha256:b", version, verdict(0.2, False)),
        writing.scored_row("/videos/c.mp4", "sha256:c", version, verdict(0.1, False)),
        writing.error_row("/videos/d.mp4", "sha256:d", version, "unreadable", "not a video"),
        writing.error_row("/videos/e.mp4", "sha256:e", version, "empty_file", "zero bytes"),
    ]


@pytest.mark.e2e
def test_a_push_carries_the_runs_counts_and_replaces_the_last_one(pushgateway, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    first = finished_run(db_url, "run-1", "v1", run_rows("v1"), seen=6)
    assert first["status"] == "succeeded"
    assert publish(db_url, "run-1", pushgateway) == "pushed"

    samples = pushed(pushgateway)
    videos = {
        outcome: value(samples, "deeptrust_scan_videos_total", outcome=outcome)
        for outcome in metrics.OUTCOMES
    }
    assert videos == {
        "listed": 6,
        "skipped": 1,
        "scored": 3,
        "flagged": 1,
        "error": 2,
        "matched": 0,
    }
    assert value(samples, "deeptrust_scan_errors_total", reason="unreadable") == 1
    assert value(samples, "deeptrust_scan_errors_total", reason="empty_file") == 1
    assert value(samples, "deeptrust_scan_flagged_ratio") == pytest.approx(1 / 3)
    duration = (first["finished_at"] - first["started_at"]).total_seconds()
    assert value(samples, "deeptrust_scan_duration_seconds") == pytest.approx(duration)
    success = first["finished_at"].replace(tzinfo=UTC).timestamp()
    assert value(samples, "deeptrust_scan_last_success_timestamp_seconds") == pytest.approx(success)
    ours = [dict(labels) for name, labels in samples if name.startswith("deeptrust_")]
    assert all(labels["model_version"] == "v1" for labels in ours)
    assert all(labels.get("instance", "") == "" for labels in ours)
    recorded = scan_run(db_url, "run-1")
    assert (recorded["metrics_push"], recorded["metrics_push_error"]) == ("pushed", None)

    # A failed run of a new model replaces the group; the last success is still the first run's.
    finished_run(db_url, "run-2", "v2", [], failed=True)
    assert publish(db_url, "run-2", pushgateway) == "pushed"
    samples = pushed(pushgateway)
    last_success = value(samples, "deeptrust_scan_last_success_timestamp_seconds")
    assert last_success == pytest.approx(success)
    assert value(samples, "deeptrust_scan_videos_total", outcome="listed") == 0
    versions = {dict(ls)["model_version"] for n, ls in samples if n.startswith("deeptrust_scan_v")}
    assert versions == {"v2"}
    assert not [n for n, _ in samples if n == "deeptrust_scan_flagged_ratio"]
    assert not [n for n, _ in samples if n == "deeptrust_scan_errors_total"]


@pytest.mark.component
def test_a_failed_push_is_recorded_on_the_run_and_not_raised(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    finished_run(db_url, "run-1", "v1", run_rows("v1"))
    nobody = f"http://127.0.0.1:{free_port()}"
    assert publish(db_url, "run-1", nobody) == "failed"
    recorded = scan_run(db_url, "run-1")
    assert recorded["metrics_push"] == "failed"
    assert "URLError" in recorded["metrics_push_error"]
    assert recorded["status"] == "succeeded"


@pytest.mark.component
def test_the_gateway_comes_from_the_option_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.PUSHGATEWAY_ENV, raising=False)
    assert metrics.gateway_url(None) is None
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    finished_run(db_url, "run-1", "v1", [])
    assert publish(db_url, "run-1", None) == "disabled"
    assert scan_run(db_url, "run-1")["metrics_push"] == "disabled"
    monkeypatch.setenv(metrics.PUSHGATEWAY_ENV, "http://gateway:9091")
    assert metrics.gateway_url(None) == "http://gateway:9091"
    assert metrics.gateway_url("http://other:9091") == "http://other:9091"


def scan_folder(corpus: Path, out: Path, videos: int) -> Path:
    """``videos`` videos of ``corpus`` and one broken file, which becomes an error row."""
    out.mkdir()
    for source in sorted(corpus.rglob("*.mp4"))[:videos]:
        shutil.copy(source, out / f"{source.parent.name}-{source.name}")
    (out / "broken.mp4").write_bytes(b"not a video")
    return out


@pytest.mark.e2e
def test_a_scan_pushes_what_its_rows_count(corpus, bundle, pg_url, pushgateway, tmp_path):
    videos = scan_folder(corpus, tmp_path / "videos", 3)
    summary = scan(videos, bundle, pg_url, "--pushgateway", pushgateway)
    assert (summary["status"], summary["metrics_push"]) == ("succeeded", "pushed")

    rows = table(pg_url)
    samples = pushed(pushgateway)
    counts = {
        "listed": len(rows),
        "skipped": 0,
        "scored": sum(r["status"] == "scored" for r in rows),
        "flagged": sum(bool(r["flagged"]) for r in rows),
        "error": sum(r["status"] == "error" for r in rows),
    }
    assert counts["scored"] == 3 and counts["error"] == 1
    for outcome, count in counts.items():
        assert value(samples, "deeptrust_scan_videos_total", outcome=outcome) == count
    assert value(samples, "deeptrust_scan_errors_total", reason="unreadable") == 1
    ratio = value(samples, "deeptrust_scan_flagged_ratio")
    assert ratio == pytest.approx(counts["flagged"] / counts["scored"])
    recorded = scan_run(pg_url, summary["run_id"])
    success = recorded["finished_at"].replace(tzinfo=UTC).timestamp()
    assert value(samples, "deeptrust_scan_last_success_timestamp_seconds") == pytest.approx(success)
    assert recorded["metrics_push"] == "pushed"


@pytest.mark.e2e
def test_a_scan_whose_push_fails_still_succeeds(corpus, bundle, tmp_path, monkeypatch):
    videos = scan_folder(corpus, tmp_path / "videos", 1)
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    monkeypatch.setenv(metrics.PUSHGATEWAY_ENV, f"http://127.0.0.1:{free_port()}")
    summary = scan(videos, bundle, db_url)
    assert (summary["status"], summary["scored"], summary["errors"]) == ("succeeded", 1, 1)
    assert summary["metrics_push"] == "failed"
    recorded = scan_run(db_url, summary["run_id"])
    assert recorded["metrics_push"] == "failed"
    assert "Connection refused" in recorded["metrics_push_error"]


class KeepsResult(test_pipeline.TestPipeline):
    """A test pipeline that keeps the result of its run, whose metrics the test reads."""

    def run(self, test_runner_api: bool | str = True) -> PipelineResult:
        self.result = super().run(test_runner_api)
        return self.result


@pytest.mark.e2e
def test_beam_metrics_count_the_scan_as_it_runs(corpus, bundle, tmp_path):
    """On the local runner, whose results report metrics, the counters match the rows."""
    videos = scan_folder(corpus, tmp_path / "videos", 3)
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    argv = ["--input", str(videos), "--model", str(bundle), "--db", db_url, "--runner=FnApiRunner"]
    pipeline = KeepsResult(options=PipelineOptions(argv))
    summary = run(argv, test_pipeline=pipeline)
    assert (summary["scored"], summary["errors"]) == (3, 1)
    result = pipeline.result

    def committed(name: str):
        found = result.metrics().query(MetricsFilter().with_namespace("deeptrust").with_name(name))
        cells = found["counters"] or found["distributions"]
        assert len(cells) == 1, f"{name}: {cells}"
        return cells[0].committed

    rows = table(db_url)
    assert committed("videos_listed") == 4
    assert committed("videos_scored") == sum(r["status"] == "scored" for r in rows) == 3
    assert committed("videos_flagged") == sum(bool(r["flagged"]) for r in rows)
    assert committed("errors_unreadable") == 1
    frames = sum(r["frames_analyzed"] for r in rows if r["status"] == "scored")
    assert committed("frames_decoded") == frames
    batches = committed("inference_batch_windows")
    windows = committed("windows")
    assert batches.sum == windows and batches.count >= 1
    assert committed("inference_ms").count == batches.count
    verdicts = committed("windows_per_verdict")  # full sampling: every window of every video
    assert (verdicts.count, verdicts.sum) == (3, windows)
    assert committed("decode_ms").count == 4
