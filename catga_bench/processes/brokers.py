"""Brokers the harness starts itself (nats-server with JetStream, redis-server) and the process
faults it can apply to them: pause (SIGSTOP/SIGCONT), kill -9, and restart on the same data
directory.

Used by the integration and chaos tests (each starts its own broker on a free port, never the
machine's shared one) and by chaos experiments. Binaries come from ``PATH`` (Debian packages
``nats-server`` and ``redis-server``).

Findings that matter for loss after kill -9 (see docs/brokers.md): nats-server fsyncs JetStream
files every 2 minutes by default (``sync_interval: always`` exists from 2.10 on; the Debian
2.9 package has no such option), and redis-server with ``appendfsync everysec`` may lose the last
second. This module starts Redis with ``appendonly yes`` and ``appendfsync always``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

BrokerKind = Literal["nats", "redis"]


class BrokerStartError(RuntimeError):
    """The broker binary is missing or the process did not start listening in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (bind to 0 and ask the OS)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class BrokerProcess:
    """One broker process on ``127.0.0.1:port`` with its own data directory.

    Args:
        kind: ``"nats"`` (``nats-server -js``) or ``"redis"`` (``redis-server``, AOF on).
        port: TCP port (default: a free one).
        data_dir: store directory (default: a temporary one, removed by :meth:`cleanup`).
        binary: executable (default: ``nats-server`` / ``redis-server`` from PATH).

    Use as a context manager: enter starts it, exit stops it and removes a temporary data dir.
    Raises BrokerStartError when the binary is missing or the port never opens.
    """

    def __init__(self, kind: BrokerKind, port: int | None = None,
                 data_dir: str | Path | None = None, binary: str | None = None) -> None:
        if kind not in ("nats", "redis"):
            raise ValueError(f"kind must be 'nats' or 'redis', got {kind!r}")
        self.kind = kind
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix=f"catga-{kind}-"))
        name = binary or ("nats-server" if kind == "nats" else "redis-server")
        path = shutil.which(name)
        if path is None:
            raise BrokerStartError(f"{name} not found on PATH (apt-get install -y {name})")
        self.binary = path
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.log_path = self.data_dir / f"{kind}.log"

    @property
    def url(self) -> str:
        scheme = "nats" if self.kind == "nats" else "redis"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        if self.kind == "nats":
            return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                    "-sd", str(self.data_dir / "js")]
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--protected-mode", "no"]

    def start(self, timeout_s: float = 10.0) -> Self:
        """Start the process and wait until it accepts connections."""
        if self.running:
            return self
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self._argv(), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        self.paused = False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(f"{self.kind} exited with {self.proc.returncode}: "
                                       f"{self._log_tail()}")
            if port_open("127.0.0.1", self.port) and self._answers():
                return self
            time.sleep(0.02)
        self.kill()
        raise BrokerStartError(f"{self.kind} did not listen on port {self.port} within "
                               f"{timeout_s:g} s: {self._log_tail()}")

    def _answers(self) -> bool:
        """Redis: PING answers PONG (not LOADING while it replays its AOF after a restart).
        NATS: the server sends its INFO line."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                if self.kind == "redis":
                    s.sendall(b"PING\r\n")
                    return s.recv(64).startswith(b"+PONG")
                return s.recv(8).startswith(b"INFO")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets but answers nothing (a hung broker). Returns
        once the kernel reports the process stopped (up to 2 s): a signal to another process is
        only queued, and a broker still running on the other core for a moment answered a PING
        sent right after."""
        if self.running and not self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True
            _wait_stopped(self.proc.pid, timeout_s=2.0)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.running and self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False

    def kill(self) -> None:
        """kill -9 (no shutdown, no final fsync)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.paused = False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, *, hard: bool = True, timeout_s: float = 10.0) -> None:
        """kill -9 (``hard``) or stop, then start again on the same port and data directory."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start(timeout_s)

    def cleanup(self) -> None:
        """Stop and remove a temporary data directory."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _log_tail(self, n: int = 400) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace").strip()
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


def broker_url_env(kind: BrokerKind) -> str | None:
    """URL from ``CATGA_NATS_URL`` / ``CATGA_REDIS_URL`` if set."""
    return os.environ.get("CATGA_NATS_URL" if kind == "nats" else "CATGA_REDIS_URL")


def _wait_stopped(pid: int, timeout_s: float) -> None:
    """Wait until ``pid`` is in the stopped state (or gone, or ``timeout_s`` passed)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    try:
        proc = psutil.Process(pid)
        while proc.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP,
                                    psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
    except psutil.Error:
        return
