"""Command-line options and SLO targets: validation, error messages, precedence."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from catga_bench.errors import ConfigError
from catga_bench.harness.options import SLO_OPTIONS, RunOptions, add_arguments, parse_options
from catga_bench.workload.slo import SLOTargets, load_slo_file, parse_targets


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="locust")
    add_arguments(p)  # only add_argument_group / add_argument: a plain parser takes it
    return p


def _parse(parser: argparse.ArgumentParser, *args: str) -> RunOptions:
    return parse_options(parser.parse_args(list(args)))


def test_parser_defines_every_attribute(parser: argparse.ArgumentParser,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATGA_REPORT_FORMATS", raising=False)  # tests/conftest.py sets it
    ns = parser.parse_args([])
    expected = {"transport", "nats_url", "redis_url", "rate", "qos", "handlers", "report_dir",
                "metrics_port", "slo_file", *SLO_OPTIONS}
    assert expected <= set(vars(ns))
    opts = parse_options(ns)
    assert opts == RunOptions("embedded", None, None, None, None, None, 0, {})


def test_valid_values(parser: argparse.ArgumentParser) -> None:
    opts = _parse(parser, "--transport", "embedded", "--rate", "250.5", "--qos", "2",
                  "--handlers", "8", "--report-dir", "out", "--metrics-port", "9100",
                  "--slo-p99-ms", "50", "--slo-max-lost", "3", "--slo-max-error-ratio", "0.25",
                  "--slo-min-rejected", "1")
    assert opts.transport == "embedded"
    assert opts.rate == 250.5
    assert opts.qos == 2
    assert opts.handlers == 8
    assert opts.report_dir == "out"
    assert opts.metrics_port == 9100
    assert opts.slo_overrides == {"p99_ms": 50.0, "max_lost": 3, "max_error_ratio": 0.25,
                                  "min_rejected": 1}
    assert isinstance(opts.slo_overrides["max_lost"], int)


@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_every_qos_is_accepted(parser: argparse.ArgumentParser, qos: str) -> None:
    assert _parse(parser, "--qos", qos).qos == int(qos)


@pytest.mark.parametrize(
    ("args", "option", "allowed"),
    [
        (["--rate", "-5"], "--rate", "> 0"),
        (["--rate", "0"], "--rate", "> 0"),
        (["--rate", "abc"], "--rate", "expected a number"),
        (["--rate", "inf"], "--rate", "finite"),
        (["--rate", "nan"], "--rate", "finite"),
        (["--qos", "3"], "--qos", "0, 1, 2"),
        (["--qos", "one"], "--qos", "0, 1, 2"),
        (["--transport", "nope"], "--transport", "allowed: embedded, nats, redis"),
        (["--transport", "nats", "--nats-url", "http://x:1"], "--nats-url",
         "expected nats://HOST:PORT"),
        (["--transport", "redis", "--redis-url", "nats://x:1"], "--redis-url",
         "expected redis://HOST:PORT"),
        (["--handlers", "0"], "--handlers", ">= 1"),
        (["--handlers", "2.5"], "--handlers", "integer"),
        (["--metrics-port", "70000"], "--metrics-port", "0..65535"),
        (["--metrics-port", "-1"], "--metrics-port", ">= 0"),
        (["--slo-max-error-ratio", "2"], "--slo-max-error-ratio", "less than or equal to 1"),
        (["--slo-p99-ms", "0"], "--slo-p99-ms", "greater than 0"),
        (["--slo-p99-ms", "fast"], "--slo-p99-ms", "expected a number"),
        (["--slo-max-lost", "-1"], "--slo-max-lost", ">= 0"),
        (["--slo-max-lost", "1.5"], "--slo-max-lost", "integer"),
    ],
)
def test_bad_values_name_the_option_and_what_is_allowed(
    parser: argparse.ArgumentParser, args: list[str], option: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(parser, *args)
    message = str(info.value)
    assert message.startswith(option), message
    assert allowed in message, message
    assert "\n" not in message  # one line


@pytest.mark.parametrize("word", ["off", "OFF", "Off"])
def test_off_disables_a_target(parser: argparse.ArgumentParser, word: str) -> None:
    opts = _parse(parser, "--slo-p99-ms", word, "--slo-max-error-ratio", word)
    assert opts.slo_overrides == {"p99_ms": None, "max_error_ratio": None}
    targets = SLOTargets().merged(opts.slo_overrides)
    assert targets.p99_ms is None
    assert targets.max_error_ratio is None
    assert SLOTargets().p99_ms == 100.0  # the default it disabled


def test_slo_file_with_unknown_key(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    f = tmp_path / "slo.toml"
    f.write_text("p99_ms = 50\nmax_latency = 3\n")
    with pytest.raises(ConfigError) as info:
        _parse(parser, "--slo-file", str(f))
    message = str(info.value)
    assert "--slo-file" in message
    assert "'max_latency'" in message
    assert "allowed keys" in message
    for key in SLOTargets.model_fields:
        assert key in message


def test_slo_file_with_slo_table(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    f = tmp_path / "slo.toml"
    f.write_text("[slo]\np99_ms = 25.0\nmax_lost = 2\nmin_throughput = 400\n")
    opts = _parse(parser, "--slo-file", str(f))
    assert opts.slo_overrides == {"p99_ms": 25.0, "max_lost": 2, "min_throughput": 400}
    targets = SLOTargets().merged(opts.slo_overrides)
    assert (targets.p99_ms, targets.max_lost, targets.min_throughput) == (25.0, 2, 400.0)


def test_slo_file_top_level_keys(tmp_path: Path) -> None:
    f = tmp_path / "slo.toml"
    f.write_text("p50_ms = 5\nmax_duplicates = 0\n")
    assert load_slo_file(f) == {"p50_ms": 5, "max_duplicates": 0}


def test_slo_file_bad_value(tmp_path: Path) -> None:
    f = tmp_path / "slo.toml"
    f.write_text("[slo]\nmax_error_ratio = 1.5\n")
    with pytest.raises(ConfigError, match=r"--slo-file .*max_error_ratio.*less than or equal"):
        load_slo_file(f)


def test_slo_file_missing(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        _parse(parser, "--slo-file", str(missing))
    assert str(info.value) == f"--slo-file: no such file: {missing}"


@pytest.mark.parametrize(
    "content", [b"p99_ms = = 5\n", b"[slo\np99_ms = 5\n", b"\xff\xfe\x00binary"],
    ids=["syntax", "table", "not-utf8"],
)
def test_slo_file_invalid_toml(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "slo.toml"
    f.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_slo_file(f)
    assert str(info.value).startswith(f"--slo-file: {f} is not valid TOML")


def test_slo_file_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--slo-file: cannot read "):
        load_slo_file(tmp_path)


def test_parse_targets_unknown_key_names_source() -> None:
    with pytest.raises(ConfigError, match=r"^scenario: unknown key 'p98_ms'; allowed keys: "):
        parse_targets({"p98_ms": 1}, source="scenario")


def test_precedence_scenario_then_file_then_options(
    parser: argparse.ArgumentParser, tmp_path: Path
) -> None:
    scenario = SLOTargets(p50_ms=5, p99_ms=50, p999_ms=500, max_lost=7)
    f = tmp_path / "slo.toml"
    f.write_text("[slo]\np99_ms = 60\np999_ms = 600\nmax_lost = 8\n")
    opts = _parse(parser, "--slo-file", str(f), "--slo-p999-ms", "700", "--slo-max-lost", "off")
    final = scenario.merged(opts.slo_overrides)  # as the harness combines them
    assert final.p50_ms == 5  # scenario only
    assert final.p99_ms == 60  # file over scenario
    assert final.p999_ms == 700  # option over file
    assert final.max_lost is None  # option "off" over file
    assert scenario.p99_ms == 50  # merged() returns a copy


def test_merged_rejects_unknown_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        SLOTargets().merged({"nope": 1})
    with pytest.raises(ConfigError, match="p99_ms"):
        SLOTargets().merged({"p99_ms": -1})


def test_report_formats(parser: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATGA_REPORT_FORMATS", raising=False)
    assert _parse(parser).report_formats == ("json", "md", "html")
    monkeypatch.setenv("CATGA_REPORT_FORMATS", "md")  # the default; the option wins
    assert _parse(parser).report_formats == ("json", "md")
    assert _parse(parser, "--report-formats", "html").report_formats == ("json", "html")
    assert _parse(parser, "--report-formats", "md").report_formats == ("json", "md")
    assert _parse(parser, "--report-formats", "HTML, json").report_formats == ("json", "html")
    with pytest.raises(ConfigError, match=r"--report-formats: 'pdf' is not a report format; "
                                          r"allowed: json, md, html"):
        _parse(parser, "--report-formats", "md,pdf")
