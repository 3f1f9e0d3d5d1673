"""core.defects: the factories build the production classes unless a defect of theirs is named,
and the production classes take no ``defects`` at all (what each defect does: test_defects.py)."""

from __future__ import annotations

import inspect

import pytest

from core import ConcurrencyLimiter, Mediator
from core.defects import (
    AckFirstEndpoint,
    DefectiveMediator,
    ForgetfulStore,
    NeverOpenBreaker,
    UnboundedQueueLimiter,
    new_endpoint,
    new_limiter,
    new_mediator,
)
from core.transport.endpoint import MediatorEndpoint
from core.transport.envelope import TypeRegistry

OTHERS = frozenset({"block_loop"})  # a defect none of the core factories knows


@pytest.mark.parametrize("cls", [Mediator, ConcurrencyLimiter, MediatorEndpoint])
def test_production_classes_take_no_defects(cls: type) -> None:
    assert "defects" not in inspect.signature(cls).parameters


def test_factories_build_the_production_classes_without_their_defects() -> None:
    assert type(new_limiter(2, 3, defects=OTHERS)) is ConcurrencyLimiter
    assert type(new_mediator(OTHERS | {"unbounded_queue"})) is Mediator
    assert type(new_mediator()) is Mediator
    registry = TypeRegistry([])
    ep = new_endpoint(Mediator(), None, registry, defects=OTHERS)  # type: ignore[arg-type]
    assert type(ep) is MediatorEndpoint
    # defects=None takes the mediator's: a production mediator has none
    assert type(new_endpoint(Mediator(), None, registry)) is MediatorEndpoint  # type: ignore[arg-type]


def test_factories_pick_the_variants() -> None:
    limiter = new_limiter(1, 5, name="x", defects=frozenset({"unbounded_queue"}))
    assert isinstance(limiter, UnboundedQueueLimiter) and limiter.name == "x"
    m = new_mediator(frozenset({"dedup_off", "breaker_disabled"}), fanout_concurrency=7)
    assert isinstance(m, DefectiveMediator) and m.fanout_concurrency == 7
    assert isinstance(m.idempotency, ForgetfulStore) and m.breaker_class is NeverOpenBreaker
    assert "publish" not in vars(m)  # ack_before_handling not asked for
    acking = new_mediator(frozenset({"ack_before_handling"}))
    assert vars(acking)["publish"] == acking.publish_ack_first  # type: ignore[attr-defined]
    ep = new_endpoint(acking, None, TypeRegistry([]), group="g",  # type: ignore[arg-type]
                      max_in_flight=3)
    assert isinstance(ep, AckFirstEndpoint) and (ep.group, ep.max_in_flight) == ("g", 3)


def test_variants_validate_like_the_production_classes() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        new_limiter(1, -1, defects=frozenset({"unbounded_queue"}))
    with pytest.raises(ValueError, match="fanout_concurrency"):
        new_mediator(frozenset({"dedup_off"}), fanout_concurrency=0)
    with pytest.raises(ValueError, match="max_in_flight"):
        new_endpoint(Mediator(), None, TypeRegistry([]),  # type: ignore[arg-type]
                     defects=frozenset({"ack_before_handling"}), max_in_flight=0)
