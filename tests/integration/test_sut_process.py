"""The process runner of ``x-catga-bench.process`` (catga_bench/targets/sut_process.py) on a
tiny fake service (tests/fixtures/fake_service.py): ready by a log line, by TCP, by HTTP; never
ready and exiting early are TargetUnavailable with the last lines; stop escalates to SIGKILL;
signals reach the whole process group; kill -9 and restart."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _support import free_port

from catga_bench.errors import ConfigError
from catga_bench.targets.base import TargetUnavailable
from catga_bench.targets.sut_process import SutProcess, effective_urls, fill_env, log_name
from catga_bench.workload.asyncapi import ProcessExt, ReadyCheck, load_spec

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_service.py"
URLS = {"nats_url": "nats://127.0.0.1:4999", "redis_url": None, "http_url": None}


def process(tmp_path: Path, *args: str, ready: dict[str, str] | None = None,
            **fields: Any) -> ProcessExt:
    return ProcessExt(command=[sys.executable, str(FAKE), *args], cwd=tmp_path,
                      ready=ReadyCheck(**(ready or {"log": r"fake service ready \(pid \d+\)"})),
                      **fields)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def test_ready_by_log_line_with_env_cwd_and_the_log_file(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    spec = process(tmp_path / "svc", "--ready-after", "0.3",
                   env={"FAKE_ECHO": "{nats_url} and {literal}"})
    sut = SutProcess(spec, URLS, tmp_path / "report", "fake")
    with sut:
        assert sut.running and sut.pid is not None
        assert sut.ready_s is not None and 0.3 <= sut.ready_s < 5
        assert sut.tail[-1].startswith("fake service ready")
        pid = sut.pid
    assert not sut.running and gone(pid)
    assert sut.exit_code == -signal.SIGTERM  # the fake does not handle SIGTERM: it dies of it
    log = (tmp_path / "report" / "sut-fake.log").read_text()
    assert "fake: echo nats://127.0.0.1:4999 and {literal}\n" in log
    assert f"fake: cwd {tmp_path / 'svc'}\n" in log
    assert f"fake service ready (pid {pid})" in log
    assert sut.facts() == {"command": spec.command, "pid": pid, "exit_code": -15,
                           "log": "sut-fake.log", "ready_s": round(sut.ready_s, 3)}
    assert sut.facts(tmp_path)["log"] == "report/sut-fake.log"


def test_ready_by_tcp(tmp_path: Path) -> None:
    port = free_port()
    sut = SutProcess(process(tmp_path, "--tcp", str(port), "--ready-after", "0.4",
                             ready={"tcp": f"127.0.0.1:{port}"}), URLS, tmp_path)
    with sut:
        assert sut.ready_s is not None and sut.ready_s >= 0.4
        assert any(line.startswith("fake service ready") for line in sut.tail)


def test_ready_by_http_waits_for_2xx(tmp_path: Path) -> None:
    port = free_port()  # the server answers 503 at once, 200 after 0.6 s
    sut = SutProcess(process(tmp_path, "--http", str(port), "--ready-after", "0.6",
                             ready={"http": f"http://127.0.0.1:{port}/health"}), URLS, tmp_path)
    with sut:
        assert sut.ready_s is not None and sut.ready_s >= 0.6


def test_never_ready_is_target_unavailable_with_the_last_lines(tmp_path: Path) -> None:
    sut = SutProcess(process(tmp_path, "--ready-after", "60", "--chatter", "30",
                             start_timeout_s=1.0), URLS, tmp_path, "slow")
    with pytest.raises(TargetUnavailable) as info:
        sut.start()
    first, *rest = str(info.value).split("\n")
    assert first.startswith("the system under test (slow) was not ready within 1 s (waiting "
                            "for a log line matching ")
    assert "it was killed; command: " in first and str(FAKE) in first
    assert first.endswith(f"log: {tmp_path / 'sut-slow.log'}")
    assert rest == [f"    fake: line {i}" for i in range(15, 30)]
    assert sut.exit_code == -signal.SIGKILL and not sut.running
    assert sut.pid is not None and gone(sut.pid)
    assert "fake: line 29" in (tmp_path / "sut-slow.log").read_text()
    sut.stop()


def test_exiting_early_is_target_unavailable_with_the_last_lines(tmp_path: Path) -> None:
    sut = SutProcess(process(tmp_path, "--ready-after", "60", "--exit-after", "0.2", "4"),
                     URLS, tmp_path, "crashy")
    started = time.monotonic()
    with pytest.raises(TargetUnavailable) as info:
        sut.start()
    assert time.monotonic() - started < 5  # not the start timeout
    lines = str(info.value).split("\n")
    assert lines[0].startswith("the system under test (crashy) exited with code 4 before it was "
                               "ready; command: ")
    assert lines[-1] == "    fake: exiting with 4"  # stderr too
    assert "    fake: line 2" in lines
    assert sut.exit_code == 4
    sut.stop()


def test_a_command_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    spec = ProcessExt(command=["./no-such-service"], cwd=tmp_path, ready=ReadyCheck(tcp="h:1"))
    with pytest.raises(TargetUnavailable) as info:
        SutProcess(spec, URLS, tmp_path, "missing").start()
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("the system under test (missing) could not be started (No "
                                      "such file or directory); command: ./no-such-service")


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    sut = SutProcess(process(tmp_path, "--ignore-term", stop_grace_s=0.5), URLS, tmp_path, "deaf")
    sut.start()
    started = time.monotonic()
    assert sut.stop() == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5
    assert "did not stop within 0.5 s of SIGTERM: SIGKILL" in (
        tmp_path / "sut-deaf.log").read_text()


def _child_pid(sut: SutProcess) -> int:
    return int(next(line for line in sut.tail if line.startswith("fake: child")).split()[-1])


def test_signals_reach_the_whole_process_group(tmp_path: Path) -> None:
    sut = SutProcess(process(tmp_path, "--child"), URLS, tmp_path).start()
    child = _child_pid(sut)
    assert alive(child)
    sut.stop()
    assert gone(child)


def test_kill_9_and_restart(tmp_path: Path) -> None:
    sut = SutProcess(process(tmp_path, "--child"), URLS, tmp_path, "phoenix").start()
    first, first_child = sut.pid, _child_pid(sut)
    assert first is not None
    sut.restart()  # kill -9, start, wait ready
    assert gone(first) and gone(first_child)
    assert sut.running and sut.pid not in (None, first) and sut.starts == 2
    assert sut.ready_s is not None
    second = sut.pid
    sut.kill(signal.SIGKILL)  # a crash mid-run: the report keeps the code
    assert not sut.running and sut.exit_code == -signal.SIGKILL
    sut.restart()
    assert sut.running and sut.pid not in (first, second) and sut.exit_code is None
    sut.stop()
    log = (tmp_path / "sut-phoenix.log").read_text()
    assert log.count("fake service ready") == 3
    assert f"[catga-bench] killed phoenix (pid {first}, exit -9)" in log
    assert "[catga-bench] starting phoenix again (start 3)" in log


def test_sigstop_and_sigcont_reach_the_service(tmp_path: Path) -> None:
    sut = SutProcess(process(tmp_path), URLS, tmp_path).start()
    assert sut.pid is not None
    sut.kill(signal.SIGSTOP)
    time.sleep(0.1)
    assert Path(f"/proc/{sut.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    sut.kill(signal.SIGCONT)
    sut.stop()
    assert sut.exit_code == -signal.SIGTERM


def test_a_placeholder_without_a_url_is_a_config_error(tmp_path: Path) -> None:
    spec = process(tmp_path, env={"URL": "{http_url}/x"})
    with pytest.raises(ConfigError, match=r"^spec.yaml: /x-catga-bench/process/env/URL: "
                                          r"\{http_url\} has no value: the document has no http "
                                          r"server and --host was not given"):
        SutProcess(spec, URLS, tmp_path, spec_path=Path("spec.yaml"))
    assert fill_env(spec, {"http_url": "http://h:1"}) == {"URL": "http://h:1/x"}


def test_effective_urls_and_log_name() -> None:
    spec = load_spec(Path(__file__).resolve().parents[1] / "unit" / "specs" / "orders.yaml")
    assert effective_urls(spec) == {"nats_url": "nats://127.0.0.1:4222", "redis_url": None,
                                    "http_url": None}
    assert effective_urls(spec, nats_url="nats://proxy:1", http_url="http://h:2") == {
        "nats_url": "nats://proxy:1", "redis_url": None, "http_url": "http://h:2"}
    assert log_name("Order service") == "order-service"
    assert log_name("***") == "service"
