"""RedisTransport against a private redis-server: Pub/Sub (QoS 0, shared by a group over a
NOACK stream), request/reply over a stream + inbox, and Streams (QoS 1) with acks, reclaim of a
dead consumer's messages, nack, max_deliver and term dead-lettering, load sharing, connect
failure and a broker restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from _support import free_port

from catga_bench.processes.brokers import BrokerProcess
from core.messages import QoS
from core.transport.base import (
    H_DLQ_DELIVERIES,
    H_DLQ_REASON,
    H_DLQ_SUBJECT,
    BrokerUnavailable,
    Delivery,
    RequestTimeout,
    TransportError,
)
from core.transport.redis import RedisTransport

Q1 = QoS.AT_LEAST_ONCE


def run(main: Callable[[], Awaitable[None]], timeout_s: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(main(), timeout_s)

    asyncio.run(bounded())


async def wait_until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def transport(broker: BrokerProcess, **kw: Any) -> RedisTransport:
    kw.setdefault("ack_wait_s", 0.5)
    return RedisTransport(broker.url, **kw)


async def pending_count(url: str, key: str, group: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return int((await client.xpending(key, group))["pending"])
    finally:
        await client.aclose()


def test_qos0_fans_out_to_every_subscriber_and_round_trips_bytes(
        redis_server_module: BrokerProcess) -> None:
    body = bytes(range(256)) * 3

    async def main() -> None:
        async with transport(redis_server_module) as t:
            a: list[Delivery] = []
            b: list[Delivery] = []

            async def on_a(d: Delivery) -> None:
                a.append(d)

            async def on_b(d: Delivery) -> None:
                b.append(d)

            await t.subscribe("fan.Event", on_a)
            await t.subscribe("fan.Event", on_b)
            for i in range(50):
                await t.publish("fan.Event", {"Catga-Message-Id": str(i), "ü": "ß"}, body)
            await t.flush()
            await wait_until(lambda: len(a) == 50 and len(b) == 50)
            assert [d.headers["Catga-Message-Id"] for d in a] == [str(i) for i in range(50)]
            assert all(d.body == body and d.headers["ü"] == "ß" for d in a + b)
            assert all(d.delivery_count == 1 and d.reply_to is None for d in a)
            await a[0].ack()  # no-ops at QoS 0
            await a[0].nack()
            assert t.stats.published == 50 and t.stats.received == 100

    run(main)


def test_qos0_group_members_share_messages(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module) as t:
            members: list[list[bytes]] = [[], []]
            everyone: list[bytes] = []

            def collect(into: list[bytes]) -> Callable[[Delivery], Awaitable[None]]:
                async def handler(d: Delivery) -> None:
                    into.append(d.body)
                    await asyncio.sleep(0.001)
                return handler

            await t.subscribe("share0.Event", collect(members[0]), group="svc")
            await t.subscribe("share0.Event", collect(members[1]), group="svc")
            await t.subscribe("share0.Event", collect(everyone))  # no group: gets all
            for i in range(200):
                await t.publish("share0.Event", {}, str(i).encode())
            await t.flush()
            await wait_until(lambda: len(members[0]) + len(members[1]) == 200
                             and len(everyone) == 200)
            await asyncio.sleep(0.2)
            got = members[0] + members[1]
            assert sorted(got) == sorted(str(i).encode() for i in range(200))  # exactly once
            assert members[0] and members[1]

    run(main)


def test_request_reply_one_member_answers_and_timeout(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module) as server, \
                transport(redis_server_module) as client:
            handled: list[str] = []

            def responder(name: str) -> Callable[[Delivery], Awaitable[None]]:
                async def handler(d: Delivery) -> None:
                    handled.append(name)
                    assert d.reply_to is not None
                    await d.respond({"who": name}, b"re:" + d.body)
                return handler

            await server.subscribe("rpc.Ping", responder("a"), group="svc")
            await server.subscribe("rpc.Ping", responder("b"), group="svc")
            replies = await asyncio.gather(*(
                client.request("rpc.Ping", {"n": str(i)}, b"\x00%d" % i, timeout_s=5)
                for i in range(40)))
            assert [r.body for r in replies] == [b"re:\x00%d" % i for i in range(40)]
            assert len(handled) == 40  # each request answered by exactly one member
            assert {r.headers["who"] for r in replies} <= {"a", "b"}
            assert await pending_count(redis_server_module.url, "catga:req:rpc.Ping", "svc") == 0

            t0 = time.monotonic()
            with pytest.raises(RequestTimeout) as info:
                await client.request("rpc.Nobody", {}, b"", timeout_s=0.3)
            assert 0.25 <= time.monotonic() - t0 < 2
            assert info.value.subject == "rpc.Nobody" and info.value.timeout_s == 0.3

    run(main)


def test_qos1_ack_means_no_redelivery(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module) as t:
            got: list[Delivery] = []

            async def handler(d: Delivery) -> None:
                got.append(d)
                await d.ack()

            await t.subscribe("acked.Event", handler, qos=Q1, group="svc")
            for i in range(20):
                await t.publish("acked.Event", {"i": str(i)}, b"%d" % i, qos=Q1)
            assert t.stats.published == 20
            await wait_until(lambda: len(got) == 20)
            await asyncio.sleep(1.5)  # three ack_wait periods: nothing may come back
            assert len(got) == 20
            assert sorted(int(d.headers["i"]) for d in got) == list(range(20))
            assert all(d.delivery_count == 1 for d in got)
            assert t.stats.acked == 20 and t.stats.redelivered == 0
            assert await pending_count(redis_server_module.url, "catga:stream:acked.Event",
                                       "svc") == 0

    run(main)


def test_dead_consumer_messages_go_to_another_member(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        first: list[Delivery] = []
        second: list[Delivery] = []

        async def dies(d: Delivery) -> None:
            first.append(d)  # never settles: the process "dies" mid-message

        async def healthy(d: Delivery) -> None:
            second.append(d)
            await d.ack()

        async with transport(redis_server_module) as publisher:
            doomed = transport(redis_server_module)
            await doomed.connect()
            await doomed.subscribe("dies.Event", dies, qos=Q1, group="svc")
            for i in range(5):
                await publisher.publish("dies.Event", {"i": str(i)}, b"x", qos=Q1)
            await wait_until(lambda: len(first) == 5)
            await doomed.close()
            async with transport(redis_server_module) as survivor:
                t0 = time.monotonic()
                await survivor.subscribe("dies.Event", healthy, qos=Q1, group="svc")
                await wait_until(lambda: len(second) == 5)
                assert time.monotonic() - t0 >= 0.2  # only after the ack wait
                assert sorted(d.headers["i"] for d in second) == [str(i) for i in range(5)]
                assert all(d.delivery_count >= 2 for d in second)
                assert survivor.stats.redelivered == 5

    run(main)


def test_nack_redelivers_after_the_delay(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module, ack_wait_s=5.0) as t:
            seen: list[tuple[int, float]] = []

            async def handler(d: Delivery) -> None:
                seen.append((d.delivery_count, time.monotonic()))
                if d.delivery_count == 1:
                    await d.nack(delay_s=0.3, reason="try again")
                else:
                    await d.ack()

            await t.subscribe("nack.Event", handler, qos=Q1, group="svc")
            await t.publish("nack.Event", {}, b"x", qos=Q1)
            await wait_until(lambda: t.stats.acked == 1)  # long before ack_wait_s (5 s)
            assert [c for c, _ in seen] == [1, 2]
            assert seen[1][1] - seen[0][1] >= 0.25
            assert t.stats.nacked == 1 and t.stats.acked == 1 and t.stats.redelivered == 1

    run(main)


def test_handler_exception_nacks(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module) as t:
            counts: list[int] = []

            async def handler(d: Delivery) -> None:
                counts.append(d.delivery_count)
                if d.delivery_count == 1:
                    raise RuntimeError("flaky")
                await d.ack()

            await t.subscribe("raises.Event", handler, qos=Q1, group="svc")
            await t.publish("raises.Event", {}, b"x", qos=Q1)
            await wait_until(lambda: counts == [1, 2])

    run(main)


def test_max_deliver_dead_letters_with_the_reason(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module, max_deliver=3,
                             dlq_stream="dlq:maxdeliver") as t:
            counts: list[int] = []

            async def handler(d: Delivery) -> None:
                counts.append(d.delivery_count)
                await d.nack(reason="boom")

            await t.subscribe("poison.Event", handler, qos=Q1, group="svc")
            await t.publish("poison.Event", {"Catga-Message-Id": "7"}, b"payload", qos=Q1)
            await wait_until(lambda: t.stats.dead_lettered == 1)
            await asyncio.sleep(0.8)
            assert counts == [1, 2, 3]
            [(headers, body)] = await t.dead_letters()
            assert body == b"payload" and headers["Catga-Message-Id"] == "7"
            assert headers[H_DLQ_REASON] == "max deliveries (3) reached: boom"
            assert headers[H_DLQ_SUBJECT] == "poison.Event"
            assert headers[H_DLQ_DELIVERIES] == "3"
            assert await pending_count(redis_server_module.url, "catga:stream:poison.Event",
                                       "svc") == 0

    run(main)


def test_never_settled_is_dead_lettered_after_max_deliver(
        redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module, ack_wait_s=0.3, max_deliver=2,
                             dlq_stream="dlq:unsettled") as t:
            counts: list[int] = []

            async def handler(d: Delivery) -> None:
                counts.append(d.delivery_count)  # never settles

            await t.subscribe("stuck.Event", handler, qos=Q1, group="svc")
            await t.publish("stuck.Event", {}, b"x", qos=Q1)
            await wait_until(lambda: t.stats.dead_lettered == 1)
            assert counts == [1, 2]
            [(headers, _)] = await t.dead_letters()
            assert headers[H_DLQ_REASON].startswith("max deliveries (2) reached: not acknowledged")
            assert headers[H_DLQ_DELIVERIES] == "2"

    run(main)


def test_term_dead_letters_without_redelivery(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module, dlq_stream="dlq:term") as t:
            counts: list[int] = []

            async def handler(d: Delivery) -> None:
                counts.append(d.delivery_count)
                await d.term("malformed: no type")

            await t.subscribe("term.Event", handler, qos=Q1, group="svc")
            await t.publish("term.Event", {"a": "b"}, b"{", qos=Q1)
            await wait_until(lambda: t.stats.dead_lettered == 1)
            await asyncio.sleep(1.2)
            assert counts == [1]
            [(headers, body)] = await t.dead_letters()
            assert (headers[H_DLQ_REASON], headers["a"], body) == ("malformed: no type", "b", b"{")
            assert headers[H_DLQ_SUBJECT] == "term.Event" and headers[H_DLQ_DELIVERIES] == "1"

    run(main)


def test_group_members_share_the_load(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module) as one, transport(redis_server_module) as two:
            got: dict[str, list[str]] = {"one": [], "two": []}

            def member(name: str) -> Callable[[Delivery], Awaitable[None]]:
                async def handler(d: Delivery) -> None:
                    await asyncio.sleep(0.002)
                    got[name].append(d.headers["i"])
                    await d.ack()
                return handler

            await one.subscribe("load.Event", member("one"), qos=Q1, group="svc",
                                max_in_flight=8)
            await two.subscribe("load.Event", member("two"), qos=Q1, group="svc",
                                max_in_flight=8)
            await asyncio.gather(*(one.publish("load.Event", {"i": str(i)}, b"", qos=Q1)
                                   for i in range(300)))
            await wait_until(lambda: len(got["one"]) + len(got["two"]) >= 300)
            await asyncio.sleep(0.7)
            both = got["one"] + got["two"]
            assert sorted(both, key=int) == [str(i) for i in range(300)]  # no loss, no dups
            assert got["one"] and got["two"]

    run(main)


def test_unreachable_broker_raises_broker_unavailable() -> None:
    async def main() -> None:
        url = f"redis://127.0.0.1:{free_port()}"
        t = RedisTransport(url, connect_timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(BrokerUnavailable) as info:
            await t.connect()
        assert time.monotonic() - t0 < 5
        assert info.value.url == url and info.value.reason
        await t.close()

    run(main)


def test_subscription_survives_a_broker_restart(redis_server: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server, reconnect_budget_s=15.0) as t:
            got: list[str] = []
            pings: list[bytes] = []

            async def handler(d: Delivery) -> None:
                got.append(d.headers["i"])
                await d.ack()

            async def on_ping(d: Delivery) -> None:
                pings.append(d.body)

            await t.subscribe("restart.Event", handler, qos=Q1, group="svc")
            await t.subscribe("restart.Ping", on_ping)
            await t.publish("restart.Event", {"i": "before"}, b"", qos=Q1)
            await wait_until(lambda: got == ["before"])
            await asyncio.to_thread(redis_server.restart)
            await t.publish("restart.Event", {"i": "after"}, b"", qos=Q1)
            await wait_until(lambda: got == ["before", "after"], timeout_s=10)
            assert t.stats.disconnects >= 1 and t.stats.reconnects >= 1
            # QoS 0 resubscribes too
            await wait_until(lambda: t._down_since is None)
            for _ in range(50):
                await t.publish("restart.Ping", {}, b"p")
                await t.flush()
                if pings:
                    break
                await asyncio.sleep(0.1)
            assert pings

    run(main, timeout_s=30)


def test_arguments_are_validated() -> None:
    for kwargs, name in [({"ack_wait_s": 0}, "ack_wait_s"), ({"max_deliver": 0}, "max_deliver"),
                         ({"key_prefix": ""}, "key_prefix"), ({"dlq_stream": ""}, "dlq_stream"),
                         ({"max_stream_len": 0}, "max_stream_len"), ({"block_ms": 0}, "block_ms"),
                         ({"connect_timeout_s": -1}, "connect_timeout_s"),
                         ({"reconnect_budget_s": float("nan")}, "reconnect_budget_s")]:
        with pytest.raises(ValueError, match=name):
            RedisTransport(**kwargs)
    with pytest.raises(ValueError, match="url"):
        RedisTransport("http://localhost")

    async def main() -> None:
        t = RedisTransport()
        with pytest.raises(ValueError, match="wildcard"):
            t._keys("orders.>")
        with pytest.raises(ValueError, match="subject"):
            t._keys("")

    run(main)


def test_publish_fails_after_the_reconnect_budget_and_recovers(
        redis_server: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server, reconnect_budget_s=1.0) as t:
            await t.publish("budget.Event", {}, b"1", qos=Q1)
            redis_server.kill()
            t0 = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                await t.publish("budget.Event", {}, b"2", qos=Q1)
            assert 0.9 <= time.monotonic() - t0 < 4
            t0 = time.monotonic()
            with pytest.raises(BrokerUnavailable):  # gone longer than the budget: fails fast
                await t.publish("budget.Event", {}, b"3", qos=Q1)
            assert time.monotonic() - t0 < 0.5
            assert t.stats.publish_errors == 2 and t.stats.disconnects == 1
            await asyncio.to_thread(redis_server.start)
            await wait_until(lambda: t.stats.reconnects == 1)  # the background PING noticed
            await t.publish("budget.Event", {}, b"4", qos=Q1)
            assert t.stats.published == 2

    run(main)


def test_bad_headers_fail_only_their_own_publish(redis_server_module: BrokerProcess) -> None:
    async def main() -> None:
        async with transport(redis_server_module) as t:
            with pytest.raises(TransportError, match="reserved"):
                await t.publish("hdr.Event", {"body": "x"}, b"", qos=Q1)
            with pytest.raises(TypeError):
                await t.publish("hdr.Event", {"a": None}, b"", qos=Q1)  # type: ignore[dict-item]
            await t.publish("hdr.Event", {"a": "b"}, bytearray(b"ok"), qos=Q1)  # type: ignore[arg-type]
            await t.publish("hdr.Event", {"a": "b"}, b"ok")
            await t.flush()
            assert t.stats.published == 2 and t.stats.publish_errors == 0  # bad input: no error

    run(main)
