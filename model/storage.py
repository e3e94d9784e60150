"""Read files from a local path or ``s3://bucket/key``.

S3 access goes through boto3, which takes credentials from the environment or IAM and honours
``AWS_ENDPOINT_URL_S3`` for S3-compatible stores. Nothing here logs credentials. Clients retry
transient errors and throttling in boto's standard retry mode.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

S3_RETRY_MODE = "standard"
S3_MAX_ATTEMPTS = 5
# A suffix a temporary copy may keep from its object's name (decoders go by it).
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client():
    import boto3
    from botocore.config import Config

    retries = {"mode": S3_RETRY_MODE, "max_attempts": S3_MAX_ATTEMPTS}
    return boto3.client("s3", config=Config(retries=retries))


def prefer_standard_retries() -> None:
    """Standard retries for the boto3 clients others build here, unless the environment chooses.

    Beam's S3 filesystem builds its own clients, and boto3 reads these variables when it does.
    """
    os.environ.setdefault("AWS_RETRY_MODE", S3_RETRY_MODE)
    os.environ.setdefault("AWS_MAX_ATTEMPTS", str(S3_MAX_ATTEMPTS))


def temporary_copy(
    uri: str, download: Callable[[str, str], None], dest_dir: str | Path | None = None
) -> Path:
    """A new temporary file that ``download(uri, its_name)`` filled with ``uri``'s bytes.

    The file's name derives from a temporary name, never from the object key, so a key cannot
    choose where anything lands on disk; only a short alphanumeric suffix is kept. A failed
    download leaves no file behind. The caller deletes the copy when done with it.
    """
    suffix = Path(uri).suffix
    fd, name = tempfile.mkstemp(
        prefix="deeptrust-", suffix=suffix if _SAFE_SUFFIX.fullmatch(suffix) else "", dir=dest_dir
    )
    os.close(fd)
    try:
        download(uri, name)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _download_s3(uri: str, name: str) -> None:
    bucket, key = split_s3(uri)
    s3_client().download_file(bucket, key, name)


def fetch(uri: str, dest_dir: str | Path | None = None) -> Path:
    """A local path holding ``uri``'s bytes: the path itself, or a download of the S3 object
    (see :func:`temporary_copy`)."""
    if not is_s3(uri):
        path = Path(uri)
        if not path.exists():
            raise FileNotFoundError(f"{uri} does not exist")
        return path
    return temporary_copy(uri, _download_s3, dest_dir)


def fetch_tree(uri: str, dest_dir: str | Path) -> Path:
    """Copy every object under an ``s3://`` prefix into ``dest_dir`` (flat names only)."""
    if not is_s3(uri):
        return Path(uri)
    bucket, prefix = split_s3(uri.rstrip("/") + "/")
    client = s3_client()
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if not name or "/" in name or name in (".", ".."):
                continue
            client.download_file(bucket, item["Key"], str(dest / name))
    return dest


def user_cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/deeptrust/...`` (``~/.cache`` by default): caches that any run may
    rebuild, such as extracted features and quantized models."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "deeptrust", *parts)
