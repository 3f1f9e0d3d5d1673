"""The ledger: every message sent, acknowledged and handled, per handler.

Jepsen's "total queue" check, applied per (message, handler): a message is **lost** when it was
acknowledged (publish/send returned success) but some handler that should have handled it never
did and never reported a known failure; it is **duplicated** when a handler handled it more than
once. Counts are kept in ``bytearray`` columns indexed by the stream's sequence number (one byte
per message per handler, saturating at 255), so recording is an index and an increment.
"""

from __future__ import annotations

from dataclasses import dataclass

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """Totals for one stream (all counts are messages, or message x handler pairs)."""

    sent: int
    acked: int
    handled: int
    lost: int
    duplicates: int
    known_failures: int
    handled_by: dict[str, int]
    failed_by: dict[str, int]


class StreamLedger:
    """Ledger of one stream with a fixed set of handlers (names in order).

    Not thread-safe: record from the core's loop only.
    """

    __slots__ = ("_acked", "_capacity", "_failed", "_handled", "handler_names", "sent")

    def __init__(self, handler_names: list[str]) -> None:
        self.handler_names = handler_names
        self.sent = 0
        self._capacity = 0
        self._acked = bytearray()
        self._handled = [bytearray() for _ in handler_names]
        self._failed = [bytearray() for _ in handler_names]

    def record_sent(self) -> int:
        """Allocate the next sequence number (0, 1, ...) for a message about to be sent."""
        seq = self.sent
        if seq >= self._capacity:
            self._capacity += _CHUNK
            grow = bytes(_CHUNK)
            self._acked += grow
            for col in self._handled:
                col += grow
            for col in self._failed:
                col += grow
        self.sent = seq + 1
        return seq

    def record_acked(self, seq: int) -> None:
        """publish/send returned success for ``seq``."""
        self._acked[seq] = 1

    def record_handled(self, handler: int, seq: int) -> int:
        """Handler number ``handler`` finished ``seq`` successfully; returns how many times it
        has now (2 = this was its first duplicate; saturates at 255)."""
        col = self._handled[handler]
        v = col[seq]
        if v < 255:
            v += 1
            col[seq] = v
        return v

    def record_failed(self, handler: int, seq: int) -> None:
        """Handler number ``handler`` failed ``seq`` in a known, reported way (dropped at QoS 0,
        dead-lettered, timed out, or rejected by its breaker): not a loss."""
        self._failed[handler][seq] = 1

    def lost_seqs(self, limit: int) -> list[tuple[int, list[str]]]:
        """The first ``limit`` lost messages: ``(seq, names of the handlers that never handled
        it)`` in sequence order (O(sent x handlers); run once at the end)."""
        n = self.sent
        out: list[tuple[int, list[str]]] = []
        cols = list(zip(self.handler_names, self._handled, self._failed, strict=True))
        if limit <= 0 or all(h[:n].count(0) == 0 for _, h, _f in cols):
            return out
        acked = self._acked
        for seq in range(n):
            if not acked[seq]:
                continue
            missing = [name for name, h, f in cols if not h[seq] and not f[seq]]
            if missing:
                out.append((seq, missing))
                if len(out) >= limit:
                    break
        return out

    def summary(self) -> LedgerSummary:
        """Count lost and duplicated pairs (O(sent x handlers), run once at the end)."""
        n = self.sent
        acked = self._acked[:n]
        lost = dup = handled = known = 0
        handled_by: dict[str, int] = {}
        failed_by: dict[str, int] = {}
        for name, hcol, fcol in zip(self.handler_names, self._handled, self._failed,
                                    strict=True):
            h = hcol[:n]
            f = fcol[:n]
            ok = n - h.count(0)
            handled_by[name] = ok
            failed_by[name] = n - f.count(0)
            handled += ok
            known += failed_by[name]
            if ok < n:  # some never handled: lost if acked and not a known failure
                lost += sum(1 for a, c, k in zip(acked, h, f, strict=True)
                            if a and not c and not k)
            if any(c > 1 for c in h):
                dup += sum(c - 1 for c in h if c > 1)
        return LedgerSummary(n, n - acked.count(0), handled, lost, dup, known, handled_by,
                             failed_by)
