"""The pieces of ``catga-bench bench-http`` that need no service: wrk's lua script from the
document, the options, the verdict."""

from __future__ import annotations

import pytest

from catga_bench.bench.http import (
    DEFAULT_SPEC,
    RateRow,
    build_parser,
    highest_passed,
    main,
    wrk_script,
)
from catga_bench.workload.asyncapi import load_spec


def test_the_script_posts_the_rendered_payload_with_the_correlation_header() -> None:
    script = wrk_script(load_spec(DEFAULT_SPEC))
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = "{\\"sku\\":\\"sku-1\\",\\"quantity\\":' in script
    assert 'wrk.headers["Catga-Correlation-Id"] = "bench-1"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script


def _row(rate: float, passed: bool) -> RateRow:
    return RateRow(offered=rate, achieved=rate, p99_ms=1.0, errors={}, exit_code=0 if passed
                   else 1, passed=passed, ratio=None, report="")


def test_the_highest_rate_that_passed() -> None:
    assert highest_passed([_row(5000, True), _row(10000, True), _row(15000, False)]) == 10000
    assert highest_passed([_row(5000, False)]) is None


def test_rates_are_parsed_and_checked() -> None:
    assert build_parser().parse_args(["--rates", "1,2"]).rates == [1, 2]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--rates", "fast"])


def test_wrk_missing_is_an_environment_failure(monkeypatch, capsys) -> None:
    monkeypatch.setattr("catga_bench.bench.http.shutil.which", lambda name: None)
    assert main(["--rates", "100"]) == 3
    assert "apt-get install -y wrk" in capsys.readouterr().out
