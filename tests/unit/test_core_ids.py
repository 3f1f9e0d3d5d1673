"""Snowflake ids: uniqueness, order, decode, Catga's 44/8/11 layout, sequence wrap, clock steps."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest

import core.ids as ids_mod
from core import SnowflakeGenerator, decode
from core.ids import EPOCH_MS


class FrozenNs:
    """A stand-in for ``time.time_ns`` that returns a settable instant."""

    def __init__(self, unix_ms: int) -> None:
        self.unix_ms = unix_ms

    def __call__(self) -> int:
        return self.unix_ms * 1_000_000


@pytest.fixture
def frozen(monkeypatch):
    clock = FrozenNs(EPOCH_MS + 123_456_789)
    # replace the module's view of ``time`` only, not the global time module
    monkeypatch.setattr(ids_mod, "time", SimpleNamespace(time_ns=clock))
    return clock


def test_100k_ids_are_unique_and_strictly_increasing():
    gen = SnowflakeGenerator(7)
    out = [gen.next_id() for _ in range(100_000)]
    assert len(set(out)) == len(out)
    assert all(a < b for a, b in itertools.pairwise(out))
    assert all(0 < i < 2**63 for i in (out[0], out[-1]))


def test_decode_returns_worker_and_a_recent_timestamp():
    gen = SnowflakeGenerator(42)
    parts = decode(gen.next_id())
    assert parts.worker_id == 42
    assert abs(parts.timestamp_ms - time.time() * 1000) < 1000


def test_layout_is_44_timestamp_8_worker_11_sequence_bits(frozen):
    gen = SnowflakeGenerator(255)
    first = gen.next_id()
    ms = frozen.unix_ms - EPOCH_MS
    assert first == (ms << 19) | (255 << 11) | 0
    assert first >> 11 & 0xFF == 255
    assert first >> 19 == ms
    second = gen.next_id()
    assert second == first + 1  # sequence is the low 11 bits
    assert decode(second).sequence == 1
    assert decode(second).timestamp_ms == frozen.unix_ms
    # the biggest timestamp still fits in 63 bits
    top = ((1 << 44) - 1) << 19 | (255 << 11) | 2047
    assert top < 2**63
    assert decode(top).worker_id == 255
    assert decode(top).sequence == 2047


def test_worker_id_does_not_bleed_into_neighbouring_fields(frozen):
    a = decode(SnowflakeGenerator(0).next_id())
    b = decode(SnowflakeGenerator(255).next_id())
    assert (a.worker_id, b.worker_id) == (0, 255)
    assert a.timestamp_ms == b.timestamp_ms == frozen.unix_ms
    assert a.sequence == b.sequence == 0


def test_sequence_wrap_borrows_the_next_millisecond(frozen):
    gen = SnowflakeGenerator(3)
    batch = [gen.next_id() for _ in range(2048)]  # the whole sequence space of one ms
    assert [decode(i).sequence for i in batch] == list(range(2048))
    assert {decode(i).timestamp_ms for i in batch} == {frozen.unix_ms}
    borrowed = gen.next_id()
    assert decode(borrowed).timestamp_ms == frozen.unix_ms + 1
    assert decode(borrowed).sequence == 0
    assert borrowed > batch[-1]
    after = gen.next_id()  # still in the frozen ms: continues on the borrowed one
    assert decode(after).timestamp_ms == frozen.unix_ms + 1
    assert decode(after).sequence == 1
    # when the real clock moves past the borrowed ms, the sequence restarts
    frozen.unix_ms += 5
    later = gen.next_id()
    assert decode(later).timestamp_ms == frozen.unix_ms
    assert decode(later).sequence == 0
    assert later > after


def test_clock_stepping_backwards_keeps_ids_increasing(frozen):
    gen = SnowflakeGenerator(1)
    a = gen.next_id()
    frozen.unix_ms -= 1000
    b = gen.next_id()
    assert b > a
    assert decode(b).timestamp_ms == decode(a).timestamp_ms


@pytest.mark.parametrize("worker", [-1, 256, 1000])
def test_worker_id_out_of_range_is_rejected(worker):
    with pytest.raises(ValueError):
        SnowflakeGenerator(worker)


def test_worker_255_is_the_maximum():
    assert SnowflakeGenerator(255).worker_id == 255
