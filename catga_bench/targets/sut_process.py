"""The system under test as a process the harness starts itself (``x-catga-bench.process`` of
its AsyncAPI document; docs/sut.md, "Starting the service").

:class:`SutProcess` starts the command in a session of its own (so a signal to its process
group reaches the children a shell or a launcher started), copies every stdout/stderr line to
``<log_dir>/sut-<name>.log`` (keeping the last :data:`TAIL_LINES` in memory), and waits until the
service is ready: a line matching a regex, an HTTP GET answering 2xx, or a TCP connect. A
service that exits first or is not ready in time raises
:class:`~catga_bench.targets.base.TargetUnavailable` (exit 3): one line, then its last lines,
indented. :meth:`SutProcess.stop` sends SIGTERM to the group, then SIGKILL after the grace
period; :meth:`SutProcess.kill` and :meth:`SutProcess.restart` are the process faults.

The class is synchronous and uses only ``threading``, ``subprocess``, ``socket`` and
``time.sleep``: in a Locust process (gevent monkey-patched) its reader thread is a greenlet and
every wait is cooperative, so it can run on the Locust side (a local runner or the master);
elsewhere (tests, scripts) it uses real threads.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Self

from catga_bench.errors import ConfigError
from catga_bench.targets.base import TargetUnavailable
from catga_bench.workload.asyncapi import PLACEHOLDERS, ProcessExt, SutSpec, tcp_address

#: lines of the service's output kept in memory
TAIL_LINES = 40
#: of those, how many a start failure quotes
TAIL_IN_ERROR = 15
#: how each placeholder's URL is overridden on the command line (for the error message)
URL_OPTIONS = {"nats_url": "--nats-url", "redis_url": "--redis-url", "http_url": "--host"}
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
#: readiness GETs go straight to the service, whatever http_proxy says
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def effective_urls(spec: SutSpec, *, nats_url: str | None = None, redis_url: str | None = None,
                   http_url: str | None = None) -> dict[str, str | None]:
    """The URLs the ``env`` placeholders are filled with: each override if given (the
    command line's ``--nats-url``, ``--redis-url``, ``--host``; or a fault proxy's address),
    else the document's first server of that protocol, else None.

    Returns:
        ``{"nats_url": ..., "redis_url": ..., "http_url": ...}``.
    """
    def of(override: str | None, protocol: str) -> str | None:
        server = spec.server(protocol)
        return override or (server.url() if server is not None else None)

    return {"nats_url": of(nats_url, "nats"), "redis_url": of(redis_url, "redis"),
            "http_url": of(http_url, "http")}


def fill_env(process: ProcessExt, urls: Mapping[str, str | None],
             spec_path: Path | None = None) -> dict[str, str]:
    """``process.env`` with ``{nats_url}``, ``{redis_url}``, ``{http_url}`` replaced by
    ``urls`` (other braces are left as written).

    Raises:
        ConfigError: a value uses a placeholder whose URL is None (one line naming the file,
            the pointer, and the option that gives it).
    """
    env: dict[str, str] = {}
    for name, value in process.env.items():
        def fill(m: re.Match[str], name: str = name) -> str:
            url = urls.get(m[1])
            if url is None:
                where = f"{spec_path}: " if spec_path is not None else ""
                protocol = m[1].removesuffix("_url")
                raise ConfigError(f"{where}/x-catga-bench/process/env/{name}: {m[0]} has no "
                                  f"value: the document has no {protocol} server and "
                                  f"{URL_OPTIONS[m[1]]} was not given; allowed: add the server "
                                  f"or give {URL_OPTIONS[m[1]]}")
            return url
        env[name] = _PLACEHOLDER.sub(fill, value)
    return env


def log_name(title: str) -> str:
    """A file-name-safe form of a service's title: ``"Order service"`` -> ``order-service``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "service"


