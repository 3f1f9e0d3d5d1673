"""A team's own code, as it would be in their repository: two event handlers and the mediator
they configure for production (a bulkhead of 64 in flight, 256 waiting; 3 attempts)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from core import ConcurrencyLimiter, ErrorCode, Mediator, Result, RetryPolicy


async def reserve_stock(msg: Any) -> None:
    """Talks to the inventory service (about 2 ms)."""
    await asyncio.sleep(0.002)


async def charge_card(msg: Any) -> Result[None] | None:
    """The payment provider declines about 1 card in 200: a known failure, not a loss."""
    await asyncio.sleep(0.001)
    if random.random() < 0.005:
        return Result.failure(ErrorCode.HANDLER_FAILED, "card declined")
    return None


def production_mediator() -> Mediator:
    return Mediator(limiter=ConcurrencyLimiter(64, 256, name="orders"),
                    retry=RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.2))
