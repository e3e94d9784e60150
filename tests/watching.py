"""Helpers for the watcher's tests and its latency measure: a bucket that notifies an SQS queue on
a moto server, and ``deeptrust watch`` run as a user runs it, in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass
class Uploads:
    """A bucket on a moto server whose object-created events go to ``queue``."""

    endpoint: str
    bucket: str
    queue: str
    dead_letter_queue: str

    @property
    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint)

    @property
    def sqs(self) -> Any:
        return boto3.client("sqs", endpoint_url=self.endpoint)

    def depth(self, queue: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of ``queue`` (the watched one by default)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue or self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


def notifying_bucket(endpoint: str) -> Uploads:
    """Make a bucket, a queue and a dead-letter queue, and have the bucket notify the queue of
    every created object, as infra/watch/notification.json sets it up on AWS.

    Names are new each time: moto servers in one process share their state.
    """
    suffix = uuid.uuid4().hex[:8]
    bucket = f"uploads-{suffix}"
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName=f"uploads-{suffix}")["QueueUrl"]
    dead = sqs.create_queue(QueueName=f"uploads-{suffix}-dead")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn["QueueArn"], "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return Uploads(endpoint, bucket, queue, dead)


def wait_for(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.5) -> T:
    """``check()``'s first true value, polled until ``timeout_s``; AssertionError after."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


class Watcher:
    """``deeptrust watch`` in a process group of its own, with its output in files."""

    def __init__(self, uploads: Uploads, bundle: Path, db_url: str, work: Path, *extra: str):
        self.liveness = work / "alive"
        self._out = work / "watch.out"
        self._err = work / "watch.err"
        env = os.environ | {
            "PYTHONPATH": str(ROOT),
            "AWS_ENDPOINT_URL_S3": uploads.endpoint,
            "AWS_ENDPOINT_URL_SQS": uploads.endpoint,
        }
        argv = [
            *("--queue", uploads.queue, "--dead_letter_queue", uploads.dead_letter_queue),
            *("--model", str(bundle), "--db", db_url, "--liveness_file", str(self.liveness)),
            *extra,
        ]
        with self._out.open("ab") as out, self._err.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "watch", *argv],
                env=env,
                stdout=out,
                stderr=err,
                cwd=work,
                start_new_session=True,
            )

    def wait_until_alive(self, timeout_s: float = 120) -> None:
        def alive() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the watcher exited {self.process.returncode}:\n{self.log}")
            return self.liveness.exists()

        wait_for(alive, timeout_s, "the watcher's liveness file", every_s=0.2)

    @property
    def log(self) -> str:
        return self._err.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, as a container runtime sends it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL to the whole process group (the watcher and its decoder children), as an
        out-of-memory kill or a lost machine ends them."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
