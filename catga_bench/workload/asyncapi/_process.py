"""Reading ``x-catga-bench.process``: how the harness starts the service itself (docs/sut.md,
"Starting the service"). Every problem is a :class:`_Problem` at the offending node's JSON
pointer, naming what is allowed."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from catga_bench.workload.asyncapi._problems import _join, _kind, _Problem, _show
from catga_bench.workload.asyncapi.model import ProcessExt, ReadyCheck

WHERE = "/x-catga-bench/process"
#: the placeholders an ``env`` value may hold, filled with the run's effective server URLs
PLACEHOLDERS = ("nats_url", "redis_url", "http_url")
KEYS = ("command", "cwd", "env", "ready", "start_timeout_s", "stop_grace_s")
READY_KEYS = ("log", "http", "tcp")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALLOWED_PLACEHOLDERS = ", ".join("{" + p + "}" for p in PLACEHOLDERS)


def read_process(node: object, spec_path: Path) -> ProcessExt:
    """The :class:`ProcessExt` of the ``process`` node of the document at ``spec_path``.

    Raises:
        _Problem: at the offending node, naming what is allowed.
    """
    if not isinstance(node, dict):
        raise _Problem(WHERE, f"must be a mapping with keys {', '.join(KEYS)}; got "
                              f"{_kind(node)}")
    for key in node:
        if key not in KEYS:
            raise _Problem(_join(WHERE, key), f"unknown key {_show(key)}; allowed keys: "
                                              f"{', '.join(KEYS)}")
    folder = spec_path.parent.absolute()
    return ProcessExt(
        command=_command(node.get("command")),
        cwd=_cwd(node.get("cwd"), folder),
        env=_env(node.get("env")),
        ready=_ready(node.get("ready")),
        start_timeout_s=_seconds(node, "start_timeout_s", 20.0, positive=True),
        stop_grace_s=_seconds(node, "stop_grace_s", 5.0, positive=False),
    )


def _command(value: object) -> list[str]:
    where = f"{WHERE}/command"
    allowed = ('allowed: a non-empty list of strings ([node, service.js]) or a command line '
               '("node service.js", split like a shell)')
    if value is None:
        raise _Problem(where, f"missing; {allowed}")
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as e:
            raise _Problem(where, f"{_show(value)} cannot be split ({e}); {allowed}") from None
        if not argv:
            raise _Problem(where, f"{_show(value)} is empty; {allowed}")
        return argv
    if not isinstance(value, list) or not value:
        raise _Problem(where, f"got {_show(value)}; {allowed}")
    for i, arg in enumerate(value):
        if not isinstance(arg, str) or (i == 0 and not arg):
            hint = f' (quote it: "{arg}")' if isinstance(arg, int | float) else ""
            raise _Problem(_join(where, i), f"{_show(arg)} is not a non-empty string{hint}; "
                                            f"{allowed}")
    return list(value)


def _cwd(value: object, folder: Path) -> Path:
    where = f"{WHERE}/cwd"
    if value is None:
        return folder
    if not isinstance(value, str) or not value:
        raise _Problem(where, f"got {_show(value)}; allowed: a directory, relative to the "
                              "document's folder (default: that folder)")
    cwd = folder / Path(value).expanduser()
    if not cwd.is_dir():
        raise _Problem(where, f"{_show(value)}: no such directory ({cwd}); allowed: a "
                              "directory, relative to the document's folder")
    return cwd


def _env(value: object) -> dict[str, str]:
    where = f"{WHERE}/env"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Problem(where, f"must be a mapping of NAME: \"value\" (strings); got "
                              f"{_kind(value)}")
    env: dict[str, str] = {}
    for name, text in value.items():
        at = _join(where, name)
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise _Problem(at, f"{_show(name)} is not an environment variable name; allowed: "
                               "letters, digits and _ (not first a digit)")
        if not isinstance(text, str):
            hint = f' (quote it: "{text}")' if isinstance(text, int | float) else ""
            raise _Problem(at, f"{_show(text)} is not a string{hint}; allowed: a string, which "
                               f"may hold {_ALLOWED_PLACEHOLDERS}")
        for m in _PLACEHOLDER.finditer(text):
            if m[1] not in PLACEHOLDERS:
                raise _Problem(at, f"unknown placeholder {_show(m[0])}; allowed: "
                                   f"{_ALLOWED_PLACEHOLDERS}")
        env[name] = text
    return env


def _ready(value: object) -> ReadyCheck:
    where = f"{WHERE}/ready"
    allowed = ("allowed: a mapping with exactly one of log (a regular expression matched against "
               "an output line), http (a URL answering GET with 2xx), tcp (host:port accepting "
               "a connection)")
    if not isinstance(value, dict):
        got = "missing" if value is None else f"got {_kind(value)}"
        raise _Problem(where, f"{got}; {allowed}")
    for key in value:
        if key not in READY_KEYS:
            raise _Problem(_join(where, key), f"unknown key {_show(key)}; {allowed}")
    if len(value) != 1:
        got = ", ".join(str(k) for k in value) or "none"
        raise _Problem(where, f"has {got}; {allowed}")
    (key, check), = value.items()
    at = _join(where, key)
    if not isinstance(check, str) or not check:
        raise _Problem(at, f"{_show(check)} is not a non-empty string; {allowed}")
    if key == "log":
        try:
            re.compile(check)
        except re.error as e:
            raise _Problem(at, f"{_show(check)} is not a valid regular expression ({e}); "
                               "allowed: a Python regular expression") from None
        return ReadyCheck(log=check)
    if key == "http":
        url = urlsplit(check)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise _Problem(at, f"{_show(check)} is not an HTTP URL; allowed: "
                               "http[s]://host[:port]/path, e.g. http://127.0.0.1:8085/health")
        try:
            url.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise _Problem(at, f"{_show(check)} has a bad port; allowed: "
                               "http[s]://host[:port]/path") from None
        return ReadyCheck(http=check)
    host, _, port = check.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _Problem(at, f"{_show(check)} is not host:port; allowed: host:port with a port "
                           "1..65535, e.g. 127.0.0.1:8085")
    return ReadyCheck(tcp=check)


def _seconds(node: dict[str, Any], key: str, default: float, *, positive: bool) -> float:
    value = node.get(key)
    if value is None:
        return default
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise _Problem(_join(WHERE, key), f"{_show(value)}: allowed: a number of seconds "
                                          f"{bound} (default {default:g})")
    return float(value)


def tcp_address(check: str) -> tuple[str, int]:
    """``"host:port"`` (as :func:`read_process` accepted it) as ``(host, port)``; brackets
    around an IPv6 host are removed."""
    host, _, port = check.rpartition(":")
    return host.strip("[]"), int(port)
