"""``catga-bench serve`` as a subprocess the harness controls: start (waiting for its ready
line), kill -9, graceful stop, restart. Used by the release gate, chaos experiments and tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: the line ``catga-bench serve`` logs once it answers control requests
READY_MARKER = "catga-bench serve: ready"


class CoreStartError(RuntimeError):
    """The core exited or did not log :data:`READY_MARKER` in time (the message has its log's
    tail)."""


class CoreProcess:
    """One ``catga-bench serve --transport <transport> --<transport>-url <url>`` process.

    Args:
        transport: ``nats`` or ``redis``.
        url: the broker URL.
        log: file its output is appended to (kept across restarts).
        extra: more ``serve`` arguments (``--scenarios``, ``--ack-wait-s``, ...).
        env: extra environment variables.

    Attributes:
        starts: how many times :meth:`start` was called (restarts included).
    """

    def __init__(self, transport: str, url: str, log: Path, extra: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "catga_bench.cli", "serve", "--transport", transport,
                     f"--{transport}-url", url, "--metrics-port", "0", *extra]
        self.log = log
        self.env = {**os.environ, "LOCUST_SKIP_MONKEY_PATCH": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it and wait for its ready line. Raises CoreStartError."""
        self.starts += 1
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CoreStartError(f"catga-bench serve exited {self.proc.returncode}: "
                                     f"{self.output()[-800:]}")
            if self.output().count(READY_MARKER) >= self.starts:
                return
            time.sleep(0.05)
        self.kill()
        raise CoreStartError(f"catga-bench serve was not ready within {timeout_s:g} s: "
                             f"{self.output()[-800:]}")

    def kill(self) -> None:
        """kill -9 (messages in progress are neither acknowledged nor reported)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then kill -9 after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
