"""A run plan: a scenario resolved into concrete streams (handlers, QoS, share), data only.

The generator and every system under test read the same plan, so stream ``i`` and handler
``j`` mean the same thing on both sides of the seam (and on both sides of a broker: the served
core builds the same plan from the scenario's name, QoS and handler count).
"""

from __future__ import annotations

from dataclasses import dataclass

from catga_bench.errors import ConfigError
from catga_bench.workload.asyncapi import SutSpec, load_spec
from catga_bench.workload.http import http_input
from catga_bench.workload.profiles import External, Failing, HandlerSpec
from catga_bench.workload.scenario import Scenario, Stream

#: the systems under test that are black boxes read from an AsyncAPI document
BLACK_BOX_SUTS = ("asyncapi", "http")
#: the ledger column of an HTTP input with no output operation: its response
RESPONSE_COLUMN = "response"


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """One stream of a run.

    Attributes:
        index: position in the scenario (the ``stream`` number in outcomes and on the wire).
        spec: the scenario's declaration.
        handlers: the concrete handlers (a factory already called with the handler count).
        qos: this stream's QoS level (0, 1 or 2): its own, else the scenario's.
    """

    index: int
    spec: Stream
    handlers: tuple[HandlerSpec, ...]
    qos: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_event(self) -> bool:
        """True for ``publish`` (fan-out) streams, False for ``send`` (request/response)."""
        return self.spec.kind == "event"

    @property
    def handler_names(self) -> list[str]:
        return [h.name for h in self.handlers]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """The streams of ``scenario`` with ``--handlers`` applied.

    Raises:
        ConfigError: a request stream without exactly one handler, or a handler entry that is
            neither a HandlerSpec nor an ``async def``.
    """

    scenario: Scenario
    streams: tuple[StreamPlan, ...]
    handler_count: int | None = None
    spec: SutSpec | None = None  # the AsyncAPI document of a black-box system

    @classmethod
    def of(cls, scenario: Scenario, handler_count: int | None = None) -> RunPlan:
        """Resolve ``scenario`` (its QoS is the default of every stream without one); for a
        black box (``sut="asyncapi"`` or ``"http"``) the one stream comes from its document."""
        if scenario.sut in BLACK_BOX_SUTS:
            return cls._of_spec(scenario)
        streams = []
        for i, spec in enumerate(scenario.streams):
            handlers = tuple(spec.handler_specs(handler_count))
            if spec.kind == "request" and len(handlers) != 1:
                raise ConfigError(f"request stream {spec.name!r} needs exactly one handler, "
                                  f"got {len(handlers)}")
            qos = scenario.qos if spec.qos is None else spec.qos
            streams.append(StreamPlan(i, spec, handlers, int(qos)))
        return cls(scenario, tuple(streams), handler_count)

    @classmethod
    def _of_spec(cls, scenario: Scenario) -> RunPlan:
        """One stream: the input operation's message, a ledger column per output operation
        (``http`` with no output operation: one column, :data:`RESPONSE_COLUMN`, the HTTP
        response).

        Raises:
            ConfigError: no spec given, or the document is not a usable AsyncAPI 3 subset
                (for ``http``: no http server, or a GET input with its id in the payload).
        """
        kind = scenario.sut
        if not scenario.sut_spec:
            raise ConfigError(f"--sut {kind} needs the service's AsyncAPI document: "
                              "--sut-spec FILE (or Scenario(sut_spec=...))")
        spec = load_spec(scenario.sut_spec)
        op = spec.input_operation()
        name = op.messages[0].name if op.messages else op.id
        if kind == "http":
            http_input(spec)  # an http server, a method that can carry the id
        outputs = spec.output_operations(required=kind != "http")
        handlers = tuple(HandlerSpec(o.id, External()) for o in outputs) or (
            HandlerSpec(RESPONSE_COLUMN, External()),)
        qos = spec.bench.qos if spec.bench.qos is not None else scenario.qos
        stream = Stream(name, handlers=list(handlers), qos=qos)
        return cls(scenario, (StreamPlan(0, stream, handlers, int(qos)),), None, spec)

    def channels(self, input_url: str | None = None) -> list[str]:
        """What a black-box run publishes to and reads (empty for the reference core);
        ``input_url`` (the HTTP kind's request URL) stands for the input channel."""
        if self.spec is None:
            return []
        outputs = self.spec.output_operations(required=self.scenario.sut != "http")
        return [input_url or self.spec.input_operation().channel.address,
                *(o.channel.address for o in outputs)]

    @property
    def qos(self) -> int:
        """The scenario's QoS (``--qos``)."""
        return int(self.scenario.qos)

    @property
    def max_qos(self) -> int:
        """The highest QoS of any stream (what the run's settlement must provide for)."""
        return max((st.qos for st in self.streams), default=self.qos)

    def shares(self) -> list[float]:
        return [st.spec.share for st in self.streams]

    def active_faults(self, elapsed_s: float) -> dict[str, bool]:
        """Faults the scenario itself injects and whether each is active ``elapsed_s`` into the
        run: the outage windows of :class:`~catga_bench.workload.profiles.Failing` handlers
        (``outage:<handler>``)."""
        out: dict[str, bool] = {}
        for st in self.streams:
            for h in st.handlers:
                p = h.profile
                if isinstance(p, Failing) and p.outage_start_s is not None:
                    end = p.outage_end_s if p.outage_end_s is not None else float("inf")
                    out[f"outage:{h.name}"] = p.outage_start_s <= elapsed_s < end
        return out


def weighted_cycle(shares: list[float], length: int = 100) -> list[int]:
    """Stream indices in a smooth weighted round-robin order (deterministic mix)."""
    if len(shares) == 1:
        return [0]
    total = sum(shares)
    acc = [0.0] * len(shares)
    out: list[int] = []
    for _ in range(length):
        for i, s in enumerate(shares):
            acc[i] += s / total
        pick = max(range(len(shares)), key=acc.__getitem__)
        acc[pick] -= 1.0
        out.append(pick)
    return out


__all__ = ["BLACK_BOX_SUTS", "RESPONSE_COLUMN", "RunPlan", "StreamPlan", "weighted_cycle"]
