"""Routing strategies (core.cluster.routing): no broker, no clock."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core.cluster.routing import (
    STRATEGY_NAMES,
    ConsistentHash,
    LeastLoaded,
    LocalFirst,
    NodeInfo,
    NoNodesAvailable,
    Random,
    RoundRobin,
    RoutingStrategy,
    make_strategy,
)

REPO = Path(__file__).resolve().parents[2]


def make_nodes(n: int, prefix: str = "node-") -> list[NodeInfo]:
    return [NodeInfo(f"{prefix}{i}", f"catga.node.{prefix}{i}") for i in range(n)]


def mapping(ring: ConsistentHash, keys: list[str], nodes: list[NodeInfo]) -> dict[str, str]:
    return {key: ring.choose(key, nodes).node_id for key in keys}


KEYS = [f"order-{i}" for i in range(20_000)]


# -- round robin / random ----------------------------------------------------------------------


def test_round_robin_cycles_in_id_order_whatever_the_listing_order() -> None:
    nodes = make_nodes(3)
    rr = RoundRobin()
    picks = [rr.choose(None, nodes).node_id for _ in range(7)]
    assert picks == ["node-0", "node-1", "node-2"] * 2 + ["node-0"]
    rr2 = RoundRobin()
    shuffled = [nodes[2], nodes[0], nodes[1]]
    assert [rr2.choose("k", shuffled).node_id for _ in range(3)] == picks[:3]


def test_random_seeded_is_deterministic_and_covers_every_node() -> None:
    nodes = make_nodes(5)
    a = [Random(seed=7).choose(None, nodes)]  # a fresh generator each time: same first pick
    assert a * 3 == [Random(seed=7).choose(None, nodes) for _ in range(3)]
    r1, r2 = Random(seed=42), Random(seed=42)
    seq1 = [r1.choose(None, nodes).node_id for _ in range(500)]
    seq2 = [r2.choose(None, list(reversed(nodes))).node_id for _ in range(500)]
    assert seq1 == seq2  # same seed, same sequence, listing order irrelevant
    counts = Counter(seq1)
    assert set(counts) == {n.node_id for n in nodes}
    assert min(counts.values()) > 500 / 5 * 0.6
    assert seq1 != [Random(seed=43).choose(None, nodes).node_id for _ in range(500)]


# -- consistent hash ---------------------------------------------------------------------------


def test_consistent_hash_same_key_same_node_across_rings_and_orders() -> None:
    nodes = make_nodes(6)
    keys = KEYS[:2000]
    reference = mapping(ConsistentHash(), keys, nodes)
    for order in itertools.islice(itertools.permutations(nodes), 0, 720, 97):
        assert mapping(ConsistentHash(), keys, list(order)) == reference
    ring = ConsistentHash()
    assert mapping(ring, keys, nodes) == mapping(ring, keys, nodes[::-1]) == reference
    assert ring.rebuilds == 1  # same id set: the ring is built once


def test_consistent_hash_is_stable_across_processes() -> None:
    """Another interpreter with a different hash seed builds the same ring."""
    nodes = make_nodes(8)
    keys = KEYS[:500] + list(range(100))
    here = {str(k): ConsistentHash().choose(k, nodes).node_id for k in keys}
    script = (
        "import json, sys\n"
        "from core.cluster.routing import ConsistentHash, NodeInfo\n"
        "nodes = [NodeInfo(f'node-{i}', 'x') for i in range(8)][::-1]\n"
        "keys = json.loads(sys.stdin.read())\n"
        "ring = ConsistentHash()\n"
        "print(json.dumps({str(k): ring.choose(k, nodes).node_id for k in keys}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(keys), env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == here


def test_consistent_hash_int_keys_route_like_their_text() -> None:
    nodes = make_nodes(5)
    ring = ConsistentHash()
    assert all(ring.choose(i, nodes) == ring.choose(str(i), nodes) for i in range(200))


def test_consistent_hash_distribution_is_even_over_10_nodes() -> None:
    nodes = make_nodes(10)
    counts = Counter(mapping(ConsistentHash(), KEYS, nodes).values())
    mean = len(KEYS) / len(nodes)
    assert set(counts) == {n.node_id for n in nodes}
    for node_id, count in counts.items():
        assert abs(count / mean - 1) <= 0.35, (node_id, count, mean)


def test_consistent_hash_join_moves_about_one_eleventh_all_to_the_new_node() -> None:
    ring = ConsistentHash()
    ten = make_nodes(10)
    eleven = [*ten, NodeInfo("node-10", "catga.node.node-10")]
    before, after = mapping(ring, KEYS, ten), mapping(ring, KEYS, eleven)
    moved = [k for k in KEYS if before[k] != after[k]]
    fraction = len(moved) / len(KEYS)
    assert 0.05 <= fraction <= 0.15, fraction
    assert all(after[k] == "node-10" for k in moved)
    # ... and the new node got nothing that did not move.
    assert {k for k in KEYS if after[k] == "node-10"} == set(moved)
    assert ring.rebuilds == 2


def test_consistent_hash_leave_moves_only_the_leaving_nodes_keys() -> None:
    ring = ConsistentHash()
    ten = make_nodes(10)
    nine = [n for n in ten if n.node_id != "node-3"]
    before, after = mapping(ring, KEYS, ten), mapping(ring, KEYS, nine)
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == "node-3"}
    assert 0.05 <= len(moved) / len(KEYS) <= 0.15
    # The orphaned keys spread over several survivors instead of all going to one neighbour.
    assert len({after[k] for k in moved}) >= 5


def test_consistent_hash_load_change_does_not_rebuild_and_returns_current_info() -> None:
    ring = ConsistentHash()
    nodes = make_nodes(4)
    first = ring.choose("user-1", nodes)
    busier = [NodeInfo(n.node_id, n.address, load=0.9) for n in nodes]
    chosen = ring.choose("user-1", busier)
    assert chosen.node_id == first.node_id and chosen.load == 0.9
    assert ring.rebuilds == 1


def test_consistent_hash_keyless_uses_fallback_and_rejects_bad_vnodes() -> None:
    nodes = make_nodes(3)
    ring = ConsistentHash(keyless=RoundRobin())
    assert [ring.choose(None, nodes).node_id for _ in range(3)] == ["node-0", "node-1", "node-2"]
    with pytest.raises(ValueError, match="virtual_nodes"):
        ConsistentHash(virtual_nodes=0)


# -- least loaded / local first ----------------------------------------------------------------


def test_least_loaded_picks_min_load_and_rotates_ties() -> None:
    nodes = [NodeInfo("a", "x", load=0.7), NodeInfo("b", "x", load=0.2),
             NodeInfo("c", "x", load=0.5)]
    assert LeastLoaded().choose(None, nodes).node_id == "b"
    tied = [NodeInfo("b", "x", load=0.1), NodeInfo("a", "x", load=0.1),
            NodeInfo("c", "x", load=0.3)]
    ll = LeastLoaded()
    assert [ll.choose(None, tied).node_id for _ in range(4)] == ["a", "b", "a", "b"]
    near = LeastLoaded(tie_tolerance=0.25)
    assert {near.choose(None, tied).node_id for _ in range(6)} == {"a", "b", "c"}
    with pytest.raises(ValueError, match="tie_tolerance"):
        LeastLoaded(tie_tolerance=-1)


def test_local_first_prefers_local_and_falls_back() -> None:
    nodes = make_nodes(3)
    lf = LocalFirst("node-1")
    assert all(lf.choose(f"k{i}", nodes).node_id == "node-1" for i in range(10))
    without_local = [n for n in nodes if n.node_id != "node-1"]
    picks = {lf.choose(None, without_local).node_id for _ in range(4)}
    assert picks == {"node-0", "node-2"}  # round robin fallback
    hashed = LocalFirst("node-9", fallback=ConsistentHash())
    assert hashed.choose("k", nodes) == ConsistentHash().choose("k", nodes)
    with pytest.raises(ValueError):
        LocalFirst("")


# -- errors / factory --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [RoundRobin(), Random(seed=1), ConsistentHash(),
                                      LeastLoaded(), LocalFirst("a")],
                         ids=lambda s: type(s).__name__)
def test_empty_node_list_raises_no_nodes_available(strategy: RoutingStrategy) -> None:
    assert isinstance(strategy, RoutingStrategy)
    with pytest.raises(NoNodesAvailable, match="no live nodes") as info:
        strategy.choose("key-1", [])
    assert isinstance(info.value, LookupError)
    assert "key-1" in str(info.value)


def test_make_strategy_builds_each_name() -> None:
    assert STRATEGY_NAMES == ("consistent-hash", "load-based", "local-first", "random",
                              "round-robin")
    assert isinstance(make_strategy("round-robin"), RoundRobin)
    assert isinstance(make_strategy("Round_Robin"), RoundRobin)
    assert isinstance(make_strategy("random", seed=3), Random)
    ring = make_strategy("consistent-hash", virtual_nodes=16)
    assert isinstance(ring, ConsistentHash) and ring.virtual_nodes == 16
    assert isinstance(make_strategy("load-based"), LeastLoaded)
    lf = make_strategy("local-first", local_node_id="n1", fallback="consistent-hash",
                       virtual_nodes=32)
    assert isinstance(lf, LocalFirst) and isinstance(lf.fallback, ConsistentHash)
    assert lf.fallback.virtual_nodes == 32


def test_make_strategy_unknown_name_lists_allowed_names() -> None:
    with pytest.raises(ValueError) as info:
        make_strategy("sticky")
    message = str(info.value)
    assert "'sticky'" in message
    for name in STRATEGY_NAMES:
        assert name in message
    with pytest.raises(TypeError):
        make_strategy("round-robin", bogus=1)
