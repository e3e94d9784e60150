"""The tier check in conftest.py: a test without a tier, or with two, stops the collection."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parent.parent

TESTS = """
import pytest

def test_without_a_tier():
    pass

@pytest.mark.unit
@pytest.mark.e2e
def test_with_two_tiers():
    pass

@pytest.mark.unit
def test_with_one_tier():
    pass
"""


def collect(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """Collect ``folder`` in a fresh pytest, under this project's conftest.py and markers."""
    shutil.copy(ROOT / "tests" / "conftest.py", folder / "conftest.py")
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, *args, str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_test_without_exactly_one_tier_fails_the_collection(tmp_path):
    (tmp_path / "test_sample.py").write_text(TESTS)

    done = collect(tmp_path, "-m", "not e2e")  # checked before -m picks, so nothing hides

    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "test_sample.py::test_without_a_tier: no tier" in done.stderr
    assert "test_sample.py::test_with_two_tiers: e2e, unit" in done.stderr
    assert "test_with_one_tier" not in done.stderr


def test_tiered_tests_are_collected(tmp_path):
    (tmp_path / "test_good.py").write_text(
        "import pytest\n\n\n@pytest.mark.unit\ndef test_with_one_tier():\n    pass\n"
    )

    done = collect(tmp_path)

    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "test_good.py::test_with_one_tier" in done.stdout
