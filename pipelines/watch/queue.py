"""The SQS queue the watcher reads: long-polled receives, deletes, returns and the dead letters.

Beam's Python SDK has no SQS connector, so the watcher's first step calls SQS itself through
:class:`Queue`. The client is made on first use (a ``Queue`` pickles as its settings alone, as a
DoFn's member must), with the endpoint from ``--sqs_endpoint_url`` or, as boto3 reads it, from
``AWS_ENDPOINT_URL_SQS``; credentials come from the environment or the machine's role only.

A message is deleted only by its caller, once every video it names has a row. A poison message
goes to the dead-letter queue (``--dead_letter_queue``) with the reason as a message attribute,
and only then is it deleted; with no dead-letter queue it is deleted once its row is written.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

_LOG = logging.getLogger(__name__)
# SQS's own limits on one ReceiveMessage call.
MAX_RECEIVE = 10
MAX_WAIT_S = 20


@dataclass(frozen=True)
class Message:
    """One received SQS message: enough to parse, delete or return it."""

    message_id: str
    receipt: str
    body: str
    receive_count: int  # SQS's ApproximateReceiveCount: 1 on the first delivery
    sent_at: float  # Unix time SQS accepted it


def _message(raw: dict[str, Any]) -> Message:
    attributes = raw.get("Attributes", {})
    return Message(
        message_id=raw["MessageId"],
        receipt=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        sent_at=int(attributes.get("SentTimestamp", time.time() * 1000)) / 1000,
    )


@dataclass
class Queue:
    """An SQS queue by URL; ``endpoint_url`` overrides boto3's own choice of endpoint."""

    url: str
    endpoint_url: str | None = None
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "endpoint_url": self.endpoint_url, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # only where a queue is used

            self._client = boto3.client("sqs", endpoint_url=self.endpoint_url or None)
        return self._client

    def receive(self, most: int, wait_s: float, visibility_timeout_s: int) -> list[Message]:
        """Up to ``most`` messages, waiting at most ``wait_s`` (long polling) for the first."""
        reply = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(most, MAX_RECEIVE)),
            WaitTimeSeconds=max(0, min(math.ceil(wait_s), MAX_WAIT_S)),
            VisibilityTimeout=visibility_timeout_s,
            AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        return [_message(raw) for raw in reply.get("Messages", [])]

    def delete(self, message: Message) -> None:
        self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)

    def give_back(self, message: Message) -> None:
        """Make ``message`` visible again now, for another receive to take."""
        self.client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=0
        )

    def dead_letter(self, message: Message, reason: str, dead_letter_url: str | None) -> None:
        """Send ``message`` to ``dead_letter_url`` with ``reason`` (when there is one), then
        delete it here."""
        if dead_letter_url:
            self.client.send_message(
                QueueUrl=dead_letter_url,
                MessageBody=message.body or "(empty)",
                MessageAttributes={
                    "deeptrust_reason": {"DataType": "String", "StringValue": reason[:1000]},
                    "source_queue": {"DataType": "String", "StringValue": self.url},
                    "source_message_id": {"DataType": "String", "StringValue": message.message_id},
                },
            )
        else:
            _LOG.warning(
                "message %s is poison (%s) and no --dead_letter_queue is set: it is deleted; "
                "its row says why",
                message.message_id,
                reason,
            )
        self.delete(message)

    def depth(self) -> tuple[int, int]:
        """(visible, in flight) messages, as SQS approximates them."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )
