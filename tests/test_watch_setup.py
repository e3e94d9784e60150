"""The watcher's parts short of a running pipeline: its options, its queue client against an
in-process SQS, the example deployment under infra/watch, and its runs beside the nightly scan's."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from moto import mock_aws

from pipelines.console import EXIT_USAGE
from pipelines.scan.metrics import read_run_metrics
from pipelines.store import database, runs
from pipelines.watch.options import WatchOptions
from pipelines.watch.queue import Queue
from pipelines.watch.run import main, parser
from tests.rows import finished_run

INFRA = Path(__file__).resolve().parent.parent / "infra" / "watch"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "--queue is required"),
        (["--queue=q", "--poll_wait_s=0"], "--poll_wait_s"),
        (["--queue=q", "--poll_wait_s=21"], "--poll_wait_s"),
        (["--queue=q", "--max_batch_wait_s=-1"], "--max_batch_wait_s"),
        (["--queue=q", "--visibility_timeout_s=0"], "--visibility_timeout_s"),
        (["--queue=q", "--max_receives=0"], "--max_receives"),
        (["--queue=q", "--max_batch_messages=0"], "--max_batch_messages"),
    ],
)
def test_unusable_options_are_refused_with_the_option_named(argv, says):
    with pytest.raises(ValueError, match=says):
        PipelineOptions(argv).view_as(WatchOptions).check()


@pytest.mark.component
@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "m"],  # no queue
        ["--queue", "https://sqs/q"],  # no model
        ["--queue", "https://sqs/q", "--model", "m", "--input", "s3://b/"],
        ["--queue", "https://sqs/q", "--model", "m", "--max_batch_windows", "0"],
    ],
)
def test_bad_options_exit_2_before_anything_starts(argv, capsys):
    assert main(argv) == EXIT_USAGE
    assert "deeptrust watch: error:" in capsys.readouterr().err


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs")


def _depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.component
def test_the_queue_counts_deliveries_and_gives_messages_back(sqs):
    url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one")
    queue = Queue(url)
    (first,) = queue.receive(10, 0, 30)
    assert (first.body, first.receive_count) == ("one", 1)
    assert queue.receive(10, 0, 30) == []  # hidden while in hand
    queue.give_back(first)
    (again,) = queue.receive(10, 0, 30)
    assert (again.message_id, again.receive_count) == (first.message_id, 2)
    queue.delete(again)
    assert _depth(sqs, url) == 0


@pytest.mark.component
def test_a_dead_letter_carries_its_reason_and_leaves_the_queue(sqs):
    url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    dead = sqs.create_queue(QueueName="uploads-dead")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    sqs.send_message(QueueUrl=url, MessageBody="more garbage")
    queue = Queue(url)
    first, second = queue.receive(10, 0, 30)
    queue.dead_letter(first, "bad_event", dead)
    queue.dead_letter(second, "bad_event", None)  # no dead-letter queue: deleted
    assert _depth(sqs, url) == 0
    (letter,) = sqs.receive_message(QueueUrl=dead, MessageAttributeNames=["All"])["Messages"]
    assert letter["Body"] == first.body
    attributes = letter["MessageAttributes"]
    assert attributes["deeptrust_reason"]["StringValue"] == "bad_event"
    assert attributes["source_message_id"]["StringValue"] == first.message_id
    assert attributes["source_queue"]["StringValue"] == url


@pytest.mark.unit
def test_a_queue_pickles_as_its_settings():
    import pickle

    queue = Queue("https://sqs.example/1/q", "http://127.0.0.1:1")
    queue._client = object()  # a client in hand never travels to the workers
    copy = pickle.loads(pickle.dumps(queue))
    assert (copy.url, copy.endpoint_url, copy._client) == (queue.url, queue.endpoint_url, None)


@pytest.mark.unit
def test_the_example_deployment_runs_the_watcher_with_options_it_knows():
    deployment, service = yaml.safe_load_all((INFRA / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "pipelines.watch"]
    known, unknown = parser().parse_known_args(container["args"])
    assert unknown == []
    assert known.queue and known.dead_letter_queue and known.model
    probe = " ".join(container["livenessProbe"]["exec"]["command"])
    assert known.liveness_file in probe
    assert container["ports"][0]["containerPort"] == known.metrics_port
    assert service["spec"]["ports"][0]["port"] == known.metrics_port


@pytest.mark.unit
def test_the_example_queue_set_up_fits_together():
    notification = json.loads((INFRA / "notification.json").read_text())
    (target,) = notification["QueueConfigurations"]
    assert target["Events"] == ["s3:ObjectCreated:*"]
    policy = json.loads((INFRA / "queue-policy.json").read_text())
    (allow,) = policy["Statement"]
    assert allow["Resource"] == target["QueueArn"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    attributes = json.loads((INFRA / "queue-attributes.json").read_text())
    redrive = json.loads(attributes["RedrivePolicy"])
    role = json.loads((INFRA / "watcher-role-policy.json").read_text())
    grants = {s["Sid"]: s for s in role["Statement"]}
    assert grants["DeadLetters"]["Resource"] == redrive["deadLetterTargetArn"]
    assert grants["ReadTheQueue"]["Resource"] == target["QueueArn"]
    # The queue's own redrive is the backstop: it must outlast the watcher's --max_receives.
    deployment, _ = yaml.safe_load_all((INFRA / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    known, _ = parser().parse_known_args(container["args"])
    assert int(redrive["maxReceiveCount"]) > known.max_receives
    assert int(attributes["VisibilityTimeout"]) == known.visibility_timeout_s


@pytest.mark.component
def test_a_watcher_run_never_passes_for_the_nightly_scans_success(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'runs.db'}"
    nightly = finished_run(db_url, "scan-1", "v1", [])
    watcher = finished_run(db_url, "watch-1", "v1", [], runner=f"{runs.WATCHER_RUNNER}FnApiRunner")
    assert watcher["finished_at"] >= nightly["finished_at"]
    engine = database.connect(db_url)
    try:
        finished_at, version = read_run_metrics(engine, "scan-1").last_success
    finally:
        engine.dispose()
    assert (finished_at, version) == (nightly["finished_at"], "v1")


@pytest.mark.unit
def test_the_first_stop_signal_asks_for_a_graceful_stop_and_a_second_would_end_the_process(
    capsys,
):
    import signal

    from pipelines.scan.run import on_stop_signals
    from pipelines.watch import lifecycle
    from pipelines.watch.run import _stop_gracefully

    before = {each: signal.getsignal(each) for each in (signal.SIGTERM, signal.SIGINT)}
    with on_stop_signals(_stop_gracefully), lifecycle.stop_cleared():
        assert not lifecycle.stop_requested()
        signal.raise_signal(signal.SIGTERM)  # this thread runs the handler before it returns
        assert lifecycle.stop_requested()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the next one is fatal
    assert not lifecycle.stop_requested()
    assert {each: signal.getsignal(each) for each in before} == before
    assert "SIGTERM: finishing the messages in hand" in capsys.readouterr().err
