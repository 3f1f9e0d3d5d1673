"""catga-bench's reference core: an asyncio CQRS mediator with Catga's semantics.

``send`` (request/response) and ``publish`` (event fan-out to 0..N handlers), QoS 0/1/2, a
concurrency limiter with a bounded queue (backpressure), per-handler circuit breakers, timeouts,
retries with backoff and jitter, idempotency (exactly-once) and dead letters.
"""

from core.behaviors import LoggingBehavior, TracingBehavior
from core.breaker import CircuitBreaker, CircuitState
from core.deadletter import DeadLetter, DeadLetterSink, InMemoryDeadLetterQueue
from core.histogram import BucketHistogram
from core.idempotency import IdempotencyStore, InMemoryIdempotencyStore
from core.ids import SnowflakeGenerator, decode
from core.limiter import ConcurrencyLimiter
from core.loopmon import LoopLagMonitor
from core.mediator import Behavior, BreakerConfig, HandlerOptions, Mediator, NextHandler
from core.messages import DeliveryMode, Event, Message, QoS, Request, new_message_id
from core.metrics import CatgaCollector
from core.result import Error, ErrorCode, FanoutOutcome, Result
from core.retry import RetryPolicy

__all__ = [
    "Behavior",
    "BreakerConfig",
    "BucketHistogram",
    "CatgaCollector",
    "CircuitBreaker",
    "CircuitState",
    "ConcurrencyLimiter",
    "DeadLetter",
    "DeadLetterSink",
    "DeliveryMode",
    "Error",
    "ErrorCode",
    "Event",
    "FanoutOutcome",
    "HandlerOptions",
    "IdempotencyStore",
    "InMemoryDeadLetterQueue",
    "InMemoryIdempotencyStore",
    "LoggingBehavior",
    "LoopLagMonitor",
    "Mediator",
    "Message",
    "NextHandler",
    "QoS",
    "Request",
    "Result",
    "RetryPolicy",
    "SnowflakeGenerator",
    "TracingBehavior",
    "decode",
    "new_message_id",
]
