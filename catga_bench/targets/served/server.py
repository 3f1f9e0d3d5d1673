"""The control side of ``catga-bench serve``: answers generators and serves one scenario.

A run's parameters (scenario, QoS, handler count) come from the generators: ``start`` on their
first contact, then a ``join`` keep-alive every second. A core that was killed and restarted
learns the run from the next keep-alive and picks up its durable consumer where the old one left
off (unacknowledged messages are redelivered to it), while the generators keep going. The
control ops are listed in :mod:`catga_bench.targets.wire`; ``fault`` / ``fault_clear`` set and
lift runtime handler faults.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from catga_bench.targets.served.core import HandlerFault, ServedCore
from catga_bench.targets.served.publisher import CompletionPublisher
from catga_bench.targets.wire import CTL_SUBJECT, stream_subject
from catga_bench.workload.plan import RunPlan
from catga_bench.workload.scenario import Scenario
from core import IdempotencyStore, QoS
from core.defects import new_endpoint
from core.transport import Delivery, MediatorEndpoint, Subscription, Transport

log = logging.getLogger("catga.serve")


@dataclass
class _Run:
    name: str
    qos: int
    handlers: int | None
    core: ServedCore
    endpoints: list[MediatorEndpoint]
    generators: set[int] = field(default_factory=set)


class BenchServer:
    """Answers control requests and serves one scenario at a time.

    Args:
        transport: a connected transport.
        scenarios: scenarios this core may serve, by name.
        defects: seeded core defects (gate tests only).
        max_in_flight: deliveries handled at once per stream.
    """

    def __init__(self, transport: Transport, scenarios: dict[str, Scenario], *,
                 defects: frozenset[str] = frozenset(), max_in_flight: int = 1024,
                 idempotency: IdempotencyStore | None = None,
                 ack_wait_s: float | None = None) -> None:
        self.transport = transport
        self.ack_wait_s = ack_wait_s  # told to generators: how long a redelivery may take
        self.idempotency = idempotency
        self.scenarios = scenarios
        self.defects = defects
        self.max_in_flight = max_in_flight
        self.publisher = CompletionPublisher(transport)
        self.run: _Run | None = None
        self.next_generator = (os.getpid() * 1009 + int(time.time())) % 1_000_000 + 1
        self._ctl: Subscription | None = None
        self.collector: Any = None
        self.faults: dict[str, HandlerFault] = {}  # runtime handler faults (op "fault")

    async def start(self) -> None:
        """Answer control requests; a scenario is served once a generator starts or joins."""
        self.publisher.start()
        self._ctl = await self.transport.subscribe(CTL_SUBJECT, self._on_ctl,
                                                   group="catga-bench-ctl", max_in_flight=8)

    async def serve(self, name: str, qos: int, handlers: int | None) -> _Run:
        """Serve scenario ``name`` at ``qos`` (replacing what was served before)."""
        if self.run is not None:
            await self._stop_run()
        scenario = self.scenarios[name].with_overrides(qos=qos)
        core = ServedCore(RunPlan.of(scenario, handlers), self.publisher,
                          defects=self.defects, faults=self.faults)
        # records of a run at QoS >= 1 (any stream) are stored by the broker before messages
        # are acked
        self.publisher.qos = (QoS.AT_LEAST_ONCE if core.plan.max_qos >= 1
                              else QoS.AT_MOST_ONCE)
        if self.idempotency is not None:  # e.g. Redis: survives a restart of this process
            core.mediator.idempotency = self.idempotency
        core.start()
        endpoints = []
        for st in core.streams:
            ep = new_endpoint(core.mediator, self.transport, core.registry,
                              group=f"catga-core-{st.plan.name}",
                              max_in_flight=self.max_in_flight, on_outcome=core.on_outcome)
            subject = stream_subject(scenario.name, st.plan.name)
            if st.is_event:
                await ep.serve_events(subject, QoS(st.plan.qos))
            else:
                await ep.serve_requests(subject)
            endpoints.append(ep)
        self.run = _Run(name, qos, handlers, core, endpoints)
        if self.collector is not None:
            self.collector.mediator = core.mediator
            self.collector.lag_monitor = core.lag
        log.info("serving %s at QoS %d (%d streams, %d handlers)", name, qos, len(core.streams),
                 sum(len(st.handlers) for st in core.plan.streams))
        # Everything allocated so far lives for the whole run: move it out of the collector's
        # reach, so a full collection does not rescan it (measured: 50-65 ms pauses without).
        gc.collect()
        gc.freeze()
        return self.run

    async def _stop_run(self) -> dict[str, Any]:
        run, self.run = self.run, None
        if run is None:
            return {}
        for ep in run.endpoints:
            await ep.close()
        await run.core.finish(drain_timeout_s=2.0)
        stats = run.core.stats()
        stats["endpoint"] = {
            "malformed": sum(sum(ep.malformed.values()) for ep in run.endpoints),
            "rejected_reported": sum(ep.rejected_reported for ep in run.endpoints),
            "rejected_redelivered": sum(ep.rejected_redelivered for ep in run.endpoints),
            "rejected_dropped": sum(ep.rejected_dropped for ep in run.endpoints),
        }
        stats["transport"] = self.transport.stats.as_dict()
        return stats

    async def _on_ctl(self, d: Delivery) -> None:
        try:
            req = orjson.loads(d.body)
            reply = await self._control(req)
        except Exception as exc:  # a bad request must not kill the server
            log.warning("bad control request: %r", exc)
            reply = {"ok": False, "error": str(exc)}
        if d.reply_to:
            await d.respond({}, orjson.dumps(reply))

    async def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "serving": self.run.name if self.run else None}
        if op in ("start", "join"):
            name = str(req["scenario"])
            if name not in self.scenarios:
                return {"ok": False, "error": f"this core does not know scenario {name!r}; "
                        f"it serves: {', '.join(sorted(self.scenarios)) or 'none'} "
                        "(start it with --scenario FILE)"}
            qos = int(req["qos"])
            handlers = req.get("handlers")
            run = self.run
            same = (run is not None and run.name == name and run.qos == qos
                    and run.handlers == handlers)
            if run is not None and not same and run.generators:
                return {"ok": False, "error": f"this core is busy serving {run.name} at QoS "
                        f"{run.qos} for {len(run.generators)} generator(s)"}
            if run is None or not same:
                run = await self.serve(name, qos, handlers)
            if op == "start":
                gen = self.next_generator
                self.next_generator += 1
            else:  # a generator's keep-alive: a restarted core learns the run from it
                gen = int(req["generator"])
            run.generators.add(gen)
            return {"ok": True, "generator": gen,
                    "core": {"pid": os.getpid(), "ack_wait_s": self.ack_wait_s}}
        if op == "stop":
            run = self.run
            gen = int(req.get("generator", 0))
            if run is None:
                return {"ok": True, "stats": {}}
            run.generators.discard(gen)
            if run.generators:
                return {"ok": True, "stats": {}}  # the last generator gets the core's stats
            return {"ok": True, "stats": await self._stop_run()}
        if op == "fault":
            return self._set_fault(req)
        if op == "fault_clear":
            cleared = [f.as_dict() for f in self.faults.values()]
            self.faults.clear()
            if self.run is not None:
                self.run.core.faults_cleared()
            return {"ok": True, "cleared": cleared}
        return {"ok": False, "error": f"unknown op {op!r}; allowed: start, join, stop, ping, "
                "fault, fault_clear"}

    def _set_fault(self, req: dict[str, Any]) -> dict[str, Any]:
        """``{"op": "fault", "handler": NAME|"*", "error_rate": 0..1, "latency_ms": N,
        "outage_s": N}``: wrap that handler's calls with a fault (replaces its previous one).
        ``outage_s`` alone means every call fails for that long."""
        handler = str(req.get("handler", "*"))
        known = sorted({h.name for st in self.run.core.plan.streams for h in st.handlers}) \
            if self.run is not None else None
        if handler != "*" and known is not None and handler not in known:
            return {"ok": False, "error": f"fault: unknown handler {handler!r}; this run's "
                    f"handlers: *, {', '.join(known)}"}
        outage = req.get("outage_s")
        rate = req.get("error_rate", 1.0 if outage is not None else 0.0)
        latency = req.get("latency_ms", 0.0)
        try:
            rate, latency = float(rate), float(latency)
            outage = None if outage is None else float(outage)
        except (TypeError, ValueError):
            return {"ok": False, "error": "fault: error_rate, latency_ms and outage_s must be "
                    "numbers"}
        if not 0.0 <= rate <= 1.0:
            return {"ok": False, "error": f"fault: error_rate must be within 0..1, got {rate}"}
        if latency < 0 or (outage is not None and outage <= 0):
            return {"ok": False, "error": "fault: latency_ms must be >= 0 and outage_s > 0"}
        fault = HandlerFault(handler, rate, latency,
                             None if outage is None else time.monotonic() + outage)
        self.faults[handler] = fault
        if self.run is not None:
            self.run.core.fault_set(handler, outage)
        log.warning("runtime fault on handler %s: %s", handler, fault.as_dict())
        return {"ok": True, "fault": fault.as_dict()}

    async def close(self) -> None:
        if self._ctl is not None:
            await self._ctl.stop()
        await self._stop_run()
        await self.publisher.close()


__all__ = ["BenchServer"]
