"""Handler profiles: what the system under test's handlers do (fast, cpu, io, slow, failing).

A profile is a factory: ``profile.build(ctx, index)`` returns the ``async def handler(message)``
that the core registers. Handlers report each successful handling to the run's ledger through
``ctx.handled(stream_index, handler_index, seq)``, so lost and duplicated messages are counted
where the work happens.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from catga_bench.errors import ConfigError
from catga_bench.workload.seeds import fail_every, slowdown_factor
from core import BreakerConfig, CircuitState, Result


class HandlerContext(Protocol):
    """What a built handler may use from the run (implemented by the embedded driver)."""

    def handled(self, stream: int, handler: int, seq: int) -> None:
        """Record that ``handler`` of ``stream`` handled message ``seq`` successfully."""
        ...

    def failed(self, stream: int, handler: int, seq: int) -> None:
        """Record that the handler failed this message on purpose (known, not lost)."""
        ...

    def elapsed_s(self) -> float:
        """Seconds since the run started (for outage windows)."""
        ...

    def breaker_state(self, stream: int, handler: int) -> CircuitState | None:
        """State of the handler's own breaker now, if it has one."""
        ...

    def called_while_open(self, stream: int, handler: int) -> None:
        """Record a breaker violation: the handler ran while its breaker was open."""
        ...


HandlerFn = Callable[[Any], Awaitable[Any]]


class Profile(Protocol):
    """Builds one handler. ``kind`` names the profile in reports."""

    kind: str

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn: ...


@dataclass(frozen=True, slots=True)
class Fast:
    """Finishes without suspending (no ``await`` that yields): the cheapest possible handler."""

    kind: str = "fast"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        handled = ctx.handled

        async def fast(msg: Any) -> None:
            handled(stream, index, msg.seq)

        return fast


@dataclass(frozen=True, slots=True)
class Cpu:
    """Busy for ``cost_us`` microseconds of CPU, without suspending (times the seeded
    ``CATGA_BENCH_SLOWDOWN``; failing at ``CATGA_BENCH_FAIL_RATIO``: :mod:`.seeds`)."""

    cost_us: float = 50.0
    kind: str = "cpu"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        handled = ctx.handled
        cost_s = self.cost_us / 1e6 * slowdown_factor()
        perf = time.perf_counter

        async def cpu(msg: Any) -> None:
            end = perf() + cost_s
            while perf() < end:
                pass
            handled(stream, index, msg.seq)

        return _seeded_failures(ctx, stream, index, cpu)


@dataclass(frozen=True, slots=True)
class Io:
    """Waits ``latency_ms`` (an I/O call: a database, another service) and finishes (times the
    seeded ``CATGA_BENCH_SLOWDOWN``; failing at ``CATGA_BENCH_FAIL_RATIO``: :mod:`.seeds`)."""

    latency_ms: float = 2.0
    kind: str = "io"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        handled = ctx.handled
        delay_s = self.latency_ms / 1000.0 * slowdown_factor()

        async def io(msg: Any) -> None:
            await asyncio.sleep(delay_s)
            handled(stream, index, msg.seq)

        return _seeded_failures(ctx, stream, index, io)


def _seeded_failures(ctx: HandlerContext, stream: int, index: int, fn: HandlerFn) -> HandlerFn:
    """``fn`` itself when ``CATGA_BENCH_FAIL_RATIO`` is unset (no cost per message); else ``fn``
    failing every 1/ratio-th call with a non-retryable ``HANDLER_FAILED`` (a seeded error)."""
    every = fail_every()
    if not every:
        return fn
    from core import ErrorCode

    calls = 0

    async def seeded(msg: Any) -> Result[Any] | None:
        nonlocal calls
        calls += 1
        if calls % every == 0:
            ctx.failed(stream, index, msg.seq)
            return Result.failure(ErrorCode.HANDLER_FAILED, "seeded failure "
                                  "(CATGA_BENCH_FAIL_RATIO)", retryable=False)
        await fn(msg)
        return None

    return seeded


@dataclass(frozen=True, slots=True)
class Slow:
    """Takes ``seconds`` (default 5 s): meant to be cut by a handler timeout."""

    seconds: float = 5.0
    kind: str = "slow"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        handled = ctx.handled
        seconds = self.seconds

        async def slow(msg: Any) -> None:
            await asyncio.sleep(seconds)
            handled(stream, index, msg.seq)

        return slow


@dataclass(frozen=True, slots=True)
class Failing:
    """Fails during an outage window ``[outage_start_s, outage_end_s)`` of the run, and at
    ``error_rate`` (0..1, deterministic: every 1/rate-th call) outside it. A failure is a
    retryable ``Result`` (``ErrorCode.HANDLER_FAILED``), as a flaky dependency would give."""

    outage_start_s: float | None = None
    outage_end_s: float | None = None
    error_rate: float = 0.0
    latency_ms: float = 0.0
    kind: str = "failing"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        from core import ErrorCode

        handled, failed, elapsed = ctx.handled, ctx.failed, ctx.elapsed_s
        start, end = self.outage_start_s, self.outage_end_s
        every = round(1 / self.error_rate) if self.error_rate > 0 else 0
        delay_s = self.latency_ms / 1000.0
        calls = 0

        async def failing(msg: Any) -> Result[Any] | None:
            nonlocal calls
            calls += 1
            if ctx.breaker_state(stream, index) is CircuitState.OPEN:
                ctx.called_while_open(stream, index)
            if delay_s:
                await asyncio.sleep(delay_s)
            t = elapsed()
            in_outage = start is not None and end is not None and start <= t < end
            if in_outage or (every and calls % every == 0):
                failed(stream, index, msg.seq)
                return Result.failure(ErrorCode.HANDLER_FAILED, "dependency unavailable",
                                      retryable=True)
            handled(stream, index, msg.seq)
            return None

        return failing


