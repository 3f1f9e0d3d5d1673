"""The in-memory transport keeps the seam's promises, and the endpoint settles deliveries by
what the mediator did (ack, nack on rejection, dead-letter on malformed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from core import ConcurrencyLimiter, Event, Mediator, QoS, Request
from core.transport import (
    InMemoryBroker,
    InMemoryTransport,
    MediatorEndpoint,
    RemoteMediator,
    RequestTimeout,
    TransportError,
    TypeRegistry,
    default_subject,
)
from core.transport.base import H_DLQ_REASON, Delivery
from core.transport.envelope import H_NATS_DEDUP


@dataclass(slots=True)
class Placed(Event):
    order: int = 0


@dataclass(slots=True)
class Quote(Request):
    amount: int = 0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_qos0_group_members_share_and_plain_subscribers_each_get_a_copy() -> None:
    async def main() -> tuple[list[int], list[int]]:
        broker = InMemoryBroker()
        got: dict[str, list[int]] = {"a": [], "b": [], "plain": []}
        async with InMemoryTransport(broker) as a, InMemoryTransport(broker) as b:
            def rec(name: str):
                async def h(d: Delivery) -> None:
                    got[name].append(int(d.body))
                return h
            await a.subscribe("x.y", rec("a"), group="g")
            await b.subscribe("x.y", rec("b"), group="g")
            await b.subscribe("x.>", rec("plain"))
            for i in range(100):
                await a.publish("x.y", {}, str(i).encode())
            await asyncio.sleep(0.05)
        return got["a"] + got["b"], got["plain"]

    shared, plain = run(main())
    assert sorted(shared) == list(range(100))
    assert sorted(plain) == list(range(100))


def test_unsettled_delivery_is_redelivered_to_another_member_after_ack_wait() -> None:
    async def main() -> tuple[list[int], int]:
        broker = InMemoryBroker(ack_wait_s=0.2)
        seen: list[int] = []
        dying = InMemoryTransport(broker)
        started = asyncio.Event()

        async def hang(d: Delivery) -> None:
            started.set()
            await asyncio.sleep(60)  # killed before it acks

        async def ok(d: Delivery) -> None:
            seen.append(d.delivery_count)
            await d.ack()

        async with InMemoryTransport(broker) as survivor:
            await dying.subscribe("q.a", hang, qos=QoS.AT_LEAST_ONCE, group="g")
            await survivor.publish("q.a", {}, b"1", qos=QoS.AT_LEAST_ONCE)
            await started.wait()
            await dying.close()
            await survivor.subscribe("q.a", ok, qos=QoS.AT_LEAST_ONCE, group="g")
            await asyncio.sleep(0.5)
            return seen, survivor.stats.redelivered

    seen, redelivered = run(main())
    assert seen == [2]
    assert redelivered == 1


def test_nack_redelivers_then_dead_letters_with_reason_after_max_deliver() -> None:
    async def main() -> tuple[list[int], list[tuple[dict[str, str], bytes]]]:
        broker = InMemoryBroker(ack_wait_s=5, max_deliver=3)
        counts: list[int] = []

        async def fail(d: Delivery) -> None:
            counts.append(d.delivery_count)
            await d.nack(0.01, reason="boom")

        async with InMemoryTransport(broker) as t:
            await t.subscribe("q.b", fail, qos=QoS.AT_LEAST_ONCE)
            await t.publish("q.b", {"k": "v"}, b"x", qos=QoS.AT_LEAST_ONCE)
            await asyncio.sleep(0.3)
            return counts, await t.dead_letters()

    counts, dlq = run(main())
    assert counts == [1, 2, 3]
    assert len(dlq) == 1
    assert dlq[0][0][H_DLQ_REASON] == "max deliveries (3) reached: boom"
    assert dlq[0][0]["k"] == "v" and dlq[0][1] == b"x"


def test_publisher_dedup_stores_a_message_id_once() -> None:
    async def main() -> int:
        got: list[bytes] = []

        async def h(d: Delivery) -> None:
            got.append(d.body)
            await d.ack()

        async with InMemoryTransport() as t:
            await t.subscribe("q.c", h, qos=QoS.AT_LEAST_ONCE)
            for _ in range(3):
                await t.publish("q.c", {H_NATS_DEDUP: "42"}, b"a", qos=QoS.AT_LEAST_ONCE)
            await asyncio.sleep(0.05)
        return len(got)

    assert run(main()) == 1


def test_request_reply_timeout_and_no_responders() -> None:
    async def main() -> None:
        async def echo(d: Delivery) -> None:
            await d.respond({"h": "1"}, d.body + b"!")

        async def silent(d: Delivery) -> None:
            return None

        async with InMemoryTransport() as t:
            await t.subscribe("r.echo", echo, group="g")
            await t.subscribe("r.silent", silent, group="g")
            reply = await t.request("r.echo", {}, b"hi", timeout_s=1)
            assert reply.body == b"hi!" and reply.headers["h"] == "1"
            with pytest.raises(RequestTimeout):
                await t.request("r.silent", {}, b"", timeout_s=0.05)
            with pytest.raises(TransportError, match="no responders"):
                await t.request("r.none", {}, b"", timeout_s=0.05)

    run(main())


def _endpoint_setup(limiter: ConcurrencyLimiter | None = None):
    mediator = Mediator(limiter=limiter)
    handled: list[int] = []

    async def on_placed(e: Placed) -> None:
        handled.append(e.order)

    async def on_quote(r: Quote) -> int:
        return r.amount * 2

    mediator.subscribe(Placed, on_placed)
    mediator.register(Quote, on_quote)
    return mediator, handled, TypeRegistry([Placed, Quote])


def test_endpoint_serves_events_and_requests_and_dead_letters_malformed() -> None:
    async def main() -> None:
        mediator, handled, registry = _endpoint_setup()
        broker = InMemoryBroker()
        async with InMemoryTransport(broker) as server, InMemoryTransport(broker) as client:
            ep = MediatorEndpoint(mediator, server, registry)
            await ep.serve_events(default_subject(Placed), QoS.AT_LEAST_ONCE)
            await ep.serve_requests(default_subject(Quote))
            remote = RemoteMediator(client, registry)
            for i in range(10):
                assert (await remote.publish(Placed(order=i, qos=QoS.AT_LEAST_ONCE))).ok
            r = await remote.send(Quote(amount=21))
            assert r.ok and r.value == 42
            await client.publish(default_subject(Placed), {"Catga-Message-Type": "Nope"}, b"{}",
                                 qos=QoS.AT_LEAST_ONCE)
            await asyncio.sleep(0.1)
            assert sorted(handled) == list(range(10))
            dlq = await server.dead_letters()
            assert [h[H_DLQ_REASON] for h, _ in dlq] == ["malformed: unknown message type 'Nope'"]
            assert ep.malformed == {"unknown message type 'Nope'": 1}
            assert server.stats.acked == 10

    run(main())


def test_endpoint_redeliver_policy_nacks_rejected_qos1_messages_so_all_are_handled() -> None:
    async def main() -> None:
        limiter = ConcurrencyLimiter(1, 0)  # one at a time, no queue: the rest are rejected
        mediator = Mediator(limiter=limiter)
        done: list[int] = []

        async def slow(e: Placed) -> None:
            await asyncio.sleep(0.005)
            done.append(e.order)

        mediator.subscribe(Placed, slow)
        registry = TypeRegistry([Placed])
        async with InMemoryTransport(InMemoryBroker(max_deliver=1000)) as t:
            ep = MediatorEndpoint(mediator, t, registry, max_in_flight=8,
                                  on_rejected="redeliver", rejected_redelivery_s=0.01)
            await ep.serve_events(default_subject(Placed), QoS.AT_LEAST_ONCE)
            remote = RemoteMediator(t, registry)
            for i in range(20):
                await remote.publish(Placed(order=i, qos=QoS.AT_LEAST_ONCE))
            for _ in range(300):
                if len(done) == 20:
                    break
                await asyncio.sleep(0.01)
            assert sorted(done) == list(range(20))
            assert ep.rejected_redelivered > 0
            assert await t.dead_letters() == []

    run(main())


def test_endpoint_reports_rejected_qos1_messages_and_settles_them() -> None:
    """Default backpressure over a broker: what the limiter refuses is reported to the sender
    (REJECTED through on_outcome) and acked, so the broker holds no refused backlog; every
    message is either handled or reported rejected, none silently gone."""
    async def main() -> None:
        limiter = ConcurrencyLimiter(1, 0)
        mediator = Mediator(limiter=limiter)
        done: list[int] = []
        outcomes: dict[int, str] = {}

        async def slow(e: Placed) -> None:
            await asyncio.sleep(0.005)
            done.append(e.order)

        async def on_outcome(msg: Any, result: Any, d: Any) -> None:
            outcomes[msg.order] = "" if result.error is None else result.error.code.value

        mediator.subscribe(Placed, slow)
        registry = TypeRegistry([Placed])
        async with InMemoryTransport(InMemoryBroker(max_deliver=1000)) as t:
            ep = MediatorEndpoint(mediator, t, registry, max_in_flight=8, on_outcome=on_outcome)
            await ep.serve_events(default_subject(Placed), QoS.AT_LEAST_ONCE)
            remote = RemoteMediator(t, registry)
            for i in range(20):
                await remote.publish(Placed(order=i, qos=QoS.AT_LEAST_ONCE))
            for _ in range(300):
                if len(outcomes) == 20:
                    break
                await asyncio.sleep(0.01)
            rejected = sorted(o for o, c in outcomes.items() if c == "rejected")
            assert len(outcomes) == 20
            assert rejected and ep.rejected_reported == len(rejected)
            assert ep.rejected_redelivered == 0
            assert sorted(done + rejected) == list(range(20))  # each handled xor rejected
            assert t.stats.acked == 20 and t.stats.nacked == 0

    run(main())


def test_endpoint_rejects_an_unknown_rejection_policy() -> None:
    async def main() -> None:
        registry = TypeRegistry([Placed])
        async with InMemoryTransport(InMemoryBroker()) as t:
            with pytest.raises(ValueError, match="on_rejected"):
                MediatorEndpoint(Mediator(), t, registry, on_rejected="drop")  # type: ignore[arg-type]

    run(main())
