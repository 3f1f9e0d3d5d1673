"""Message identifiers: 64-bit Snowflake ids in Catga's layout.

Layout (most significant bit first), as in Catga's ``SnowflakeIdGenerator``::

    0 | 44-bit milliseconds since 2024-01-01T00:00:00Z | 8-bit worker id | 11-bit sequence

44 bits of milliseconds last ~557 years; 8 bits allow 256 workers; 11 bits give 2048 ids per
millisecond per worker (2,048,000 ids/s). When a millisecond's sequence is exhausted the generator
moves to the next millisecond (it borrows from the future rather than sleeping), so ids stay unique
and increasing; if the wall clock steps backwards the generator keeps its last timestamp.
Source: Twitter Snowflake (2010), with Catga's bit widths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z in Unix milliseconds
WORKER_BITS = 8
SEQUENCE_BITS = 11
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
_SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
_WORKER_SHIFT = SEQUENCE_BITS
_TIMESTAMP_SHIFT = SEQUENCE_BITS + WORKER_BITS


@dataclass(frozen=True, slots=True)
class SnowflakeParts:
    """The decoded fields of one id: ``timestamp_ms`` is Unix milliseconds."""

    timestamp_ms: int
    worker_id: int
    sequence: int


class SnowflakeGenerator:
    """Generates unique, time-ordered 64-bit ids for one worker.

    Not thread-safe: use one generator per thread or event loop (each with its own worker id).

    Raises:
        ValueError: ``worker_id`` outside 0..255.
    """

    __slots__ = ("_last_ms", "_sequence", "_worker_bits", "worker_id")

    def __init__(self, worker_id: int = 0) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker_id must be in 0..{MAX_WORKER_ID}, got {worker_id}")
        self.worker_id = worker_id
        self._worker_bits = worker_id << _WORKER_SHIFT
        self._last_ms = -1
        self._sequence = 0

    def next_id(self) -> int:
        """Return the next id (a positive int < 2**63)."""
        now = time.time_ns() // 1_000_000 - EPOCH_MS
        if now > self._last_ms:
            self._last_ms = now
            self._sequence = 0
        else:
            self._sequence = (self._sequence + 1) & _SEQUENCE_MASK
            if self._sequence == 0:  # exhausted this millisecond: borrow the next one
                self._last_ms += 1
        return (self._last_ms << _TIMESTAMP_SHIFT) | self._worker_bits | self._sequence


def decode(message_id: int) -> SnowflakeParts:
    """Split an id into its timestamp (Unix ms), worker id and sequence."""
    return SnowflakeParts(
        timestamp_ms=(message_id >> _TIMESTAMP_SHIFT) + EPOCH_MS,
        worker_id=(message_id >> _WORKER_SHIFT) & MAX_WORKER_ID,
        sequence=message_id & _SEQUENCE_MASK,
    )
