"""Seeded core defects: deliberately broken variants of the core that the gate must catch.

A gate that cannot fail is worthless. Each defect here breaks one guarantee of the core; the
release-gating suite (``catga-bench gate``) proves that the case responsible for that guarantee
fails when the defect is present and passes without it (tests/chaos/test_gate_defects.py).

Defects are chosen ONLY by the environment variable ``CATGA_BENCH_DEFECTS`` (a comma list), so
they reach the Locust and ``catga-bench serve`` subprocesses of a test without any option a
user could set by mistake. This module is the only place that reads it. The broken variants of
the core objects live in :mod:`core.defects` behind factories (``new_mediator``,
``new_limiter``, ``new_endpoint``) that the core under test calls once, at construction: the
clean build gets the production classes and does no extra work per message. ``block_loop`` is
a handler wrapper (:func:`blocking_handler`).
"""

from __future__ import annotations

import os
import time
from typing import Any

from catga_bench.errors import ConfigError

ENV_VAR = "CATGA_BENCH_DEFECTS"

#: name -> one line: what is broken (and which gate case must catch it)
DEFECTS: dict[str, str] = {
    "block_loop": "a handler blocks the event loop 200 ms once a second "
                  "(caught by high_fanout: P99)",
    "breaker_disabled": "per-handler circuit breakers never open "
                        "(caught by failing_handlers: breaker targets)",
    "unbounded_queue": "the concurrency limiter's wait queue has no bound "
                       "(caught by overload: no rejections, P99)",
    "dedup_off": "QoS 2 deduplication does nothing: the idempotency store never finds a key "
                 "(caught by exactly_once: duplicates)",
    "ack_before_handling": "a QoS >= 1 message is acknowledged before it is handled and its "
                           "handler failures are dropped (caught by failing_handlers: lost, "
                           "embedded and over a broker)",
}


def parse_defects(raw: str) -> frozenset[str]:
    """Parse a comma list of defect names (blanks ignored).

    Raises:
        ConfigError: (a ValueError) an unknown name; the message lists the allowed ones.
    """
    names = frozenset(d.strip() for d in raw.split(",") if d.strip())
    unknown = sorted(names - DEFECTS.keys())
    if unknown:
        raise ConfigError(
            f"{ENV_VAR}: unknown defect {unknown[0]!r}; allowed: {', '.join(sorted(DEFECTS))}"
        )
    return names


def defects_from_env() -> frozenset[str]:
    """The seeded defects named in ``CATGA_BENCH_DEFECTS`` (empty: the clean build).

    Raises:
        ConfigError: an unknown defect name (listing the allowed names).
    """
    return parse_defects(os.environ.get(ENV_VAR, ""))


def describe() -> str:
    """The catalogue, one defect a line (for ``--help``)."""
    width = max(map(len, DEFECTS))
    return "\n".join(f"  {name:<{width}}  {text}" for name, text in DEFECTS.items())


def blocking_handler(fn: Any) -> Any:
    """Defect ``block_loop``: ``fn`` wrapped so that it blocks the event loop for 200 ms once
    a second (a synchronous sleep inside an ``async def``, as a careless handler would)."""
    try:
        from gevent import monkey

        sleep = monkey.get_original("time", "sleep")
    except ImportError:  # pragma: no cover
        sleep = time.sleep
    last = [0.0]

    async def blocking(msg: Any) -> Any:
        now = time.perf_counter()
        if now - last[0] >= 1.0:
            last[0] = now
            sleep(0.2)
        return await fn(msg)

    return blocking
