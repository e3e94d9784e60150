"""The GPU worker: its container's pins agree with the project's, and its bench runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "infra" / "worker" / "Dockerfile").read_text()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, argument), continuation lines joined."""
    found, pending = [], ""
    for line in DOCKERFILE.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        keyword, _, argument = (pending + line).partition(" ")
        found.append((keyword.upper(), " ".join(argument.split())))
        pending = ""
    return found


def final_stage() -> list[tuple[str, str]]:
    """The instructions after the last FROM: what the image that runs is made of."""
    steps = instructions()
    last = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last + 1 :]


def commands(stage: list[tuple[str, str]]) -> list[str]:
    """The shell commands of the stage's RUN instructions, in order."""
    return [
        command.strip()
        for keyword, argument in stage
        if keyword == "RUN"
        for command in argument.split("&&")
    ]


def one(pattern: str, text: str = DOCKERFILE) -> str:
    matches = re.findall(pattern, text)
    assert len(set(matches)) == 1, f"{pattern!r}: {matches}"
    return matches[0]


@pytest.mark.unit
def test_beam_and_python_match_the_project():
    requirements = pins(ROOT / "requirements.txt")
    python, beam = one(r"apache/beam_python(\d+\.\d+)_sdk:(\S+) AS beam")
    assert beam == requirements["apache-beam"]
    setup = (ROOT / "setup.py").read_text()
    assert f'"apache-beam[aws]=={beam}"' in setup
    major, minor = python.split(".")
    assert one(r'python_requires="([^"]+)"', setup) == f">={python},<{major}.{int(minor) + 1}"
    assert one(r"install -y --no-install-recommends (python\d+\.\d+) ") == f"python{python}"
    assert one(r"(python\d+\.\d+) -m venv") == f"python{python}"


@pytest.mark.unit
def test_tensorflow_is_the_cuda_build_of_the_pinned_version():
    requirements = pins(ROOT / "requirements.txt")
    tf = one(r'"tensorflow\[and-cuda\]==([^"]+)"')
    assert tf == requirements["tensorflow-cpu"]
    assert f'TF_VERSION = "{tf}"' in (ROOT / "setup.py").read_text()


@pytest.mark.component
def test_the_image_installs_every_pin_but_tensorflow_cpu(tmp_path):
    """The image's own command, run here on the project's requirements.txt."""
    (write,) = [c for c in commands(final_stage()) if c.endswith("> requirements-gpu.txt")]
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    subprocess.run(write, shell=True, cwd=tmp_path, check=True)
    expected = pins(ROOT / "requirements.txt")
    assert "tensorflow-cpu" in expected
    del expected["tensorflow-cpu"]
    assert pins(tmp_path / "requirements-gpu.txt") == expected


@pytest.mark.unit
def test_cuda_base_matches_what_tensorflow_needs():
    """The base image's CUDA is the release TensorFlow's [and-cuda] wheels require."""
    runtime = next(r for r in requires("tensorflow-cpu") if r.startswith("nvidia-cuda-runtime"))
    needed = re.search(r">=(\d+\.\d+)", runtime).group(1)
    cudnn = next(r for r in requires("tensorflow-cpu") if r.startswith("nvidia-cudnn"))
    cudnn_major = re.search(r">=(\d+)\.", cudnn).group(1)
    base = one(r"FROM nvcr\.io/nvidia/cuda:(\d+\.\d+)\.\d+-cudnn-runtime-ubuntu\d+\.\d+\n")
    assert base == needed
    # The cudnn-runtime images of CUDA 12.5 carry cuDNN 9; a TensorFlow that needs another
    # major version needs another base image.
    assert cudnn_major == "9"


@pytest.mark.unit
def test_worker_checks_its_environment_after_its_last_install():
    steps = commands(final_stage())
    installs = [i for i, step in enumerate(steps) if step.startswith("pip install")]
    assert installs and "pip check" in steps, steps
    assert steps.index("pip check") > max(installs)


@pytest.mark.unit
def test_worker_boots_with_the_beam_stages_boot_program():
    """The entry point lies in what the image copies from the stage built FROM Beam's SDK."""
    stages = {
        alias: image for image, alias in re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE, re.M)
    }
    final = final_stage()
    keyword, argument = final[-1]
    assert keyword == "ENTRYPOINT"
    (boot,) = json.loads(argument)  # the exec form: the boot program is PID 1, with no shell
    copied = [
        (flag.removeprefix("--from="), source, target)
        for keyword, argument in final
        if keyword == "COPY" and argument.startswith("--from=")
        for flag, source, target in [argument.split()]
    ]
    assert [
        (stage, source)
        for stage, source, target in copied
        if Path(boot).is_relative_to(target) and stages.get(stage, "").startswith("apache/beam_")
    ] == [("beam", "/opt/apache/beam")], copied


@pytest.mark.e2e
def test_the_accelerator_bench_measures_the_model_and_decoding(corpus):
    """Run here on the CPU's TensorFlow backend; on a GPU machine it runs on JAX or PyTorch."""
    script = [sys.executable, str(ROOT / "infra" / "worker" / "accelerator_bench.py")]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}

    def measure(*args: str) -> dict:
        done = subprocess.run(
            [*script, *args], capture_output=True, text=True, env=env, cwd="/", check=True
        )
        (line,) = done.stdout.splitlines()
        return json.loads(line)

    model = measure("model", "--precisions", "float32", "--rows", "4", "--calls", "1")
    decode = measure("decode", "--corpus", str(corpus), "--processes", "2")

    assert model["backend"] == "tensorflow"
    assert (model["precision"], model["rows_per_call"]) == ("float32", 4)
    assert model["frames_per_s"] > 0
    assert (decode["processes"], decode["faces"]) == (2, False)
    assert decode["frames_per_s"] == pytest.approx(2 * decode["frames_per_s_per_process"], 0.01)
    assert decode["frames_per_s"] > 0
