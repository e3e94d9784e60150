"""Errors a user can cause, each with a short code for rows, logs and exit paths."""

from __future__ import annotations


class VideoError(Exception):
    """A video that cannot be scored. ``code`` is the short reason stored on its error row."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class BundleError(Exception):
    """A model bundle that is missing, malformed or tampered with; it is never loaded."""
