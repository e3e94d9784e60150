"""A decoder child for tests: it crashes or hangs on chosen file names, else decodes as usual.

No real file crashes or hangs this OpenCV build on demand, so the tests start this child instead
of ``pipelines.scan.isolation`` (``CHILD`` goes where the pool takes its child's entry point). It
misbehaves inside a real child process, so what is tested is the parent's isolation.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# File name -> what the child does when asked to decode it.
FAULTS = {"crash.mp4": "crash", "hang.mp4": "hang"}
# The interpreter arguments that start this child (the pipe's descriptor follows them).
CHILD = (str(Path(__file__).resolve()),)


class FaultyConnection:
    """The parent's pipe, misbehaving as ``FAULTS`` says once a video's path arrives."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def recv(self) -> Any:
        message = self._conn.recv()
        fault = FAULTS.get(os.path.basename(message)) if isinstance(message, str) else None
        if fault == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif fault == "hang":
            threading.Event().wait()
        return message

    def send(self, message: Any) -> None:
        self._conn.send(message)


def main() -> None:
    from pipelines.scan.isolation import serve, start_child

    start_child()
    serve(FaultyConnection(Connection(int(sys.argv[1]))))


if __name__ == "__main__":
    main()
