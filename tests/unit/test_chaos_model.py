"""The experiment format (YAML and TOML, variables, clear errors) and the runner's contract
(rollbacks always played, Chaos Toolkit journal fields), with fake activities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catga_bench.chaos.journal import write_journal
from catga_bench.chaos.model import (
    ExperimentError,
    load_experiment,
    parse_experiment,
    parse_var,
)
from catga_bench.chaos.runner import Runner

ROOT = Path(__file__).resolve().parents[2]

YAML = """
title: t
configuration: {fault_s: 3, latency: 50, who: charge_card}
environment: {broker: nats}
steady-state-hypothesis:
  title: h
  probes:
    - {type: core_ping, name: ping}
method:
  - type: toxic_add
    pauses: {before: 1}
    toxic: {type: latency, attributes: {latency: "${latency}"}}
  - {type: sleep, duration_s: "${fault_s}"}
  - {type: handler_fault, handler: "${who}", outage_s: "${fault_s}", name: "fault on ${who}"}
rollbacks:
  - {type: toxic_remove}
"""

TOML = """
title = "t"
[configuration]
fault_s = 3
[environment]
broker = "redis"
[[method]]
type = "sleep"
duration_s = "${fault_s}"
[[rollbacks]]
type = "broker_resume"
"""


def test_yaml_parses_with_variables_typed() -> None:
    exp = parse_experiment(__import__("yaml").safe_load(YAML))
    toxic, sleep, fault = exp.method
    assert toxic.toxic.attributes == {"latency": 50}  # type: ignore[union-attr]
    assert toxic.pauses.before == 1
    assert sleep.duration_s == 3  # type: ignore[union-attr]
    assert fault.name == "fault on charge_card" and fault.outage_s == 3  # type: ignore[union-attr]
    assert exp.rollbacks[0].type == "toxic_remove"


def test_toml_parses(tmp_path: Path) -> None:
    f = tmp_path / "e.toml"
    f.write_text(TOML)
    exp = load_experiment(f)
    assert exp.environment.broker == "redis"
    assert exp.method[0].duration_s == 3  # type: ignore[union-attr]


def test_var_overrides_configuration(tmp_path: Path) -> None:
    f = tmp_path / "e.yaml"
    f.write_text(YAML)
    exp = load_experiment(f, dict([parse_var("fault_s=0.5"), parse_var("who=*")]))
    assert exp.method[1].duration_s == 0.5  # type: ignore[union-attr]
    assert exp.method[2].handler == "*"  # type: ignore[union-attr]
    assert exp.configuration["fault_s"] == 0.5


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(colour="red"), "colour: unknown field"),
    (lambda d: d["method"][0].update(type="explode"), "unknown activity type 'explode'; allowed:"),
    (lambda d: d["method"][0]["toxic"].update(type="fire"), "'latency', 'bandwidth'"),
    (lambda d: d["environment"].update(broker="kafka"), "environment.broker"),
    (lambda d: d["method"][1].update(seconds=2), "method.1.sleep.seconds: unknown field"),
    (lambda d: d["method"][2].update(error_rate=2), "less than or equal to 1"),
])
def test_bad_field_is_a_clear_error(mutate: Any, message: str) -> None:
    data = __import__("yaml").safe_load(YAML)
    mutate(data)
    with pytest.raises(ExperimentError, match=None) as err:
        parse_experiment(data, source="x.yaml")
    assert message in str(err.value), str(err.value)
    assert str(err.value).startswith("x.yaml: invalid experiment: ")


def test_unknown_variable_and_bad_var() -> None:
    data = __import__("yaml").safe_load(YAML)
    data["method"][1]["duration_s"] = "${nope}"
    with pytest.raises(ExperimentError, match=r"method\[1\].duration_s: unknown variable"):
        parse_experiment(data)
    with pytest.raises(ExperimentError, match="NAME=VALUE"):
        parse_var("novalue")


def test_shipped_experiments_parse() -> None:
    files = sorted((ROOT / "experiments").glob("*.yaml"))
    assert len(files) == 9
    for f in files:
        exp = load_experiment(f)
        assert exp.rollbacks, f"{f.name}: no rollbacks"


# ----------------------------------------------------------------- runner with fakes
class FakeEnv:
    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}
        self.calls: list[str] = []

    def setup(self) -> None:
        self.calls.append("setup")

    def start_load(self) -> None:
        self.calls.append("start_load")

    def teardown(self, *, wait_for_load: bool = True) -> None:
        self.calls.append("teardown")

    def describe(self) -> dict[str, Any]:
        return {"fake": True}


def _runner(ping_ok: Any, *, action_raises: bool = False) -> tuple[Runner, FakeEnv]:
    env = FakeEnv()
    exp = parse_experiment(__import__("yaml").safe_load(YAML))

    def action(e: FakeEnv, a: Any) -> Any:
        e.calls.append(a.type)
        if action_raises and a.type == "sleep":
            raise RuntimeError("boom")
        return {"did": a.type}

    pings = iter(ping_ok)

    def ping(e: FakeEnv, p: Any) -> tuple[Any, bool]:
        e.calls.append("ping")
        return {"ok": True}, next(pings)

    actions = {t: action for t in ("toxic_add", "sleep", "handler_fault", "toxic_remove")}
    return Runner(exp, env, actions=actions, probes={"core_ping": ping},
                  sleep=lambda s: None), env


def test_rollbacks_run_when_the_steady_state_is_not_met_before() -> None:
    runner, env = _runner([False])
    j = runner.run()
    assert j["status"] == "failed" and j["deviated"] is False
    assert j["steady_states"]["before"]["steady_state_met"] is False
    assert j["run"] == [] and env.calls == ["setup", "ping", "toxic_remove", "teardown"]
    assert j["rollbacks"][0]["status"] == "succeeded"


def test_rollbacks_run_when_an_action_fails() -> None:
    runner, env = _runner([True, True], action_raises=True)
    j = runner.run()
    assert j["status"] == "aborted"
    assert [r["status"] for r in j["run"]] == ["succeeded", "failed"]
    assert "RuntimeError: boom" in j["run"][1]["exception"][0]
    assert "toxic_remove" in env.calls and env.calls[-1] == "teardown"
    assert j["steady_states"]["after"]["steady_state_met"] is True  # recovery still checked


def test_deviation_after_the_method() -> None:
    runner, _ = _runner([True, False])
    j = runner.run()
    assert j["status"] == "failed" and j["deviated"] is True


def test_interrupt_still_rolls_back() -> None:
    runner, env = _runner([True])

    def interrupt(e: FakeEnv, a: Any) -> Any:
        raise KeyboardInterrupt

    runner.actions = {**runner.actions, "sleep": interrupt}
    j = runner.run()
    assert j["status"] == "interrupted"
    assert len(j["rollbacks"]) == 1 and env.calls[-1] == "teardown"


def test_journal_has_the_chaos_toolkit_fields(tmp_path: Path) -> None:
    runner, _ = _runner([True, True])
    j = runner.run()
    path = write_journal(j, tmp_path / "j" / "journal.json")
    j = json.loads(path.read_text())
    for key in ("chaoslib-version", "experiment", "status", "start", "end", "duration",
                "steady_states", "run", "rollbacks", "deviated"):
        assert key in j, key
    assert j["status"] == "completed" and j["deviated"] is False
    assert set(j["steady_states"]) >= {"before", "after"}
    for phase in ("before", "after"):
        assert set(j["steady_states"][phase]) == {"steady_state_met", "probes"}
    assert j["experiment"]["title"] == "t" and "steady-state-hypothesis" in j["experiment"]
    for entry in j["run"] + j["rollbacks"] + j["steady_states"]["after"]["probes"]:
        assert {"activity", "status", "output", "start", "end", "duration"} <= set(entry)
        assert entry["status"] in ("succeeded", "failed")
    assert j["steady_states"]["after"]["probes"][0]["tolerance_met"] is True
    assert [e["activity"]["type"] for e in j["run"]] == ["toxic_add", "sleep", "handler_fault"]


def test_an_environment_names_one_system_under_test() -> None:
    """``core`` (the reference core) or ``sut`` (a black box from its document), not both."""
    from catga_bench.chaos.model import Environment

    both = {"broker": "nats", "core": {"scenario": "x.py"}, "sut": {"spec": "a.yaml"}}
    with pytest.raises(ValueError, match=r"either core .* or sut"):
        Environment.model_validate(both)
    env = Environment.model_validate({"broker": "nats", "sut": {"spec": "a.yaml"}})
    assert env.sut is not None and env.sut.spec == "a.yaml" and env.core is None
