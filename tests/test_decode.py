"""Decoding groups of videos into batches of windows that mix videos, failures as rows."""

from __future__ import annotations

import os
import pickle
import resource
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import numpy as np
import psutil
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput
from media import make_clip

from model.config import DetectorConfig, FaceCropConfig
from pipelines.scan.decode import FAILED, AssignDecodeGroups, DecodeVideos, local_copy
from pipelines.scan.decoders import ChildDecoders
from pipelines.scan.isolation import DecoderProcess
from pipelines.scan.listing import VideoRef
from pipelines.scan.outcomes import Failed


@pytest.mark.unit
@pytest.mark.parametrize(("videos", "groups"), [(16, 2), (11, 4), (3, 8), (40, 16)])
def test_a_bundle_deals_its_videos_to_the_groups_evenly(videos, groups):
    """The local runner hands each thread whole groups, so even groups mean even threads."""
    refs = [VideoRef(f"s3://uploads/day/{i:04d}.mp4", f"etag:{i}", 1000) for i in range(videos)]
    assign = AssignDecodeGroups(groups)
    assign.start_bundle()
    keyed = [pair for ref in refs for pair in assign.process(ref)]
    assert sorted(ref.uri for _, ref in keyed) == [ref.uri for ref in refs]  # each video once
    sizes = Counter(group for group, _ in keyed)
    assert set(sizes) <= set(range(groups))
    assert len(sizes) == min(videos, groups)
    assert max(sizes.values()) - min(sizes.values()) <= 1


