"""Experiments as data (YAML or TOML), validated with pydantic.

The shape follows Chaos Toolkit's experiment format where it can (``title``, ``description``,
``configuration``, ``steady-state-hypothesis`` with ``probes``, ``method``, ``rollbacks``,
``pauses`` ``{before, after}``), with catga-bench's own activity types instead of Python
providers and an ``environment`` the runner sets up and tears down itself. See
experiments/README.md for every field.

``${name}`` in any string is replaced by ``configuration[name]`` (overridable with
``--var name=value``); a string that is exactly ``${name}`` takes the variable's type.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ExperimentError(ValueError):
    """The experiment file cannot be read, has an unknown variable, or is invalid (the message
    names the field and what is allowed)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- environment
class CoreEnv(Strict):
    """``catga-bench serve`` in a subprocess, connected through the proxy (if any)."""

    scenario: str = Field(description="scenario name (scenarios/NAME.py) or a .py path, "
                                      "relative to the experiment file")
    args: list[str] = Field(default_factory=list, description="extra serve options")
    start_timeout_s: float = 30.0


class LoadEnv(Strict):
    """A headless Locust run started in the background at the beginning of the method."""

    scenario: str
    duration_s: float = Field(gt=0)
    users: int = Field(default=5, ge=1)
    args: list[str] = Field(default_factory=list, description="extra locust options, e.g. "
                                                               "--qos 1, --slo-p99-ms off")
    timeout_s: float = Field(default=120.0, gt=0,
                             description="extra time the run may take after duration_s")


class SutEnv(Strict):
    """A black-box system under test, described by its AsyncAPI document (docs/sut.md): the
    experiment starts it from ``x-catga-bench.process`` with its broker URL rewritten to the
    fault proxy's listen port, so link faults hit the service's link (the generator reaches
    the broker directly and the load run is told the service is running)."""

    spec: str = Field(description="the AsyncAPI 3 document, relative to the experiment file")


class Environment(Strict):
    broker: Literal["nats", "redis"]
    proxy: bool = Field(default=True, description="put the fault proxy between the broker and "
                                                  "both the core and the generator (a black "
                                                  "box: the service only)")
    core: CoreEnv | None = None
    sut: SutEnv | None = None
    load: LoadEnv | None = None

    @model_validator(mode="after")
    def _one_system(self) -> Environment:
        if self.core is not None and self.sut is not None:
            raise ValueError("give either core (the reference core) or sut (a black box), "
                             "not both")
        return self


# --------------------------------------------------------------------------- activities
class Pauses(Strict):
    before: float = Field(default=0.0, ge=0)
    after: float = Field(default=0.0, ge=0)


class ActivityBase(Strict):
    name: str = ""
    pauses: Pauses = Field(default_factory=Pauses)
    kind: ClassVar[str] = "action"

    def label(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined,no-any-return]


class Action(ActivityBase):
    pass


class Probe(ActivityBase):
    kind: ClassVar[str] = "probe"


class Toxic(Strict):
    type: Literal["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer",
                  "limit_data"]
    name: str | None = None
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0, le=1)
    attributes: dict[str, float | int] = Field(default_factory=dict)

    def toxic_name(self) -> str:
        return self.name or f"{self.type}_{self.stream}"


class Sleep(Action):
    type: Literal["sleep"]
    duration_s: float = Field(ge=0)


class ToxicAdd(Action):
    type: Literal["toxic_add"]
    toxic: Toxic


class ToxicRemove(Action):
    type: Literal["toxic_remove"]
    toxic: str | None = Field(default=None, description="toxic name; none: remove them all")
    missing_ok: bool = True


class ProxyDisable(Action):
    type: Literal["proxy_disable"]


class ProxyEnable(Action):
    type: Literal["proxy_enable"]


class ProxyReset(Action):
    type: Literal["proxy_reset"]


class BrokerPause(Action):
    type: Literal["broker_pause"]


class BrokerResume(Action):
    type: Literal["broker_resume"]


class BrokerKill(Action):
    type: Literal["broker_kill"]


class BrokerStart(Action):
    type: Literal["broker_start"]


class BrokerRestart(Action):
    type: Literal["broker_restart"]
    hard: bool = Field(default=True, description="kill -9 (true) or SIGTERM first")


class CoreKill(Action):
    type: Literal["core_kill"]


class CoreRestart(Action):
    type: Literal["core_restart"]
    only_if_down: bool = Field(default=False, description="leave a running core alone")


class HandlerFault(Action):
    type: Literal["handler_fault"]
    handler: str = "*"
    error_rate: float | None = Field(default=None, ge=0, le=1)
    latency_ms: float = Field(default=0.0, ge=0)
    outage_s: float | None = Field(default=None, gt=0)


class HandlerFaultClear(Action):
    type: Literal["handler_fault_clear"]


class CorePing(Probe):
    type: Literal["core_ping"]
    timeout_s: float = Field(default=5.0, gt=0)
    retry_for_s: float = Field(default=0.0, ge=0, description="keep trying this long")


class BrokerReachable(Probe):
    type: Literal["broker_reachable"]
    retry_for_s: float = Field(default=0.0, ge=0)


class ProxyHasNoToxics(Probe):
    type: Literal["proxy_has_no_toxics"]


class SutAlive(Probe):
    """The black box's process (environment.sut) is running."""

    type: Literal["sut_alive"]


