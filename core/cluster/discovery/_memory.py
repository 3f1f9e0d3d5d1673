"""Discovery within one process: a shared :class:`InMemoryRegistry`, TTL checked against an
injectable clock (tests, single-process setups)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from core.cluster.discovery._base import Discovery
from core.cluster.routing import NodeInfo


class InMemoryRegistry:
    """The shared state of :class:`InMemoryDiscovery` objects: ``node_id`` -> last written
    :class:`~core.cluster.routing.NodeInfo`. Share one instance between the discoveries of one
    process."""

    def __init__(self) -> None:
        self.entries: dict[str, NodeInfo] = {}


class InMemoryDiscovery(Discovery):
    """Discovery within one process.

    Args:
        registry: shared registry (default: a private new one).
        ttl_s: seconds after the last heartbeat a node stops being live.
        clock: Unix time in seconds (inject a fake one in tests; default :func:`time.time`).
    """

    backend = "memory"

    def __init__(self, registry: InMemoryRegistry | None = None, *, ttl_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(ttl_s=ttl_s)
        self.registry = registry if registry is not None else InMemoryRegistry()
        self.clock = clock

    async def _put(self, node: NodeInfo) -> NodeInfo:
        stored = replace(node, last_seen_unix_s=self.clock())
        self.registry.entries[node.node_id] = stored
        return stored

    async def _remove(self, node_id: str) -> None:
        self.registry.entries.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; expired entries are removed from the registry."""
        cutoff = self.clock() - self.ttl_s
        entries = self.registry.entries
        for node_id in [i for i, n in entries.items() if n.last_seen_unix_s < cutoff]:
            del entries[node_id]
        return sorted(entries.values(), key=lambda n: n.node_id)
