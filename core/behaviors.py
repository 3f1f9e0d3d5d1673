"""Built-in pipeline behaviours: logging and tracing hooks.

A behaviour is ``async def behavior(message, next) -> Result`` (see :data:`core.Behavior`); pass
them to ``Mediator(behaviors=[...])``, outermost first. They wrap every request handler and every
event handler call (the mediator compiles the chain once, at registration).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core.mediator import NextHandler
from core.messages import Message
from core.result import Result


class LoggingBehavior:
    """Logs each failed handling at WARNING (and, if ``log_success``, each success at DEBUG)
    with the message type, id and duration in ms.

    Args:
        logger: where to log (default ``catga.pipeline``).
        log_success: also log successes (costs a clock read and a log call per message).
    """

    def __init__(self, logger: logging.Logger | None = None, *, log_success: bool = False) -> None:
        self.log = logger or logging.getLogger("catga.pipeline")
        self.log_success = log_success

    async def __call__(self, message: Message, next: NextHandler) -> Result[Any]:
        t0 = time.perf_counter()
        result = await next(message)
        if result.error is not None:
            self.log.warning(
                "%s %d failed after %.3f ms: %s (%s)", type(message).__name__,
                message.message_id, (time.perf_counter() - t0) * 1000, result.error.message,
                result.error.code.value,
            )
        elif self.log_success:
            self.log.debug("%s %d handled in %.3f ms", type(message).__name__,
                           message.message_id, (time.perf_counter() - t0) * 1000)
        return result


class TracingBehavior:
    """Wraps each handling in an OpenTelemetry span named ``"<MessageType> process"``, with
    ``messaging.message.id``, ``messaging.message.conversation_id`` (correlation id) and
    ``catga.qos`` attributes, and the span status set from the ``Result`` (OpenTelemetry
    semantic conventions for messaging). Spans are no-ops until an SDK is configured.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (``pip install opentelemetry-api``).
    """

    def __init__(self, tracer_name: str = "catga") -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("TracingBehavior needs opentelemetry-api: "
                              "pip install opentelemetry-api") from exc
        self._trace = trace
        self.tracer = trace.get_tracer(tracer_name)

    async def __call__(self, message: Message, next: NextHandler) -> Result[Any]:
        attributes: dict[str, Any] = {
            "messaging.message.id": str(message.message_id),
            "catga.qos": int(message.qos),
        }
        if message.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = str(message.correlation_id)
        with self.tracer.start_as_current_span(
            f"{type(message).__name__} process", attributes=attributes
        ) as span:
            result = await next(message)
            if result.error is not None:
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR,
                                                   result.error.message))
                span.set_attribute("error.type", result.error.code.value)
            return result