class Recovery(Strict):
    """Throughput (completed/s, from the report's timeline) back to ``min_ratio`` of its level
    before ``fault_start`` within ``within_s`` seconds of the end of ``fault_end``."""

    fault_start: str = Field(description="name of the activity that starts the fault")
    fault_end: str = Field(description="name of the activity that ends it")
    within_s: float = Field(gt=0)
    min_ratio: float = Field(default=0.8, gt=0, le=1)


Condition = float | int | str | bool | dict[str, Any] | None


class LoadReport(Probe):
    type: Literal["load_report"]
    expect: dict[str, Condition] = Field(
        default_factory=dict,
        description="dotted report.json path -> value (equality) or {lt, le, gt, ge, eq, ne, "
                    "in}; plus 'exit_code'")
    recovery: Recovery | None = None

    @field_validator("expect")
    @classmethod
    def _conditions(cls, v: dict[str, Condition]) -> dict[str, Condition]:
        for path, cond in v.items():
            if isinstance(cond, dict):
                bad = set(cond) - set(OPS)
                if bad:
                    raise ValueError(f"expect.{path}: unknown operator(s) {sorted(bad)}; "
                                     f"allowed: {', '.join(OPS)}")
        return v


OPS = ("lt", "le", "gt", "ge", "eq", "ne", "in")

Activity = Annotated[
    Sleep | ToxicAdd | ToxicRemove | ProxyDisable | ProxyEnable | ProxyReset | BrokerPause
    | BrokerResume | BrokerKill | BrokerStart | BrokerRestart | CoreKill | CoreRestart
    | HandlerFault | HandlerFaultClear | CorePing | BrokerReachable | ProxyHasNoToxics
    | SutAlive | LoadReport,
    Field(discriminator="type"),
]
ProbeActivity = Annotated[
    CorePing | BrokerReachable | ProxyHasNoToxics | SutAlive | LoadReport,
    Field(discriminator="type"),
]
ACTIVITY_TYPES = ("sleep", "toxic_add", "toxic_remove", "proxy_disable", "proxy_enable",
                  "proxy_reset", "broker_pause", "broker_resume", "broker_kill", "broker_start",
                  "broker_restart", "core_kill", "core_restart", "handler_fault",
                  "handler_fault_clear", "core_ping", "broker_reachable", "proxy_has_no_toxics",
                  "sut_alive", "load_report")


class Hypothesis(Strict):
    title: str
    probes: list[ProbeActivity] = Field(default_factory=list)


class Experiment(Strict):
    title: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    configuration: dict[str, Any] = Field(default_factory=dict)
    environment: Environment
    steady_state_hypothesis: Hypothesis | None = Field(default=None,
                                                       alias="steady-state-hypothesis")
    method: list[Activity] = Field(min_length=1)
    rollbacks: list[Activity] = Field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- loading
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(data: Any, variables: dict[str, Any], where: str = "") -> Any:
    """Replace ``${name}`` in every string of ``data``. Raises ExperimentError for an unknown
    variable (naming where it is used and the variables known)."""
    if isinstance(data, dict):
        return {k: substitute(v, variables, f"{where}.{k}" if where else str(k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [substitute(v, variables, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def value(name: str) -> Any:
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ExperimentError(f"{where}: unknown variable ${{{name}}} (configuration "
                                  f"has: {known}; set one with --var {name}=VALUE)")
        return variables[name]

    whole = _VAR.fullmatch(data)
    if whole:
        return value(whole.group(1))
    return _VAR.sub(lambda m: str(value(m.group(1))), data)


def parse_var(text: str) -> tuple[str, Any]:
    """``k=v`` from ``--var``; the value is parsed as a YAML scalar (``3`` is a number)."""
    key, sep, raw = text.partition("=")
    if not sep or not _VAR.fullmatch("${" + key.strip() + "}"):
        raise ExperimentError(f"--var: expected NAME=VALUE, got {text!r}")
    try:
        val = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        val = raw
    return key.strip(), val


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown activity type {err['input'].get('type')!r}; allowed: " \
                  f"{', '.join(ACTIVITY_TYPES)}" if isinstance(err["input"], dict) else msg
        elif err["type"] == "union_tag_not_found":
            msg = f"missing 'type'; allowed: {', '.join(ACTIVITY_TYPES)}"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: invalid experiment: " + "; ".join(lines)


def load_data(text: str, fmt: Literal["yaml", "toml"], source: str = "<experiment>") -> Any:
    try:
        return tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ExperimentError(f"{source}: not valid {fmt.upper()}: {exc}") from None


def parse_experiment(data: Any, overrides: dict[str, Any] | None = None,
                     source: str = "<experiment>") -> Experiment:
    """Validate parsed YAML/TOML data after ``${var}`` substitution. Raises ExperimentError."""
    if not isinstance(data, dict):
        raise ExperimentError(f"{source}: an experiment is a mapping (title, environment, "
                              "method, ...)")
    config = data.get("configuration") or {}
    if not isinstance(config, dict):
        raise ExperimentError(f"{source}: configuration: must be a mapping of name -> value")
    variables = {**config, **(overrides or {})}
    body = {k: v for k, v in data.items() if k != "configuration"}
    body = substitute(body, variables)
    body["configuration"] = variables
    try:
        return Experiment.model_validate(body)
    except ValidationError as exc:
        raise ExperimentError(_format_error(exc, source)) from None


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read a ``.yaml``/``.yml`` or ``.toml`` experiment file. Raises ExperimentError."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ExperimentError(f"{p}: cannot read: {exc.strerror or exc}") from None
    fmt: Literal["yaml", "toml"] = "toml" if p.suffix == ".toml" else "yaml"
    return parse_experiment(load_data(text, fmt, str(p)), overrides, str(p))
