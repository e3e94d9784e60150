"""Listing: which objects are videos, and which bytes each one holds."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.scan.listing import ListVideos, VideoRef, input_pattern
from pipelines.scan.options import LOCAL_RUNNER


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.mark.unit
def test_input_becomes_a_file_pattern(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    assert input_pattern(str(tmp_path)) == str(tmp_path / "**")
    assert input_pattern(str(video)) == str(video)
    assert input_pattern(str(tmp_path / "*.mp4")) == str(tmp_path / "*.mp4")


@pytest.mark.component
def test_local_videos_are_listed_recursively_with_content_hashes(tmp_path):
    files = {
        "real/a.mp4": b"first video",
        "fake/deep/b.MOV": b"second video",
        "fake/c.mp4": b"first video",  # same bytes, another object: listed on its own
        "manifest.csv": b"path,label\n",
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    expected = [
        VideoRef(str(tmp_path / name), sha256(data), len(data))
        for name, data in files.items()
        if not name.endswith(".csv")
    ]
    with test_pipeline.TestPipeline(runner=LOCAL_RUNNER) as pipeline:
        refs = pipeline | ListVideos(str(tmp_path), ("mp4", "mov"))
        assert_that(refs, equal_to(expected))


@pytest.mark.e2e
def test_s3_objects_are_versioned_by_etag_and_size(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="uploads")
    objects = {"day1/a.mp4": b"aaaa", "day1/sub/b.mp4": b"bb", "day1/notes.txt": b"n"}
    for key, body in {**objects, "day10/c.mp4": b"c"}.items():
        client.put_object(Bucket="uploads", Key=key, Body=body)
    expected = []
    for key, body in objects.items():
        if key.endswith(".mp4"):
            etag = client.head_object(Bucket="uploads", Key=key)["ETag"].strip('"')
            version = f"etag:{etag}:size:{len(body)}"
            expected.append(VideoRef(f"s3://uploads/{key}", version, len(body)))
    # Only the pipeline option names the endpoint: AWS_ENDPOINT_URL_S3 is unset here.
    options = PipelineOptions([f"--s3_endpoint_url={s3_server}"])
    with test_pipeline.TestPipeline(runner=LOCAL_RUNNER, options=options) as pipeline:
        refs = pipeline | ListVideos("s3://uploads/day1", ("mp4",))
        assert_that(refs, equal_to(expected))
