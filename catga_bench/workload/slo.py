"""SLO targets: declared by a scenario, overridden by a TOML file and by ``--slo-*`` options.

Precedence: scenario defaults < ``--slo-file`` < ``--slo-*`` options. Unknown keys in the file
are an error naming the key and listing the allowed ones. ``None`` disables a target.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from catga_bench.errors import ConfigError


class SLOTargets(BaseModel):
    """The targets a run is judged by. Latencies in milliseconds, from the intended send time.

    ``max_lost`` applies at QoS >= 1 and ``max_duplicates`` at QoS 2 (at QoS 0 loss is reported,
    not gated). At QoS 1 duplicates are the contract's (at-least-once redelivers after a crash):
    they are reported, and gated only by ``max_duplicate_ratio`` when set — a budget that a
    redelivery after a crash fits in and a service that emits 1% of its outputs twice does not.
    Breaker targets apply when the run has breakers; ``max_late``,
    ``max_unexpected`` and ``max_nonconformant`` when the system under test is a black box
    (its outputs are read back: docs/sut.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: float | None = Field(None, gt=0, description="P50 latency limit (ms)")
    p99_ms: float | None = Field(100.0, gt=0, description="P99 latency limit (ms)")
    p999_ms: float | None = Field(None, gt=0, description="P99.9 latency limit (ms)")
    min_throughput: float | None = Field(
        None, ge=0, description="achieved msg/s at least (steady window)")
    max_error_ratio: float | None = Field(
        0.0, ge=0, le=1, description="failed / completed messages of SLO streams at most")
    max_lost: int | None = Field(0, ge=0, description="acknowledged but never handled (QoS>=1)")
    max_duplicates: int | None = Field(0, ge=0, description="handled more than once (QoS 2)")
    max_duplicate_ratio: float | None = Field(
        None, ge=0, le=1, description="QoS 1 duplicates / handlings at most (at-least-once "
                                      "budget; off by default)")
    max_loop_lag_p99_ms: float | None = Field(
        None, gt=0, description="event-loop lag P99 limit (ms)")
    min_timeouts: int | None = Field(None, ge=0, description="handler timeouts at least")
    min_rejected: int | None = Field(None, ge=0, description="backpressure rejections at least")
    max_rss_growth_mb: float | None = Field(None, gt=0, description="RSS growth limit (MB)")
    breaker_opens_within: int | None = Field(
        None, ge=1, description="failures before the breaker first opens, at most")
    breaker_closes_within_s: float | None = Field(
        None, gt=0, description="seconds from recovery to the breaker closing, at most")
    max_calls_while_open: int | None = Field(
        None, ge=0, description="handler calls while its breaker was open, at most")
    max_late: int | None = Field(
        0, ge=0, description="outputs after their message was counted lost (black box)")
    max_unexpected: int | None = Field(
        0, ge=0, description="outputs that match no message of the run (black box)")
    max_nonconformant: int | None = Field(
        0, ge=0, description="outputs that fail their message's schema (black box)")
    max_generator_shortfall: float = Field(
        0.05, ge=0, lt=1, description="sent rate may fall short of offered by this ratio")

    def merged(self, overrides: dict[str, Any]) -> SLOTargets:
        """A copy with ``overrides`` applied (validated; unknown keys raise ConfigError)."""
        return parse_targets({**self.model_dump(), **overrides})


def parse_targets(data: dict[str, Any], source: str = "SLO") -> SLOTargets:
    """Validate a mapping of targets.

    Raises:
        ConfigError: an unknown key (naming it and the allowed keys) or a bad value.
    """
    allowed = sorted(SLOTargets.model_fields)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}"
        )
    try:
        return SLOTargets(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {field}: {err['msg']} (got {err.get('input')!r})") from None


def load_slo_file(path: str | Path) -> dict[str, Any]:
    """Read targets from a TOML file: keys at the top level or under ``[slo]``.

    Raises:
        ConfigError: missing file, bad TOML, unknown key or bad value.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--slo-file: no such file: {p}") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"--slo-file: cannot read {p}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--slo-file: {p} is not valid TOML: {exc}") from None
    if set(data) == {"slo"} and isinstance(data["slo"], dict):
        data = data["slo"]
    parse_targets(data, source=f"--slo-file {p}")  # validate keys and values now
    return data
