"""Stable shards of a listing, so that a backfill can scan a large archive in parallel pieces.

An object's shard depends only on its URI. The scan (``--shard I/N``) and the Airflow task that
plans a backfill therefore agree on every object without passing lists around, and a shard that
runs again lists the same objects. This module imports neither Beam nor TensorFlow.
"""

from __future__ import annotations

import hashlib
import re

_SPEC = re.compile(r"(\d+)/(\d+)")


def shard_of(uri: str, count: int) -> int:
    """The shard, in ``0..count-1``, that holds the object at ``uri``."""
    digest = hashlib.sha256(uri.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``; ValueError unless ``0 <= I < N``."""
    match = _SPEC.fullmatch(spec.strip())
    if not match:
        raise ValueError(f"--shard must look like INDEX/COUNT, such as 0/4: got {spec!r}")
    index, count = int(match[1]), int(match[2])
    if not 0 <= index < count:
        raise ValueError(f"--shard {spec}: INDEX must be at least 0 and below COUNT")
    return index, count


def shard_spec(index: int, count: int) -> str:
    return f"{index}/{count}"
