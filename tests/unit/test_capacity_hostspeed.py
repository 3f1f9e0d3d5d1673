"""The host speed probe beside a capacity search (catga_bench/capacity/hostspeed.py)."""

from __future__ import annotations

import time

import pytest

from catga_bench.capacity.hostspeed import HostSpeedProbe, speed_index


def test_speed_index_counts_loop_iterations_per_second() -> None:
    assert speed_index(0.02) > 10_000  # any host runs a bare loop faster than this


def test_probe_samples_in_the_background_and_stops_on_exit() -> None:
    with HostSpeedProbe(interval_s=0.05, sample_s=0.01) as probe:
        time.sleep(0.3)
    n = len(probe.samples)
    assert n >= 3
    time.sleep(0.15)
    assert len(probe.samples) == n  # the thread ended with the block
    summary = probe.summary()
    assert summary["min"] <= summary["median"] <= summary["max"]
    assert summary["spread"] == pytest.approx(summary["max"] / summary["min"] - 1, abs=1e-3)
    times = [t for t, _ in summary["samples"]]
    assert times == sorted(times)


def test_spread_over_ten_percent_is_notable() -> None:
    probe = HostSpeedProbe()
    probe.samples = [(0.0, 16e6), (5.0, 15e6), (10.0, 10e6)]
    summary = probe.summary()
    assert summary["spread"] == pytest.approx(0.6) and summary["notable"]
    probe.samples = [(0.0, 16e6), (5.0, 15.5e6)]
    assert not probe.summary()["notable"]
    assert HostSpeedProbe().summary()["spread"] is None


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        HostSpeedProbe(interval_s=0.1, sample_s=0.2)
