"""SHA-256 of a file or stream, read in chunks, with an optional cap on the bytes read.

One helper for every content hash: model bundles, the feature cache and the scan's listing. A
cap makes a hash refuse input that is longer than its caller allows, instead of reading on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20


class TooLong(ValueError):
    """The input holds more bytes than the hash was allowed to read."""


def sha256_stream(stream: BinaryIO, limit: int | None = None) -> str:
    """Hex SHA-256 of ``stream``'s remaining bytes; TooLong when there are more than ``limit``."""
    digest = hashlib.sha256()
    read = 0
    while True:
        want = CHUNK_BYTES if limit is None else min(CHUNK_BYTES, limit - read + 1)
        block = stream.read(want)
        if not block:
            return digest.hexdigest()
        read += len(block)
        if limit is not None and read > limit:
            raise TooLong(f"more than {limit} bytes")
        digest.update(block)


def sha256_file(path: str | Path, limit: int | None = None) -> str:
    """Hex SHA-256 of the file at ``path``; TooLong when it holds more than ``limit`` bytes."""
    with open(path, "rb") as handle:
        return sha256_stream(handle, limit)