def minor_faults(pid: int) -> int:
    """Pages process ``pid`` has faulted in from memory so far (Linux's /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


@pytest.mark.component
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's page faults")
def test_the_decoder_child_reuses_its_memory_from_one_video_to_the_next(tmp_path):
    """Default windows (16 of 20 frames at 224 px) stack to more than glibc maps from its heap."""
    config = DetectorConfig(face=FaceCropConfig(enabled=False))
    video = make_clip(tmp_path / "clip.mp4", width=320, height=240, seconds=30, fps=25)
    before = {child.pid for child in psutil.Process().children()}
    decoder = DecoderProcess(config, timeout_s=300)
    repeats = 8
    try:
        decoder.start()
        (pid,) = {child.pid for child in psutil.Process().children()} - before
        first = decoder.sample(str(video))  # the heap grows to its working size here
        faults = minor_faults(pid)
        for _ in range(repeats):
            again = decoder.sample(str(video))  # one result held at a time, as the scan does
        faults = minor_faults(pid) - faults
    finally:
        decoder.close()
    assert first.frames.shape == again.frames.shape == (16, 20, 224, 224, 3)
    pages = first.frames.nbytes // resource.getpagesize()
    # Memory mapped fresh for each video costs every decode twice the windows' pages or more
    # (the windows and the reply); reused, the repeats fault in about one copy's pages in all,
    # when the heap's layout shifts once.
    assert faults < 2 * pages, f"{faults} page faults in {repeats} decodes of {pages} pages"


@pytest.mark.component
def test_a_group_yields_batches_of_several_videos_and_failures_apart(
    corpus, small_config, tmp_path
):
    good = sorted(corpus.rglob("*.mp4"))[:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"these bytes are not a video")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    paths = [good[0], broken, good[1], empty, good[2]]
    refs = [VideoRef(str(p), f"sha256:{i}", p.stat().st_size) for i, p in enumerate(paths)]
    decode = DecodeVideos(small_config, min_batch_windows=5)
    decode.setup()
    try:
        out = list(decode.process((0, refs)))
    finally:
        decode.teardown()

    tagged = [item for item in out if isinstance(item, TaggedOutput)]
    assert {item.tag for item in tagged} == {FAILED}
    assert [item.value for item in tagged] == [
        Failed(refs[1], "unreadable", tagged[0].value.detail),
        Failed(refs[3], "empty_file", tagged[1].value.detail),
    ]
    batches = [item for item in out if not isinstance(item, TaggedOutput)]
    clips = [clip for batch in batches for clip in batch]
    assert [clip.video.ref for clip in clips] == [refs[0], refs[2], refs[4]]
    assert all(sum(clip.windows for clip in batch) >= 5 for batch in batches[:-1])
    assert max(len(batch) for batch in batches) > 1  # windows of several videos in one batch
    size = small_config.backbone.input_size
    frames = small_config.sampling.frames_per_window
    for clip in clips:
        assert clip.frames.shape == (clip.windows, frames, size, size, 3)
        assert clip.frames.dtype == np.uint8
        assert clip.mask.shape == (clip.windows, frames)
        assert clip.video.frames_analyzed == int(clip.mask.sum()) > 0
        assert len(clip.video.starts) == len(clip.video.ends) == clip.windows


@pytest.mark.component
def test_the_next_video_decodes_while_the_caller_scores_this_one(corpus, small_config):
    paths = [str(p) for p in sorted(corpus.rglob("*.mp4"))[:3]]
    refs = [VideoRef(p, f"sha256:{i}", os.path.getsize(p)) for i, p in enumerate(paths)]
    decode = DecodeVideos(small_config, min_batch_windows=1)
    decode.setup()
    started: list[str] = []
    second_started = threading.Event()
    real_sample = decode._decoders.sample

    def sample(path: str):  # a spy around the real decoder child
        started.append(path)
        if len(started) == 2:
            second_started.set()
        return real_sample(path)

    submitted: list[VideoRef] = []
    real_submit = decode._ahead.submit

    def submit(decode_one, ref: VideoRef):  # a spy on the decode-ahead thread's queue
        submitted.append(ref)
        return real_submit(decode_one, ref)

    decode._decoders.sample = sample
    decode._ahead.submit = submit
    try:
        batches = decode.process((0, refs))
        first = next(batches)
        assert [clip.video.ref for clip in first] == refs[:1]
        # The caller holds the first batch, as the model step does while scoring it.
        assert submitted == refs[:2], "one video ahead, and no more"
        assert second_started.wait(120), "the next video did not start while the caller scored"
        assert started == paths[:2]
        rest = [clip.video.ref for batch in batches for clip in batch]
        assert rest == refs[1:]
        assert started == paths
    finally:
        decode.teardown()


def child_pids() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


@pytest.mark.component
@pytest.mark.parametrize("decoders", [1, 2])
def test_the_copies_of_the_step_in_a_worker_share_its_decoders(corpus, small_config, decoders):
    """Beam sets up one copy of the DoFn per worker thread, unpickled from the same step."""
    step = DecodeVideos(small_config, min_batch_windows=1, decoders=ChildDecoders(size=decoders))
    copies = [pickle.loads(pickle.dumps(step)) for _ in range(3)]
    other_step = DecodeVideos(
        small_config, min_batch_windows=1, decoders=ChildDecoders(size=decoders)
    )
    paths = [str(p) for p in sorted(corpus.rglob("*.mp4"))[:3]]
    refs = [VideoRef(p, f"sha256:{i}", os.path.getsize(p)) for i, p in enumerate(paths)]
    before = child_pids()
    for copy in copies:
        copy.setup()
    try:
        assert len(child_pids() - before) == decoders
        with ThreadPoolExecutor(max_workers=len(copies)) as threads:
            outputs = list(threads.map(lambda copy: list(copy.process((0, refs))), copies))
        for out in outputs:  # every thread got every video of its group, through the pool
            assert [clip.video.ref for batch in out for clip in batch] == refs
        assert len(child_pids() - before) == decoders
        other_step.setup()
        assert len(child_pids() - before) == 2 * decoders  # another step: a pool of its own
        other_step.teardown()
        copies[0].teardown()
        assert len(child_pids() - before) == decoders  # the others still decode with them
    finally:
        for copy in copies[1:]:
            copy.teardown()
    assert child_pids() == before  # the last copy to go closed the pool


@pytest.mark.e2e
def test_remote_objects_are_copied_to_a_temporary_file_named_apart_from_the_key(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="uploads")
    client.put_object(Bucket="uploads", Key="../../etc/evil name.mp4", Body=b"video bytes")
    FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={s3_server}"]))
    try:
        with local_copy("s3://uploads/../../etc/evil name.mp4") as path:
            with open(path, "rb") as copy:
                assert copy.read() == b"video bytes"
            assert "evil" not in path and "etc" not in path
        assert not os.path.exists(path)
    finally:
        FileSystems.set_options(None)  # later tests must not reach this server
