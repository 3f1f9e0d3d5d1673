"""The black-box core's contract (catga_bench/targets/served/blackbox.py) without a broker: what
it reads from the shipped document, how an input becomes the stream's event, and that one
output follows the handlers, not the mediator's return."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from catga_bench.errors import ConfigError
from catga_bench.targets.served.blackbox import (
    GROUP,
    BlackBoxContract,
    BlackBoxCore,
    message_id_of,
)
from catga_bench.workload.asyncapi import load_spec
from catga_bench.workload.loader import load_scenarios
from catga_bench.workload.plan import RunPlan
from core import QoS
from core.transport.envelope import MalformedMessage
from core.transport.nats._transport import _name

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "scenarios" / "specs" / "catga-core.asyncapi.yaml"


def test_the_shipped_document_names_what_the_core_creates() -> None:
    spec = load_spec(DOC)
    c = BlackBoxContract.of(spec)
    assert (c.input_subject, c.input_header) == ("catga.blackbox.Input", "Catga-Correlation-Id")
    assert (c.output_subject, c.output_header) == ("catga.blackbox_out.Handled",
                                                   "Catga-Correlation-Id")
    assert c.qos is None  # the run's own: --qos on both sides
    js = spec.bench.jetstream
    assert js is not None
    assert js.stream == "CATGA_BLACKBOX"  # NatsTransport: CATGA_<family of catga.<family>.x>
    assert js.durable == _name(f"{GROUP}-{c.input_subject}")


def test_the_shipped_scenario_is_the_10k_black_box_run() -> None:
    s = load_scenarios([ROOT / "scenarios" / "core_black_box.py"])["core_black_box"]
    assert (s.rate, s.qos, s.sut, s.slo.p99_ms, s.slo.min_throughput) == (
        10_500, 0, "asyncapi", 100, 10_000)
    assert Path(s.sut_spec or "") == DOC
    assert [st.name for st in RunPlan.of(s.with_overrides(sut="core")).streams] == ["Input"]


def test_a_payload_correlation_is_refused_in_one_line(tmp_path: Path) -> None:
    text = DOC.read_text().replace("$message.header#/Catga-Correlation-Id",
                                   "$message.payload#/id", 1)
    (tmp_path / "doc.yaml").write_text(text)
    with pytest.raises(ConfigError, match="operation handle: the core carries the correlation"):
        BlackBoxContract.of(load_spec(tmp_path / "doc.yaml"))


def test_the_message_id_is_the_correlation_ids_and_fits_63_bits() -> None:
    a = message_id_of("run1.0.7")
    assert a == message_id_of("run1.0.7") != message_id_of("run1.0.8")
    assert 0 <= a < 2**63


class _Writer:
    def __init__(self) -> None:
        self.emitted: list[str] = []
        self.commits = 0

    def emit(self, cid: str) -> None:
        self.emitted.append(cid)

    async def commit(self) -> None:
        self.commits += 1


def _core(qos: int, defects: frozenset[str] = frozenset()) -> tuple[BlackBoxCore, _Writer]:
    s = load_scenarios([ROOT / "scenarios" / "core_black_box.py"])["core_black_box"]
    plan = RunPlan.of(s.with_overrides(sut="core", qos=qos))
    writer = _Writer()
    core = BlackBoxCore(plan, BlackBoxContract.of(load_spec(DOC)), writer,  # type: ignore[arg-type]
                        defects=defects)
    return core, writer


async def _deliver(core: BlackBoxCore, cid: str) -> Any:
    msg = core.decode({"Catga-Correlation-Id": cid}, b'{"item": "x"}')
    result = await core.mediator.publish(msg)
    await core.on_outcome(msg, result, None)  # type: ignore[arg-type]
    return msg


def test_an_input_becomes_the_streams_event_and_one_output_follows() -> None:
    core, writer = _core(0)
    msg = asyncio.run(_deliver(core, "r.0.1"))
    assert type(msg).__name__ == "Input" and msg.qos is QoS.AT_MOST_ONCE
    assert msg.message_id == message_id_of("r.0.1")
    assert writer.emitted == ["r.0.1"] and writer.commits == 0  # QoS 0: nothing to wait for
    assert core.outputs.pending == {}


@pytest.mark.parametrize(("defects", "outputs"), [(frozenset(), 1),
                                                  (frozenset({"dedup_off"}), 2)])
def test_a_qos2_copy_emits_nothing_unless_dedup_is_off(defects: frozenset[str],
                                                       outputs: int) -> None:
    core, writer = _core(2, defects)

    async def twice() -> None:
        await _deliver(core, "r.0.5")
        await _deliver(core, "r.0.5")

    asyncio.run(twice())
    assert writer.emitted == ["r.0.5"] * outputs and writer.commits == 2
    assert core.outputs.pending == {}


@pytest.mark.parametrize(("headers", "body", "reason"), [
    ({}, b"{}", "missing header Catga-Correlation-Id"),
    ({"Catga-Correlation-Id": "r.0.1"}, b"nope", "body is not JSON"),
    ({"Catga-Correlation-Id": "r.0.1"}, b"[1]", "body must be a JSON object"),
])
def test_an_input_the_core_cannot_read_is_malformed(headers: dict[str, str], body: bytes,
                                                    reason: str) -> None:
    core, _ = _core(0)
    with pytest.raises(MalformedMessage, match=reason):
        core.decode(headers, body)
