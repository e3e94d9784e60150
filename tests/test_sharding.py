"""Shards of a listing: stable, disjoint, covering, and selected by the scan's ``--shard``."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.scan.listing import ListVideos
from pipelines.scan.options import LOCAL_RUNNER
from pipelines.scan.run import run
from pipelines.scan.sharding import parse_shard, shard_of


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "parsed"), [("0/1", (0, 1)), ("2/3", (2, 3)), (" 7/16 ", (7, 16))]
)
def test_shard_specs_parse(spec, parsed):
    assert parse_shard(spec) == parsed


@pytest.mark.unit
@pytest.mark.parametrize("spec", ["3/3", "1/0", "-1/4", "1", "a/b", "1/2/3", ""])
def test_bad_shard_specs_are_refused(spec):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(spec)


@pytest.mark.unit
def test_shards_are_stable_and_spread():
    uris = [f"s3://archive/videos/{n:04d}.mp4" for n in range(400)]
    shards = [shard_of(uri, 4) for uri in uris]
    assert shards == [shard_of(uri, 4) for uri in uris]
    assert all(60 < shards.count(shard) < 140 for shard in range(4))


@pytest.mark.component
def test_each_video_is_listed_in_exactly_one_shard(tmp_path):
    # A shard is a hash of the whole URI, this test's folder included, so videos are added
    # until every shard holds some, whatever the folder is called.
    (tmp_path / "notes.txt").write_bytes(b"not a video")
    by_shard: dict[int, list[str]] = {i: [] for i in range(3)}
    n = 0
    while n < 12 or not all(by_shard.values()):
        video = tmp_path / f"{n:03d}.mp4"
        video.write_bytes(b"video %d" % n)
        by_shard[shard_of(str(video), 3)].append(str(video))
        n += 1

    for index, expected in by_shard.items():
        with test_pipeline.TestPipeline(runner=LOCAL_RUNNER) as pipeline:
            refs = pipeline | ListVideos(str(tmp_path), ("mp4",), shard=(index, 3))
            assert_that(refs | "Their URIs" >> beam.Map(lambda ref: ref.uri), equal_to(expected))


@pytest.mark.component
def test_scan_refuses_a_shard_outside_its_count(tmp_path):
    with pytest.raises(ValueError, match="--shard 3/3"):
        run(["--input", str(tmp_path), "--model", str(tmp_path), "--shard", "3/3"])
