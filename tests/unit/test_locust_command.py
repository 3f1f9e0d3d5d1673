"""One headless-Locust command line (catga_bench.processes.locust): the argv the release gate's
cases and the chaos experiments' background load start, option for option."""

from __future__ import annotations

import sys
from pathlib import Path

from catga_bench.chaos.env import LoadRun
from catga_bench.chaos.model import LoadEnv
from catga_bench.processes.locust import locust_command, transport_options
from catga_bench.suite.cases import CASES, Case
from catga_bench.suite.run import case_command

PY = sys.executable


def _case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def test_locust_command_fixed_options_then_extra() -> None:
    assert locust_command(Path("/s/x.py"), users=3, run_time_s=7, report_dir=Path("/r"),
                          extra=["--qos", "2"]) == [
        PY, "-m", "locust", "-f", "/s/x.py", "--headless", "-u", "3", "-r", "3", "-t", "7s",
        "--only-summary", "--report-dir", "/r", "--qos", "2"]
    assert locust_command(Path("x.py"), users=8, run_time_s=1, report_dir=Path("r"),
                          spawn_rate=2)[6:12] == ["-u", "8", "-r", "2", "-t", "1s"]
    assert transport_options("redis", "redis://h:1") == ["--transport", "redis",
                                                          "--redis-url", "redis://h:1"]


def test_suite_case_on_the_embedded_core(tmp_path: Path) -> None:
    cmd = case_command(_case("high_throughput"), "embedded", 12, tmp_path / "sc",
                       tmp_path / "rep")
    assert cmd == [PY, "-m", "locust", "-f", str(tmp_path / "sc" / "high_throughput.py"),
                   "--headless", "-u", "20", "-r", "20", "-t", "12s", "--only-summary",
                   "--report-dir", str(tmp_path / "rep")]


def test_suite_case_over_a_broker_puts_the_transport_after_the_case_args(tmp_path: Path) -> None:
    cmd = case_command(_case("core_killed"), "nats", 12, tmp_path, tmp_path / "rep",
                       "nats://127.0.0.1:4999")
    assert cmd == [PY, "-m", "locust", "-f", str(tmp_path / "high_fanout.py"), "--headless",
                   "-u", "5", "-r", "5", "-t", "12s", "--only-summary",
                   "--report-dir", str(tmp_path / "rep"),
                   "--qos", "1", "--handlers", "20", "--slo-p99-ms", "off", "--slo-p999-ms",
                   "off", "--slo-min-throughput", "off", "--slo-max-error-ratio", "off",
                   "--transport", "nats", "--nats-url", "nats://127.0.0.1:4999"]
    remote = case_command(_case("high_fanout"), "redis", 60, tmp_path, tmp_path,
                          "redis://127.0.0.1:6999")
    assert remote[6:12] == ["-u", "10", "-r", "10", "-t", "60s"]
    assert remote[-4:] == ["--transport", "redis", "--redis-url", "redis://127.0.0.1:6999"]


def test_chaos_load_run_puts_the_transport_before_the_experiment_args(tmp_path: Path) -> None:
    spec = LoadEnv(scenario="failing_handlers", duration_s=11.6, users=4,
                   args=["--qos", "1", "--slo-p99-ms", "off"])
    run = LoadRun(spec, tmp_path / "failing_handlers.py", "redis", "redis://127.0.0.1:7000",
                  tmp_path)
    assert run.argv == [PY, "-m", "locust", "-f", str(tmp_path / "failing_handlers.py"),
                        "--headless", "-u", "4", "-r", "4", "-t", "12s", "--only-summary",
                        "--report-dir", str(tmp_path / "load-report"),
                        "--transport", "redis", "--redis-url", "redis://127.0.0.1:7000",
                        "--qos", "1", "--slo-p99-ms", "off"]
    short = LoadRun(LoadEnv(scenario="x", duration_s=0.2), tmp_path / "x.py", "nats", "u",
                    tmp_path)
    assert short.argv[6:12] == ["-u", "5", "-r", "5", "-t", "1s"]  # at least 1 s
