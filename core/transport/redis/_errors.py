"""Connection loss in RedisTransport: which failures mean "the broker is gone", and how
long a loop waits before it tries again (bounded exponential backoff, 50 ms to 2 s)."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.transport.base import BrokerUnavailable

CONN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, BrokerUnavailable,
)
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0


def is_nogroup(exc: BaseException) -> bool:
    """The broker lost a consumer group (restarted without its data, or the stream expired)."""
    return str(exc).startswith("NOGROUP")
