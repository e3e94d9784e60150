"""A deferrable wait for S3 keys that needs no aiobotocore, for the nightly DAG's sensor.

The Amazon provider's S3KeyTrigger polls through aiobotocore, which pins botocore below the
release that the worker's boto3 needs, so it cannot load next to it. This trigger polls with the
provider's ordinary (boto3) hook in a worker thread instead. Airflow's triggerer imports it by its
class path, so it lives in an installed package rather than in ``dags/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger
from airflow.triggers.base import TriggerEvent


class S3KeyPollTrigger(S3KeyTrigger):
    """S3KeyTrigger for plain and wildcard keys, polling with boto3 in a thread."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        check = self.hook.check_for_wildcard_key if self.wildcard_match else self.hook.check_for_key
        keys = [self.bucket_key] if isinstance(self.bucket_key, str) else list(self.bucket_key)
        try:
            for bucket_key in keys:
                bucket, key = S3Hook.get_s3_bucket_key(
                    self.bucket_name, bucket_key, "bucket_name", "bucket_key"
                )
                while not await asyncio.to_thread(check, key, bucket):
                    self.log.info(
                        "No s3://%s/%s yet; next look in %s s", bucket, key, self.poke_interval
                    )
                    await asyncio.sleep(self.poke_interval)
        except Exception as err:
            yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
            return
        yield TriggerEvent({"status": "success"})
