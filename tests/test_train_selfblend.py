"""Training from real videos alone: pairs from real windows, the bundle's recipe, resuming."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from model.bundle import MANIFEST, read_manifest
from model.errors import BundleError

SMALL = [
    "--image-size",
    "96",
    "--frames-per-window",
    "8",
    "--sample-fps",
    "8",
    "--max-windows",
    "4",
]


@pytest.fixture(scope="module")
def reals_only(training_corpus, tmp_path_factory):
    """The training corpus's real videos, and nothing else."""
    out = tmp_path_factory.mktemp("reals_only")
    shutil.copytree(training_corpus / "real", out / "real")
    return out


@pytest.mark.component
def test_pairs_follow_the_scans_windows_and_repeat_by_seed(reals_only, small_config):
    from model.blendset import PairMaker
    from model.selfblend import BlendConfig
    from model.video import WindowSampler

    video = WindowSampler(small_config).sample(str(sorted((reals_only / "real").iterdir())[0]))
    first = PairMaker(small_config, BlendConfig(), variants=2, seed=0).pairs_of(video, 0)
    again = PairMaker(small_config, BlendConfig(), variants=2, seed=0).pairs_of(video, 0)
    other = PairMaker(small_config, BlendConfig(), variants=2, seed=1).pairs_of(video, 0)
    windows = len(video.frames)
    assert first.real.shape == first.fake.shape == (2 * windows, *video.frames.shape[1:])
    np.testing.assert_array_equal(first.mask, np.repeat(video.mask, 2, axis=0))
    np.testing.assert_array_equal(first.real, again.real)
    np.testing.assert_array_equal(first.fake, again.fake)
    assert not np.array_equal(first.fake, other.fake)
    # The synthetic real faces are frontal: MTCNN finds their landmarks on every window.
    assert first.outline_sources == {"landmarks": windows}
    # Each fake differs from its real twin, and only inside the frame's face region.
    difference = np.abs(first.fake.astype(int) - first.real.astype(int))
    assert difference[first.mask].mean() > 0.5
    assert difference[first.mask][:, :4, :4].max() <= difference[first.mask].max() / 4


@pytest.mark.component
def test_training_without_fakes_asks_for_self_blend(reals_only, capsys):
    from pipelines.cli import main

    code = main(["train", str(reals_only), "--out", "unused", "--backbone-weights", "random"])
    assert code == 2
    assert "--self-blend" in capsys.readouterr().err


def train_command(data, out):
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "train",
        str(data),
        "--out",
        str(out),
        "--backbone-weights",
        "random",
        "--self-blend",
        "--fine-tune-from",
        "mixed10",
        "--fine-tune-epochs",
        "2",
        "--epochs",
        "3",
        "--val-fraction",
        "0.34",
        *SMALL,
        "--max-windows",
        "4",
    ]


@pytest.mark.e2e
def test_a_stopped_self_blend_run_resumes_and_records_its_recipe(reals_only, tmp_path):
    out = tmp_path / "bundle"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    stopped = subprocess.Popen(
        train_command(reals_only, out), stderr=subprocess.PIPE, text=True, env=env
    )
    seen = []
    for line in stopped.stderr:
        seen.append(line)
        if line.startswith("pairs: 3/"):
            stopped.send_signal(signal.SIGKILL)
            break
    stopped.wait(timeout=60)
    assert stopped.returncode == -signal.SIGKILL, "".join(seen)
    assert any("fine-tune: epoch 2/2" in line for line in seen)
    assert not (out / MANIFEST).exists()

    resumed = subprocess.run(
        train_command(reals_only, out), capture_output=True, text=True, env=env, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "fine-tune: resuming after epoch 2 of 2" in resumed.stderr
    assert "train: pairs of 3 real videos came from the checkpoint" in resumed.stderr
    assert "warning: only 8 distinct real videos" in resumed.stderr
    assert "warning: the threshold rests on only" in resumed.stderr
    assert not (out / ".checkpoint").exists()

    manifest = read_manifest(out)
    training = manifest["training"]
    assert training["videos"] == {
        "real": 8,
        "fake": 0,
        "distinct_real_videos": 8,
        "self_blended_fakes": training["videos"]["self_blended_fakes"],
    }
    assert training["videos"]["self_blended_fakes"] > 0
    assert (
        training["self_blend"]["variants"] == 2 and "MTCNN" in training["self_blend"]["landmarks"]
    )
    assert training["fine_tune"]["from"] == "mixed10" and training["fine_tune"]["epochs"] == 2
    assert training["fine_tune"]["weights_trained"] > 0
    support = manifest["metrics"]["validation"]["threshold_support"]
    assert support["real_videos"] == 3 and support["enough_real_videos"] is False

    # model_version covers the recipe: a bundle whose recipe is edited is refused.
    edited = json.loads((out / MANIFEST).read_text())
    edited["training"]["self_blend"]["variants"] = 1
    (out / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(BundleError, match="model_version"):
        read_manifest(out)
