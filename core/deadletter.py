"""Dead-letter queue: where messages go when they cannot be processed, with the reason."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Protocol

from core.messages import Message
from core.result import Error


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered delivery.

    Attributes:
        message: the message itself (kept whole: nothing is lost).
        handler: name of the handler that could not process it ("" for the message as a whole).
        error: the last error.
        attempts: how many times it was tried.
        at_unix_s: when it was dead-lettered (Unix seconds).
    """

    message: Message
    handler: str
    error: Error
    attempts: int
    at_unix_s: float = field(default_factory=time.time)


class DeadLetterSink(Protocol):
    """The seam for dead-letter destinations (in-memory here; a broker subject/stream later)."""

    def put(self, letter: DeadLetter) -> None:
        """Store one dead letter; must not raise."""
        ...


class InMemoryDeadLetterQueue:
    """Keeps the newest ``max_entries`` dead letters and counts every one by reason.

    Attributes:
        total: dead letters ever put. by_reason: count per ``ErrorCode`` value.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.letters: deque[DeadLetter] = deque(maxlen=max_entries)
        self.total = 0
        self.by_reason: Counter[str] = Counter()

    def put(self, letter: DeadLetter) -> None:
        self.letters.append(letter)
        self.total += 1
        self.by_reason[letter.error.code.value] += 1
