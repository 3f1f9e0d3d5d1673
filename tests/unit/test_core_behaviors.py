"""User pipeline behaviours (onion): order, what they see, short-circuit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from core import ErrorCode, Event, Mediator, QoS, Request, Result


@dataclass(slots=True)
class Cmd(Request):
    x: int = 0


@dataclass(slots=True)
class Evt(Event):
    x: int = 0


def run(coro):
    return asyncio.run(coro)


def recording(tag: str, log: list[tuple], *, suspend: bool = True):
    async def behavior(message, nxt):
        log.append((tag, "before", message))
        if suspend:
            await asyncio.sleep(0)
        result = await nxt(message)
        log.append((tag, "after", result.value if result.ok else result.error.code))
        return result

    return behavior


def test_two_behaviours_wrap_send_outermost_first():
    log: list[tuple] = []

    async def handler(cmd):
        log.append(("handler", "run", cmd))
        await asyncio.sleep(0)
        return cmd.x + 1

    async def main():
        m = Mediator(behaviors=[recording("outer", log), recording("inner", log)])
        m.register(Cmd, handler)
        cmd = Cmd(x=41)
        return cmd, await m.send(cmd)

    cmd, r = run(main())
    assert r.value == 42
    assert log == [
        ("outer", "before", cmd),
        ("inner", "before", cmd),
        ("handler", "run", cmd),
        ("inner", "after", 42),  # the handler's plain value arrives as a Result
        ("outer", "after", 42),
    ]


def test_behaviours_wrap_each_event_handler_in_order():
    log: list[tuple] = []

    async def first(_e):
        log.append(("first", "run", None))

    async def second(_e):
        log.append(("second", "run", None))
        return Result.failure(ErrorCode.INVALID, "rejected by handler")

    async def main():
        m = Mediator(behaviors=[recording("outer", log, suspend=False),
                                recording("inner", log, suspend=False)])
        m.subscribe(Evt, first, name="first")
        m.subscribe(Evt, second, name="second")
        e = Evt(x=1)
        return e, await m.publish(e)

    e, r = run(main())
    assert r.value.succeeded == 1
    assert [(n, err.code) for n, err in r.value.failures] == [("second", ErrorCode.INVALID)]
    assert log == [
        ("outer", "before", e),
        ("inner", "before", e),
        ("first", "run", None),
        ("inner", "after", None),
        ("outer", "after", None),
        ("outer", "before", e),
        ("inner", "before", e),
        ("second", "run", None),
        ("inner", "after", ErrorCode.INVALID),
        ("outer", "after", ErrorCode.INVALID),
    ]


def test_handler_exception_inside_behaviours_still_becomes_a_failed_result():
    log: list[tuple] = []

    async def boom(_c):
        raise RuntimeError("boom")

    async def main():
        m = Mediator(behaviors=[recording("outer", log)])
        m.register(Cmd, boom)
        m.subscribe(Evt, boom)
        return (await m.send(Cmd(qos=QoS.AT_MOST_ONCE)),
                await m.publish(Evt(qos=QoS.AT_MOST_ONCE)))

    sent, published = run(main())
    assert sent.error.code is ErrorCode.HANDLER_FAILED
    assert "boom" in sent.error.message
    assert published.value.failures[0][1].code is ErrorCode.HANDLER_FAILED
    assert [(tag, when) for tag, when, _ in log][:1] == [("outer", "before")]
    assert sum(1 for _, when, _ in log if when == "before") == 2  # wrapped both handlers


def test_behaviour_can_short_circuit_the_handler():
    calls = 0

    async def handler(_c):
        nonlocal calls
        calls += 1

    async def deny(message, nxt):
        if message.x < 0:
            return Result.failure(ErrorCode.INVALID, "negative")
        return await nxt(message)

    async def main():
        m = Mediator(behaviors=[deny])
        m.register(Cmd, handler)
        return await m.send(Cmd(x=-1)), await m.send(Cmd(x=1))

    denied, allowed = run(main())
    assert denied.error.code is ErrorCode.INVALID
    assert allowed.ok
    assert calls == 1