@dataclass(frozen=True, slots=True)
class UserHandler:
    """Your own ``async def handler(msg)``, run as the core's handler (the in-process system
    under test: ``Stream("OrderPlaced", handlers=[my_handler, ...])``).

    ``msg`` is the stream's generated message: a :class:`~core.Event` (or
    :class:`~core.Request`) named after the stream, with its ``seq`` (int), ``message_id``,
    ``correlation_id`` and ``qos``. What the handler does is recorded where it happens:
    returning a failed :class:`~core.Result` or raising counts as a known failure of that
    attempt (the core retries it at QoS >= 1 and dead-letters it when attempts run out);
    anything else — ``None``, a value, a successful ``Result`` — counts as handled. The
    return value and the exception go on to the core unchanged.
    """

    fn: HandlerFn
    kind: str = "user"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        fn, handled, failed = self.fn, ctx.handled, ctx.failed

        async def user(msg: Any) -> Any:
            try:
                result = await fn(msg)
            except Exception:
                failed(stream, index, msg.seq)
                raise
            if isinstance(result, Result) and result.error is not None:
                failed(stream, index, msg.seq)
            else:
                handled(stream, index, msg.seq)
            return result

        return user


@dataclass(frozen=True, slots=True)
class External:
    """A handler that runs inside a black-box system: one output operation of its AsyncAPI
    document (a ledger column: the operation's output for a message is its handling)."""

    kind: str = "external"

    def build(self, ctx: HandlerContext, stream: int, index: int) -> HandlerFn:
        raise ConfigError("an external handler runs in the system under test, not in the "
                          "reference core (use --sut asyncapi with its --sut-spec)")


def user_handlers(fns: Sequence[HandlerFn | HandlerSpec], stream: str) -> list[HandlerSpec]:
    """Handler specs for a stream's ``handlers`` list: a :class:`HandlerSpec` as it is, your own
    ``async def`` wrapped in a :class:`UserHandler` named after the function (``name_2``,
    ``name_3``, … when a name repeats).

    Raises:
        ConfigError: an entry that is neither (the message names the stream and the entry).
    """
    specs: list[HandlerSpec] = []
    seen: dict[str, int] = {}
    for i, h in enumerate(fns):
        if isinstance(h, HandlerSpec):
            specs.append(h)
            continue
        if not inspect.iscoroutinefunction(h):
            raise ConfigError(f"Stream {stream!r}: handlers[{i}] must be a HandlerSpec or an "
                            f"async def handler(msg), got {h!r}")
        base = getattr(h, "__name__", f"handler{i}")
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        specs.append(HandlerSpec(name, UserHandler(h)))
    return specs


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One handler of a stream: its profile, and the resilience settings the core applies."""

    name: str
    profile: Profile
    timeout_s: float | None = None
    breaker: BreakerConfig | None = None


def mixed(count: int, *, cpu_us: float = 20.0, io_ms: float = 2.0,
          fast: float = 0.8, cpu: float = 0.1, io: float = 0.1) -> list[HandlerSpec]:
    """``count`` handlers of mixed cost, spread evenly: a share ``fast`` finish at once, ``cpu``
    burn ``cpu_us`` each, ``io`` wait ``io_ms`` each (shares are normalised)."""
    if count < 0:
        raise ValueError(f"handler count must be >= 0, got {count}")
    total = fast + cpu + io
    kinds: list[Profile] = []
    acc = {"fast": 0.0, "cpu": 0.0, "io": 0.0}
    shares = {"fast": fast / total, "cpu": cpu / total, "io": io / total}
    makers: dict[str, Profile] = {"fast": Fast(), "cpu": Cpu(cpu_us), "io": Io(io_ms)}
    for _ in range(count):  # smooth weighted round-robin: even spread, deterministic
        for k in acc:
            acc[k] += shares[k]
        pick = max(acc, key=acc.__getitem__)
        acc[pick] -= 1.0
        kinds.append(makers[pick])
    return [HandlerSpec(f"h{i:03d}_{p.kind}", p) for i, p in enumerate(kinds)]


def uniform(count: int, profile: Profile, prefix: str = "h") -> list[HandlerSpec]:
    """``count`` handlers with the same profile."""
    return [HandlerSpec(f"{prefix}{i:03d}_{profile.kind}", profile) for i in range(count)]


__all__ = ["Cpu", "External", "Failing", "Fast", "HandlerContext", "HandlerSpec", "Io",
           "Profile", "Slow", "UserHandler", "mixed", "uniform", "user_handlers"]
