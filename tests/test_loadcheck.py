"""`deeptrust bench --load`: its objects are distinct videos, and each case runs in a fresh
process and reports that process's peak memory (and, for the scan, its decoder child's). The
figures themselves are benchmark output (docs), never asserted here."""

from __future__ import annotations

import resource

import pytest

from model.synth import write_video
from pipelines import cli
from pipelines.bench.load import decode_peak_rss, moving_disc, scan_peak_rss, write_objects
from pipelines.console import EXIT_USAGE
from pipelines.scan.listing import is_video


@pytest.mark.component
def test_the_objects_are_distinct_videos_in_subfolders_of_100(tmp_path):
    folder = write_objects(tmp_path / "objects", 101)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) == 101
    assert {p.parent.name for p in files} == {"000", "001"}
    assert all(is_video(str(p), ["mp4"]) for p in files)
    assert len({p.read_bytes() for p in files}) == 101


@pytest.mark.e2e
def test_the_scan_case_scores_every_object_in_a_fresh_process(bundle, tmp_path):
    folder = write_objects(tmp_path / "objects", 4)
    result = scan_peak_rss(str(folder), str(bundle), f"sqlite:///{tmp_path / 'load.db'}")
    assert (result["status"], result["videos"], result["scored"], result["errors"]) == (
        "succeeded",
        4,
        4,
        0,
    )
    # The kernel's own account: this test's waited-for descendants include the scan process and
    # its decoder child, so neither figure can exceed it (a figure in KiB would). The scan held
    # the bundle's weights, so its peak cannot be below their size (a figure in GiB would be).
    seen_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    weights_mb = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
    assert weights_mb < result["peak_rss_mb"] <= seen_mb + 0.1
    assert 0 < result["decoder_peak_rss_mb"] <= seen_mb + 0.1


@pytest.mark.e2e
def test_the_decode_case_samples_windows_in_a_fresh_process(bundle, tmp_path):
    video = write_video(tmp_path / "clip.mp4", moving_disc(64, 48, 3.0, 10.0), 10.0)
    result = decode_peak_rss(str(video), str(bundle))
    assert set(result) == {"seconds", "windows", "rss_before_mb", "peak_rss_mb"}
    assert result["windows"] >= 1
    assert result["peak_rss_mb"] >= result["rss_before_mb"] > 0


@pytest.mark.unit
@pytest.mark.parametrize("argv", [["bench", "--load", "--options"]])
def test_the_load_check_and_the_options_are_one_or_the_other(argv, capsys):
    assert cli.main(argv) == EXIT_USAGE
    assert "--load and --options" in capsys.readouterr().err


@pytest.mark.unit
def test_bench_load_reads_its_sizes():
    args = cli.build_parser().parse_args(
        ["bench", "--load", "--objects", "30", "--baseline-objects", "3", "--work", "w"]
    )
    assert (args.load, args.objects, args.baseline_objects, args.work) == (True, 30, 3, "w")
    assert args.func is cli.cmd_bench