class SutProcess:
    """One service started from its ``x-catga-bench.process`` (see the module docstring).

    Args:
        process: the document's ``process`` block (command, cwd, env, ready, timeouts).
        urls: the effective server URLs for the env placeholders (:func:`effective_urls`).
        log_dir: where ``sut-<name>.log`` goes (the run's report folder); created if missing.
        name: the log file's name part and the name in messages (see :func:`log_name`).
        spec_path: the document, named in a placeholder error.

    Raises:
        ConfigError: from the constructor, when an env value uses a placeholder with no URL.

    Attributes:
        command: the argv started.
        log_path: ``<log_dir>/sut-<name>.log`` (truncated at the first start, appended on
            restarts).
        tail: the last :data:`TAIL_LINES` output lines (newline stripped), across restarts.
        exit_code: the last process's exit status once it ended (negative: the signal that
            ended it, ``-9`` after SIGKILL), else None.
        ready_s: seconds from the last start to ready, or None before that.
        starts: how many times the service was started (restarts included).
    """

    def __init__(self, process: ProcessExt, urls: Mapping[str, str | None], log_dir: Path,
                 name: str = "service", *, spec_path: Path | None = None) -> None:
        self.process = process
        self.name = name
        self.command = list(process.command)
        self.env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1"),
                    **fill_env(process, urls, spec_path)}
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / f"sut-{name}.log"
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.exit_code: int | None = None
        self.ready_s: float | None = None
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._log_ready: threading.Event | None = None
        self._log: IO[bytes] | None = None
        self._log_lock = threading.Lock()
        self._atexit = False

    # ----------------------------------------------------------------- state
    @property
    def pid(self) -> int | None:
        """The current (or last) process's id; it leads its own process group."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def facts(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The report's ``sut.process``: ``command`` (argv), ``pid``, ``exit_code``, ``log``
        (the log's path relative to ``relative_to``, default the log folder) and ``ready_s``."""
        base = relative_to if relative_to is not None else self.log_dir
        try:
            log = os.path.relpath(self.log_path, base)
        except ValueError:  # another drive (Windows)
            log = str(self.log_path)
        if self._proc is not None and self.exit_code is None:
            self.exit_code = self._proc.poll()
        return {"command": self.command, "pid": self.pid, "exit_code": self.exit_code,
                "log": log, "ready_s": None if self.ready_s is None else round(self.ready_s, 3)}

    # ----------------------------------------------------------------- start
    def start(self) -> Self:
        """Start the command and wait until it is ready (up to ``start_timeout_s``).

        Raises:
            TargetUnavailable: it could not be started, exited before it was ready, or was not
                ready in time (then it is killed): one line, then its last output lines.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.ready_s = None
        self.exit_code = None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._log_lock:
            if self._log is None or self._log.closed:  # truncated at the first start only
                mode = "wb" if self._log is None else "ab"
                self._log = open(self.log_path, mode)  # noqa: SIM115 - closed in stop()
            if self.starts > 1:
                self._log.write(f"[catga-bench] starting {self.name} again "
                                f"(start {self.starts})\n".encode())
                self._log.flush()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(self.command, cwd=self.process.cwd, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._write_log(f"[catga-bench] could not start: {exc}\n".encode())
            raise TargetUnavailable(self._failure(f"could not be started ({exc.strerror or exc})",
                                                  tail=False)) from None
        self._proc = proc
        if not self._atexit:
            atexit.register(self._kill_at_exit)
            self._atexit = True
        self._log_ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(proc, self._log_ready),
                                        name=f"sut-{self.name}-log", daemon=True)
        self._reader.start()
        self._wait_ready(proc, started)
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], started: float) -> None:
        ready = self.process.ready
        deadline = started + self.process.start_timeout_s
        poll_s = 0.02 if ready.log is not None else 0.1
        while True:
            code = proc.poll()
            if code is not None:
                self.exit_code = code
                self._join_reader(2.0)
                raise TargetUnavailable(self._failure(
                    f"exited with code {code} before it was ready"))
            if self._is_ready(deadline):
                self.ready_s = time.monotonic() - started
                return
            if time.monotonic() >= deadline:
                self._signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.exit_code = proc.wait(10)
                self._join_reader(2.0)
                raise TargetUnavailable(self._failure(
                    f"was not ready within {self.process.start_timeout_s:g} s (waiting for a "
                    f"{ready.describe()}); it was killed"))
            time.sleep(poll_s)

    def _is_ready(self, deadline: float) -> bool:
        ready = self.process.ready
        timeout = max(0.05, min(1.0, deadline - time.monotonic()))
        if ready.log is not None:
            return self._log_ready is not None and self._log_ready.is_set()
        if ready.tcp is not None:
            try:
                with socket.create_connection(tcp_address(ready.tcp), timeout=timeout):
                    return True
            except OSError:
                return False
        assert ready.http is not None
        try:
            with _NO_PROXY.open(ready.http, timeout=timeout) as response:
                return 200 <= int(response.status) < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False  # an HTTPError (non-2xx) is a URLError too

    def _read(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        """Copy the process's output to the log, line by line (runs until the pipe closes)."""
        pattern = re.compile(self.process.ready.log) if self.process.ready.log else None
        assert proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in iter(proc.stdout.readline, b""):
                self._write_log(raw if raw.endswith(b"\n") else raw + b"\n")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.tail.append(line)
                if pattern is not None and not ready.is_set() and pattern.search(line):
                    ready.set()
        with contextlib.suppress(OSError):
            proc.stdout.close()

    def _write_log(self, data: bytes) -> None:
        with self._log_lock:
            if self._log is not None and not self._log.closed:
                self._log.write(data)
                self._log.flush()

    def _join_reader(self, timeout_s: float) -> None:
        if self._reader is not None:
            self._reader.join(timeout_s)

    def _failure(self, what: str, *, tail: bool = True) -> str:
        """One line naming the service, what happened, the command and the log, then its
        last :data:`TAIL_IN_ERROR` output lines, each indented by 4 spaces."""
        command = shlex.join(self.command).replace("\r", "\\r").replace("\n", "\\n")
        head = (f"the system under test ({self.name}) {what}; command: {command} (in "
                f"{self.process.cwd}); log: {self.log_path}")
        if not tail:
            return head
        lines = list(self.tail)[-TAIL_IN_ERROR:]
        body = [f"    {line}" for line in lines] or ["    (it printed nothing)"]
        return "\n".join([head, *body])

    # ----------------------------------------------------------------- signals
    def _signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the process group; False when the group is gone."""
        if self._proc is None:
            return False
        try:
            os.killpg(self._proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the service's process group (every process it started). With
        SIGKILL, wait (up to 10 s) until it is gone and record its exit code; any other signal
        (SIGSTOP, SIGCONT, SIGTERM, ...) returns at once."""
        if self._proc is None:
            return
        self._signal_group(sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.exit_code = self._proc.wait(10)
            self._join_reader(2.0)

    def restart(self) -> Self:
        """kill -9 the service (if it runs), start it again and wait until it is ready.

        Raises:
            TargetUnavailable: as :meth:`start`.
        """
        if self.running:
            self.kill(signal.SIGKILL)
            self._write_log(f"[catga-bench] killed {self.name} (pid {self.pid}, exit "
                            f"{self.exit_code})\n".encode())
        return self.start()

    def stop(self) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``stop_grace_s`` to whatever of the
        group is left; close the log. Returns the exit code (None when never started)."""
        proc = self._proc
        if proc is None:
            self._close_log()
            return None
        deadline = time.monotonic() + self.process.stop_grace_s
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        while self._signal_group(0) and time.monotonic() < deadline:  # children still there
            time.sleep(0.05)
        if self._signal_group(signal.SIGKILL):
            self._write_log(f"[catga-bench] {self.name} did not stop within "
                            f"{self.process.stop_grace_s:g} s of SIGTERM: SIGKILL\n".encode())
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        self.exit_code = proc.returncode
        self._join_reader(2.0)
        self._close_log()
        if self._atexit:
            atexit.unregister(self._kill_at_exit)
            self._atexit = False
        return self.exit_code

    def _close_log(self) -> None:
        with self._log_lock:
            if self._log is not None:
                self._log.close()

    def _kill_at_exit(self) -> None:
        """Never leave the service behind when the harness exits without stopping it."""
        if self.running:
            self._signal_group(signal.SIGKILL)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["TAIL_LINES", "SutProcess", "effective_urls", "fill_env", "log_name"]
