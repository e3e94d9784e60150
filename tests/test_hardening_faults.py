"""Faults: the database away at the start, dropping mid-run or gone for good; S3 throttling,
refusals and vanished objects; a scan killed midway. Nothing is lost and nothing is doubled.

Real parts only. The database faults are PostgreSQL itself ending the scan's connection
(``pg_terminate_backend`` from a trigger on the scan's writes) or holding a write while the test
kills the scan. Throttling comes from a small HTTP proxy in front of moto that answers 503
SlowDown, as S3 does under load; refusals from moto's IAM policy checks and its archive storage
class. Moto's buckets outlive each server, so every test uses buckets of its own.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import boto3
import psutil
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from moto.core.authorization import enable_iam_authentication
from scanning import assert_summary_matches_table, scan, scan_run, table
from sqlalchemy import text

from pipelines import cli
from pipelines.scan.decode import FAILED, DecodeVideos
from pipelines.scan.listing import DescribeVideos
from pipelines.store import database
from pipelines.store.migrations import migrate

pytestmark = pytest.mark.e2e

FAST_RETRIES = ["--db_retry_backoff_s", "0.01"]
RETRY_LOG = "database unavailable"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def videos(corpus: Path) -> list[Path]:
    return sorted(corpus.rglob("*.mp4"))


# --- the database ---


# What a fault trigger does to the write it catches: end the connection, or hold the write.
DROP = (
    "PERFORM pg_terminate_backend(pg_backend_pid()); "
    # The termination lands at the backend's next interrupt check, which could come after the
    # commit; pg_sleep checks at once, so it never sleeps here.
    "PERFORM pg_sleep(60);"
)
HOLD = "PERFORM pg_sleep(600);"  # until the test ends the backend
HELD_SCAN = "deeptrust-held-scan"


def fault_on_writes(db_url: str, table_name: str, when: str, action: str = DROP) -> None:
    """Make PostgreSQL apply ``action`` to every write to ``table_name`` for which the SQL
    condition ``when`` holds. In ``when``, ``n`` counts the writes from 1. Inserts into
    moderation_results count once per statement; updates of scan_runs count per row, and
    ``when`` can read the row as ``NEW``."""
    engine = database.connect(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SEQUENCE writes_{table_name}"))
            conn.execute(
                text(
                    f"CREATE FUNCTION fault_{table_name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    f"DECLARE n bigint := nextval('writes_{table_name}'); "
                    f"BEGIN IF {when} THEN {action} END IF; RETURN NEW; END $$"
                )
            )
            event, level = {
                "moderation_results": ("INSERT", "STATEMENT"),
                "scan_runs": ("UPDATE", "ROW"),
            }[table_name]
            conn.execute(
                text(
                    f"CREATE TRIGGER fault_{table_name} BEFORE {event} ON {table_name} "
                    f"FOR EACH {level} EXECUTE FUNCTION fault_{table_name}()"
                )
            )
    finally:
        engine.dispose()


def end_faults(db_url: str) -> None:
    """Remove the fault triggers and end any backend still holding a write."""
    engine = database.connect(db_url)
    try:
        # First: a held write keeps its lock on the table, which DROP TRIGGER waits for.
        with engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": HELD_SCAN},
            )
        with engine.begin() as conn:
            for name in ("moderation_results", "scan_runs"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS fault_{name} ON {name}"))
    finally:
        engine.dispose()


def retries_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(RETRY_LOG)]


@pytest.mark.parametrize("where", ["postgresql", "sqlite"])
def test_an_unreachable_database_at_the_start_fails_clearly_and_writes_nothing(
    where, corpus, bundle, tmp_path, caplog, capsys
):
    db_url = {
        "postgresql": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test",
        "sqlite": f"sqlite:///{tmp_path / 'missing' / 'scan.db'}",
    }[where]
    argv = ["scan", "--input", str(corpus), "--model", str(bundle), "--db", db_url]

    code = cli.main([*argv, "--db_attempts", "3", *FAST_RETRIES])

    assert code == cli.EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""  # no summary: no run was started
    assert "the run could not start: OperationalError" in err
    assert len(retries_logged(caplog)) == 2  # three tries, then the clear error
    assert list(tmp_path.iterdir()) == []  # SQLite did not even create its file


def test_a_connection_dropped_mid_run_is_retried_without_losing_a_row(
    corpus, bundle, pg_url, caplog
):
    # The first write succeeds; PostgreSQL then ends the connection of the next two.
    fault_on_writes(pg_url, "moderation_results", "n BETWEEN 2 AND 3")
    caplog.set_level(logging.WARNING, logger="pipelines.store.database")

    summary = scan(corpus, bundle, pg_url, "--write_batch_size", "1", *FAST_RETRIES)

    assert (summary["status"], summary["videos_seen"]) == ("succeeded", len(videos(corpus)))
    assert len(retries_logged(caplog)) == 2
    rows = table(pg_url)
    assert sorted(r["video_uri"] for r in rows) == [str(v) for v in videos(corpus)]
    assert_summary_matches_table(summary, pg_url)


def test_a_database_gone_for_good_fails_the_run_and_the_next_run_finishes_it(
    corpus, bundle, pg_url, capsys
):
    # After the first row, every write and the run's final update lose their connection.
    fault_on_writes(pg_url, "moderation_results", "n >= 2")
    fault_on_writes(pg_url, "scan_runs", "NEW.finished_at IS NOT NULL")
    argv = ["scan", "--input", str(corpus), "--model", str(bundle), "--db", pg_url]

    code = cli.main([*argv, "--write_batch_size", "1", "--db_attempts", "3", *FAST_RETRIES])

    assert code == cli.EXIT_FAILED
    assert "the database is unreachable, so scan_runs keeps it as 'running'" in (
        capsys.readouterr().err
    )
    (written,) = table(pg_url)
    assert scan_run(pg_url, written["run_id"])["status"] == "running"

    end_faults(pg_url)
    summary = scan(corpus, bundle, pg_url)
    assert (summary["status"], summary["skipped"]) == ("succeeded", 1)
    assert summary["scored"] + summary["errors"] == len(videos(corpus)) - 1
    rows = table(pg_url)
    assert sorted(r["video_uri"] for r in rows) == [str(v) for v in videos(corpus)]


def has_results_table(db_url: str) -> bool:
    engine = database.connect(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT to_regclass('moderation_results')")).scalar()
    finally:
        engine.dispose()


def test_a_scan_killed_midway_is_finished_by_the_next_run_without_duplicates(
    corpus, bundle, pg_url
):
    # With one row a write, rows reach the database as videos finish. Holding the fourth write
    # stops the scan with exactly three rows committed, where the test kills it.
    fault_on_writes(pg_url, "moderation_results", "n = 4", HOLD)
    db_url = f"{pg_url}&application_name={HELD_SCAN}"
    command = [sys.executable, "-m", "pipelines.scan", "--input", str(corpus)]
    command += ["--model", str(bundle), "--db", db_url, "--write_batch_size", "1"]
    scanner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (has_results_table(pg_url) and len(table(pg_url)) == 3):
            assert time.monotonic() < deadline, "the scan did not write 3 rows in 5 minutes"
            with pytest.raises(subprocess.TimeoutExpired):  # polls, and fails if it exited
                scanner.wait(timeout=0.2)
        decoders = psutil.Process(scanner.pid).children()
        scanner.send_signal(signal.SIGKILL)
        scanner.wait(timeout=60)
    finally:
        if scanner.poll() is None:
            scanner.kill()
        end_faults(pg_url)
    _, alive = psutil.wait_procs(decoders, timeout=30)
    assert alive == []  # the orphaned decoder child noticed and ended itself
    assert len(table(pg_url)) == 3

    summary = scan(corpus, bundle, pg_url)

    assert (summary["status"], summary["skipped"]) == ("succeeded", 3)
    assert summary["scored"] + summary["errors"] == len(videos(corpus)) - 3
    rows = table(pg_url)
    assert sorted(r["video_uri"] for r in rows) == [str(v) for v in videos(corpus)]


def test_a_scan_stopped_by_sigterm_records_its_run_as_failed(corpus, bundle, tmp_path):
    # Airflow and other schedulers stop a task with SIGTERM; the run must not stay "running".
    db_url = f"sqlite:///{tmp_path / 'stopped.db'}"
    command = [sys.executable, "-m", "pipelines.scan", "--input", str(corpus)]
    command += ["--model", str(bundle), "--db", db_url]
    scanner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # No event tells of a grandchild's fork, so this polls for the decoder child, waiting
        # on the scan's exit between looks: a scan that ends fails the test at once.
        while not psutil.Process(scanner.pid).children():  # a decoder child: the run is on
            assert time.monotonic() < deadline, "the scan started no decoder in 5 minutes"
            with pytest.raises(subprocess.TimeoutExpired):  # the scan must still be running
                scanner.wait(timeout=0.1)
        decoders = psutil.Process(scanner.pid).children()
        scanner.send_signal(signal.SIGTERM)
        out, err = scanner.communicate(timeout=120)
    finally:
        if scanner.poll() is None:
            scanner.kill()
    _, alive = psutil.wait_procs(decoders, timeout=30)

    assert scanner.returncode == 1, err
    assert "stopped by SIGTERM" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "failed"
    recorded = scan_run(db_url, summary["run_id"])
    assert recorded["status"] == "failed" and recorded["finished_at"] is not None
    assert alive == []


# --- S3 ---

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class ThrottlingProxy:
    """An S3 endpoint in front of moto that answers the first try of every distinct read
    (GET or HEAD of one path and query) with 503 SlowDown, as S3 does when throttling."""

    def __init__(self, upstream: str) -> None:
        self.reads: Counter[tuple[str, str]] = Counter()
        self.throttled = 0
        lock = threading.Lock()
        target = urlparse(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command in ("GET", "HEAD"):
                    with lock:
                        first = proxy.reads[(self.command, self.path)] == 0
                        proxy.reads[(self.command, self.path)] += 1
                        proxy.throttled += first
                    if first:
                        self.send_response(503)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(SLOW_DOWN)))
                        self.end_headers()
                        if self.command == "GET":
                            self.wfile.write(SLOW_DOWN)
                        return
                upstream = HTTPConnection(target.hostname, target.port, timeout=60)
                upstream.request(self.command, self.path, body, dict(self.headers.items()))
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(name, value)
                if answer.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def upload(client, corpus: Path, bucket: str, keys: list[str], **extra) -> None:
    for key, video in zip(keys, videos(corpus), strict=False):
        client.upload_file(str(video), bucket, key, ExtraArgs=extra or None)


def test_throttled_s3_reads_are_retried(corpus, bundle, s3_server, monkeypatch, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="throttled")
    keys = ["day/a.mp4", "day/b.mp4"]
    upload(client, corpus, "throttled", keys)
    proxy = ThrottlingProxy(s3_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    try:
        summary = scan("s3://throttled/day/", bundle, db_url)
    finally:
        proxy.close()

    assert (summary["status"], summary["scored"]) == ("succeeded", len(keys))
    # Listing, versions (HEAD) and downloads (GET) were each refused once, then retried.
    assert {method for method, _ in proxy.reads} == {"GET", "HEAD"}
    assert proxy.throttled == len(proxy.reads) >= 1 + 2 * len(keys)
    assert all(count >= 2 for count in proxy.reads.values())


def test_refused_s3_objects_become_error_rows(corpus, bundle, s3_server, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", s3_server)
    client = boto3.client("s3")
    client.create_bucket(Bucket="refusals")
    upload(client, corpus, "refusals", ["day/ok.mp4", "day/private.mp4"])
    upload(client, corpus, "refusals", ["day/archived.mp4"], StorageClass="GLACIER")
    iam = boto3.client("iam")
    iam.create_user(UserName="scanner")
    deny = "arn:aws:s3:::refusals/day/private.mp4"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": deny},
        ],
    }
    iam.put_user_policy(UserName="scanner", PolicyName="scan", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="scanner")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"

    with enable_iam_authentication():  # moto now checks every request against the policy
        summary = scan("s3://refusals/day/", bundle, db_url)

    assert (summary["status"], summary["scored"], summary["errors"]) == ("succeeded", 1, 2)
    rows = {r["video_uri"].rsplit("/", 1)[-1]: r for r in table(db_url)}
    outcomes = {name: (r["status"], r["error_reason"]) for name, r in rows.items()}
    assert outcomes == {
        "ok.mp4": ("scored", None),
        "private.mp4": ("error", "s3_forbidden"),  # AccessDenied by the policy
        "archived.mp4": ("error", "s3_forbidden"),  # InvalidObjectState: in Glacier
    }
    # Even its HEAD is refused, so the listing cannot read its ETag.
    size = os.path.getsize(videos(corpus)[1])
    assert rows["private.mp4"]["content_version"] == f"unreadable:size:{size}"
    assert "InvalidObjectState" in rows["archived.mp4"]["error_detail"]


def test_an_object_deleted_after_the_listing_is_an_error_row(corpus, small_config, s3_server):
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="vanishing")
    upload(client, corpus, "vanishing", ["day/gone.mp4"])
    FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={s3_server}"]))
    decode = DecodeVideos(small_config, min_batch_windows=1)
    decode.setup()
    try:
        (metadata,) = FileSystems.match(["s3://vanishing/day/*"])[0].metadata_list
        (ref,) = DescribeVideos(("mp4",)).process(metadata)
        client.delete_object(Bucket="vanishing", Key="day/gone.mp4")
        (output,) = decode.process((0, [ref]))
    finally:
        decode.teardown()
        FileSystems.set_options(None)  # later tests must not reach this server
    assert output.tag == FAILED
    assert output.value.ref == ref
    assert output.value.reason == "s3_not_found"
    assert ref.content_version.startswith("etag:")
