"""The peak-memory harness of `deeptrust bench` and `bench --load`."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.bench.memory import in_fresh_process, peak_rss_mb, reset_peak_rss

pytestmark = pytest.mark.component

BUFFER_MB = 200


def test_the_peak_starts_over_from_the_current_memory():
    buffer = np.ones(BUFFER_MB * 2**20, np.uint8)  # touched, so resident
    with_buffer = peak_rss_mb()
    del buffer
    reset_peak_rss()
    assert peak_rss_mb() < with_buffer - BUFFER_MB / 2


def test_a_fresh_process_has_a_peak_of_its_own():
    buffer = np.ones(BUFFER_MB * 2**20, np.uint8)
    ours = peak_rss_mb()
    theirs = in_fresh_process(peak_rss_mb)
    del buffer
    assert theirs < ours - BUFFER_MB / 2
