"""Result values: expected failures are values, not exceptions (Catga's ``CatgaResult``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ErrorCode(StrEnum):
    """Why an operation failed. ``value`` is the label used in metrics and reports."""

    HANDLER_FAILED = "handler_failed"
    """The handler raised or returned a failure."""
    TIMEOUT = "timeout"
    """The handler exceeded its timeout and was cancelled."""
    REJECTED = "rejected"
    """Backpressure: the concurrency limiter's wait queue was full."""
    CIRCUIT_OPEN = "circuit_open"
    """The handler's circuit breaker is open (or half-open with all probes taken)."""
    NO_HANDLER = "no_handler"
    """No handler is registered for the request type."""
    INVALID = "invalid"
    """The message is malformed."""


@dataclass(frozen=True, slots=True)
class Error:
    """One failure: ``code``, a human ``message`` and whether trying again may succeed."""

    code: ErrorCode
    message: str
    retryable: bool = False


class Result(Generic[T]):
    """Outcome of ``send`` / ``publish`` / a handler: a value, or an :class:`Error`.

    ``Result.OK`` is a shared success without a value (handlers may return ``None`` for it).
    """

    __slots__ = ("error", "value")
    OK: Result[Any]

    def __init__(self, value: T | None = None, error: Error | None = None) -> None:
        self.value = value
        self.error = error

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return self.error is None

    @classmethod
    def success(cls, value: T | None = None) -> Result[T]:
        """A successful result carrying ``value``."""
        return cls(value)

    @classmethod
    def failure(cls, code: ErrorCode, message: str, *, retryable: bool = False) -> Result[T]:
        """A failed result."""
        return cls(None, Error(code, message, retryable))

    def __repr__(self) -> str:
        if self.error is None:
            return f"Result.success({self.value!r})"
        return f"Result.failure({self.error.code.value}, {self.error.message!r})"


Result.OK = Result()


@dataclass(frozen=True, slots=True)
class FanoutOutcome:
    """The value of a successful ``publish``.

    Attributes:
        handlers: number of subscribed handlers.
        succeeded: handlers that finished successfully (after retries, for QoS >= 1).
        failures: ``(handler_name, error)`` for each handler that did not succeed (dropped for
            QoS 0, dead-lettered for QoS >= 1).
        duplicates: handlers skipped because they had already handled this message id (QoS 2).
        accepted_async: True when the event was accepted for background processing
            (``DeliveryMode.ASYNC``) and the counts above are not known yet.
    """

    handlers: int
    succeeded: int
    failures: tuple[tuple[str, Error], ...] = ()
    duplicates: int = 0
    accepted_async: bool = False
