"""StreamLedger: lost / duplicated / known-failed accounting per (message, handler)."""

from __future__ import annotations

from catga_bench.generator.ledger import _CHUNK, StreamLedger


def _sent(ledger: StreamLedger, n: int, *, ack: bool = True) -> list[int]:
    seqs = [ledger.record_sent() for _ in range(n)]
    if ack:
        for s in seqs:
            ledger.record_acked(s)
    return seqs


def test_sequence_numbers_are_dense_from_zero() -> None:
    ledger = StreamLedger(["a"])
    assert _sent(ledger, 5) == [0, 1, 2, 3, 4]
    assert ledger.sent == 5


def test_everything_handled_once_is_clean() -> None:
    ledger = StreamLedger(["a", "b"])
    for s in _sent(ledger, 10):
        ledger.record_handled(0, s)
        ledger.record_handled(1, s)
    summ = ledger.summary()
    assert (summ.sent, summ.acked, summ.handled) == (10, 10, 20)
    assert (summ.lost, summ.duplicates, summ.known_failures) == (0, 0, 0)


def test_acked_but_never_handled_is_lost_per_handler() -> None:
    ledger = StreamLedger(["a", "b"])
    for s in _sent(ledger, 10):
        ledger.record_handled(0, s)
        if s not in (3, 7):
            ledger.record_handled(1, s)
    summ = ledger.summary()
    assert summ.lost == 2  # two (message, handler b) pairs
    assert summ.handled == 18
    assert summ.handled_by == {"a": 10, "b": 8}


def test_known_failure_is_not_lost() -> None:
    ledger = StreamLedger(["a"])
    for s in _sent(ledger, 4):
        if s == 2:
            ledger.record_failed(0, s)
        else:
            ledger.record_handled(0, s)
    summ = ledger.summary()
    assert summ.lost == 0
    assert summ.known_failures == 1
    assert summ.failed_by == {"a": 1}


def test_failed_then_handled_on_retry_counts_both_but_is_not_lost() -> None:
    ledger = StreamLedger(["a"])
    (s,) = _sent(ledger, 1)
    ledger.record_failed(0, s)
    ledger.record_handled(0, s)
    summ = ledger.summary()
    assert (summ.lost, summ.handled, summ.known_failures, summ.duplicates) == (0, 1, 1, 0)


def test_unacked_unhandled_message_is_not_lost() -> None:
    ledger = StreamLedger(["a"])
    _sent(ledger, 3, ack=False)
    acked = ledger.record_sent()
    ledger.record_acked(acked)
    summ = ledger.summary()
    assert summ.sent == 4
    assert summ.acked == 1
    assert summ.lost == 1  # only the acknowledged one


def test_duplicates_count_extra_handlings() -> None:
    ledger = StreamLedger(["a", "b"])
    seqs = _sent(ledger, 5)
    for s in seqs:
        ledger.record_handled(0, s)
        ledger.record_handled(1, s)
    ledger.record_handled(0, 1)  # +1
    ledger.record_handled(1, 4)
    ledger.record_handled(1, 4)  # +2
    summ = ledger.summary()
    assert summ.duplicates == 3
    assert summ.handled == 10  # handled counts messages, not handlings
    assert summ.handled_by == {"a": 5, "b": 5}


def test_growth_across_the_chunk_boundary() -> None:
    names = ["a", "b"]
    ledger = StreamLedger(names)
    n = _CHUNK + 4_464  # 70_000: two chunks
    assert _CHUNK == 65_536
    seqs = _sent(ledger, n)
    assert seqs[-1] == n - 1
    unhandled_b = {_CHUNK - 1, _CHUNK, n - 1}
    for s in seqs:
        ledger.record_handled(0, s)
        if s not in unhandled_b:
            ledger.record_handled(1, s)
    ledger.record_handled(0, _CHUNK)  # duplicate just past the boundary
    ledger.record_failed(1, n - 1)  # known failure at the very end
    summ = ledger.summary()
    assert summ.sent == summ.acked == n
    assert summ.lost == 2  # seq 65535 and 65536 for handler b
    assert summ.duplicates == 1
    assert summ.known_failures == 1
    assert summ.handled_by == {"a": n, "b": n - 3}


def test_handled_count_saturates_at_255() -> None:
    ledger = StreamLedger(["a"])
    (s,) = _sent(ledger, 1)
    for _ in range(300):
        ledger.record_handled(0, s)
    summ = ledger.summary()
    assert summ.duplicates == 254  # 255 recorded handlings, one of them legitimate
    assert summ.handled == 1
    assert summ.lost == 0


def test_summary_per_handler_counts() -> None:
    ledger = StreamLedger(["fast", "io", "cpu"])
    for s in _sent(ledger, 6):
        ledger.record_handled(0, s)
        if s % 2:
            ledger.record_handled(1, s)
        else:
            ledger.record_failed(1, s)
        if s < 2:
            ledger.record_handled(2, s)
    summ = ledger.summary()
    assert summ.handled_by == {"fast": 6, "io": 3, "cpu": 2}
    assert summ.failed_by == {"fast": 0, "io": 3, "cpu": 0}
    assert summ.handled == 11
    assert summ.known_failures == 3
    assert summ.lost == 4  # cpu: seq 2..5


def test_empty_ledger_summary() -> None:
    summ = StreamLedger(["a"]).summary()
    assert (summ.sent, summ.acked, summ.handled, summ.lost, summ.duplicates) == (0, 0, 0, 0, 0)
    assert summ.handled_by == {"a": 0}
