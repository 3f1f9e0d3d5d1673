"""``x-catga-bench.process`` and ``jetstream.purge`` in the AsyncAPI loader: the documented
defaults, the forms accepted (a command list or a shell-split string, cwd relative to the
document's folder), and every bad value as one ConfigError line naming the file, the JSON
pointer and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi import (
    JetStreamExt,
    ProcessExt,
    ReadyCheck,
    load_spec,
    tcp_address,
)

ORDERS = Path(__file__).parent / "specs" / "orders.yaml"
PROCESS = "/x-catga-bench/process"


def doc_with(process: Any = None, **jetstream: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ORDERS.read_text(encoding="utf-8"))
    if process is not None:
        doc["x-catga-bench"]["process"] = process
    if jetstream:
        doc["x-catga-bench"]["jetstream"].update(jetstream)
    return doc


def write(folder: Path, doc: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    text = str(info.value)
    assert "\n" not in text, text
    assert text.startswith(f"{path}: "), text
    return text


MINIMAL = {"command": ["python3", "service.py"], "ready": {"log": "ready"}}


def test_without_process_the_service_is_assumed_running(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, doc_with()))
    assert spec.bench.process is None
    assert spec.bench.jetstream == JetStreamExt(stream="ORDERS", purge=False)


def test_the_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "svc", doc_with(MINIMAL)))
    assert spec.bench.process == ProcessExt(
        command=["python3", "service.py"], cwd=(tmp_path / "svc").absolute(), env={},
        ready=ReadyCheck(log="ready"), start_timeout_s=20.0, stop_grace_s=5.0)


def test_every_field(tmp_path: Path) -> None:
    (tmp_path / "svc" / "bin").mkdir(parents=True)
    process = {"command": "node 'my service.js' --port 8085", "cwd": "bin",
               "env": {"NATS_URL": "{nats_url}", "HTTP_PORT": "8085",
                       "BOTH": "{redis_url} {http_url} {not a placeholder}"},
               "ready": {"tcp": "127.0.0.1:8085"}, "start_timeout_s": 2.5, "stop_grace_s": 0}
    spec = load_spec(write(tmp_path / "svc", doc_with(process, purge=True)))
    p = spec.bench.process
    assert p is not None
    assert p.command == ["node", "my service.js", "--port", "8085"]
    assert p.cwd == (tmp_path / "svc" / "bin").absolute()
    assert p.env["NATS_URL"] == "{nats_url}"
    assert p.ready == ReadyCheck(tcp="127.0.0.1:8085")
    assert (p.start_timeout_s, p.stop_grace_s) == (2.5, 0.0)
    assert spec.bench.jetstream is not None and spec.bench.jetstream.purge is True


def test_cwd_is_relative_to_the_document_even_from_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "svc", doc_with({**MINIMAL, "cwd": ".."}))
    monkeypatch.chdir(tmp_path / "svc")
    spec = load_spec(Path("spec.yaml"))  # a relative path to the document
    assert spec.bench.process is not None
    assert spec.bench.process.cwd.resolve() == tmp_path.resolve()
    assert spec.bench.process.cwd.is_absolute()
    assert path.exists()


@pytest.mark.parametrize("ready", [{"log": r"ready on \S+"},
                                   {"http": "http://127.0.0.1:8085/health"},
                                   {"http": "https://[::1]:8443/"}, {"tcp": "localhost:1"},
                                   {"tcp": "[::1]:65535"}])
def test_each_ready_check(tmp_path: Path, ready: dict[str, str]) -> None:
    spec = load_spec(write(tmp_path, doc_with({**MINIMAL, "ready": ready})))
    assert spec.bench.process is not None
    assert spec.bench.process.ready == ReadyCheck(**ready)


def test_tcp_address() -> None:
    assert tcp_address("127.0.0.1:8085") == ("127.0.0.1", 8085)
    assert tcp_address("[::1]:80") == ("::1", 80)


def _with(**fields: Any) -> dict[str, Any]:
    return {**MINIMAL, **fields}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in MINIMAL.items() if k != key}


BAD: list[tuple[str, Any, str]] = [
    ("not a mapping", ["node", "x.js"],
     f"{PROCESS}: must be a mapping with keys command, cwd, env, ready, start_timeout_s, "
     "stop_grace_s; got a list"),
    ("unknown key", _with(args=["x"]),
     f'{PROCESS}/args: unknown key "args"; allowed keys: command, cwd, env, ready, '
     "start_timeout_s, stop_grace_s"),
    ("no command", _without("command"),
     f"{PROCESS}/command: missing; allowed: a non-empty list of strings"),
    ("empty command list", _with(command=[]),
     f"{PROCESS}/command: got []; allowed: a non-empty list of strings"),
    ("blank command string", _with(command="  "), f'{PROCESS}/command: "  " is empty; allowed:'),
    ("unsplittable command", _with(command="node 'x.js"),
     f"{PROCESS}/command: \"node 'x.js\" cannot be split (No closing quotation); allowed:"),
    ("command item a number", _with(command=["node", 8085]),
     f'{PROCESS}/command/1: 8085 is not a non-empty string (quote it: "8085"); allowed:'),
    ("command a mapping", _with(command={"run": "x"}), f"{PROCESS}/command: got {{"),
    ("cwd missing folder", _with(cwd="nope"),
     f'{PROCESS}/cwd: "nope": no such directory ('),
    ("cwd a number", _with(cwd=1), f"{PROCESS}/cwd: got 1; allowed: a directory, relative to"),
    ("env a list", _with(env=["A=1"]),
     f'{PROCESS}/env: must be a mapping of NAME: "value" (strings); got a list'),
    ("env value a number", _with(env={"HTTP_PORT": 8085}),
     f'{PROCESS}/env/HTTP_PORT: 8085 is not a string (quote it: "8085"); allowed: a string, '
     "which may hold {nats_url}, {redis_url}, {http_url}"),
    ("env bad name", _with(env={"1X": "a"}),
     f'{PROCESS}/env/1X: "1X" is not an environment variable name'),
    ("env unknown placeholder", _with(env={"URL": "{amqp_url}"}),
     f'{PROCESS}/env/URL: unknown placeholder "{{amqp_url}}"; allowed: {{nats_url}}, '
     "{redis_url}, {http_url}"),
    ("no ready", _without("ready"),
     f"{PROCESS}/ready: missing; allowed: a mapping with exactly one of log"),
    ("ready a string", _with(ready="ready"),
     f"{PROCESS}/ready: got a string; allowed: a mapping with exactly one of log"),
    ("ready two checks", _with(ready={"log": "x", "tcp": "h:1"}),
     f"{PROCESS}/ready: has log, tcp; allowed: a mapping with exactly one of log (a regular "
     "expression matched against an output line), http (a URL answering GET with 2xx), tcp "
     "(host:port accepting a connection)"),
    ("ready empty", _with(ready={}), f"{PROCESS}/ready: has none; allowed:"),
    ("ready unknown", _with(ready={"exec": "true"}),
     f'{PROCESS}/ready/exec: unknown key "exec"; allowed:'),
    ("ready log bad regex", _with(ready={"log": "ready ("}),
     f'{PROCESS}/ready/log: "ready (" is not a valid regular expression (missing ), '
     "unterminated subpattern at position 6); allowed: a Python regular expression"),
    ("ready log empty", _with(ready={"log": ""}), f'{PROCESS}/ready/log: "" is not a non-empty'),
    ("ready http no scheme", _with(ready={"http": "127.0.0.1:8085/health"}),
     f'{PROCESS}/ready/http: "127.0.0.1:8085/health" is not an HTTP URL; allowed: '
     "http[s]://host[:port]/path"),
    ("ready http ftp", _with(ready={"http": "ftp://h/x"}), f"{PROCESS}/ready/http: "),
    ("ready http bad port", _with(ready={"http": "http://h:99999/"}),
     f'{PROCESS}/ready/http: "http://h:99999/" has a bad port'),
    ("ready tcp no port", _with(ready={"tcp": "127.0.0.1"}),
     f'{PROCESS}/ready/tcp: "127.0.0.1" is not host:port; allowed: host:port with a port '
     "1..65535"),
    ("ready tcp port 0", _with(ready={"tcp": "h:0"}), f'{PROCESS}/ready/tcp: "h:0" is not'),
    ("ready tcp a number", _with(ready={"tcp": 8085}),
     f"{PROCESS}/ready/tcp: 8085 is not a non-empty string"),
    ("start timeout 0", _with(start_timeout_s=0),
     f"{PROCESS}/start_timeout_s: 0: allowed: a number of seconds > 0 (default 20)"),
    ("start timeout text", _with(start_timeout_s="20s"),
     f'{PROCESS}/start_timeout_s: "20s": allowed: a number of seconds > 0'),
    ("start timeout bool", _with(start_timeout_s=True), f"{PROCESS}/start_timeout_s: true: "),
    ("stop grace negative", _with(stop_grace_s=-1),
     f"{PROCESS}/stop_grace_s: -1: allowed: a number of seconds >= 0 (default 5)"),
    ("stop grace infinite", _with(stop_grace_s=float("inf")), f"{PROCESS}/stop_grace_s: "),
]


@pytest.mark.parametrize(("process", "expected"), [(p, e) for _, p, e in BAD],
                         ids=[name for name, _, _ in BAD])
def test_each_bad_process_value_is_one_line_with_the_pointer(
        tmp_path: Path, process: Any, expected: str) -> None:
    path = write(tmp_path, doc_with(copy.deepcopy(process)))
    assert f"{path}: {expected}" in load_error(path)


def _purge(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["x-catga-bench"]["jetstream"]["purge"] = value
    return change


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_purge_must_be_a_bool(tmp_path: Path, value: Any) -> None:
    doc = doc_with()
    _purge(value)(doc)
    path = write(tmp_path, doc)
    assert "/x-catga-bench/jetstream/purge: " in load_error(path)
    assert "allowed: true or false" in load_error(path)


def test_unknown_jetstream_key_names_purge(tmp_path: Path) -> None:
    path = write(tmp_path, doc_with(consumer="c"))
    assert ("/x-catga-bench/jetstream/consumer: unknown key \"consumer\"; allowed keys: stream, "
            "durable, purge") in load_error(path)


def test_an_unknown_bench_key_lists_process(tmp_path: Path) -> None:
    doc = doc_with()
    doc["x-catga-bench"]["processes"] = {}
    path = write(tmp_path, doc)
    assert "allowed keys: " in load_error(path) and "process" in load_error(path)
