"""Several core processes as one cluster: which nodes are alive, and which of them gets a message.

* :mod:`core.cluster.discovery` — each node registers and heartbeats; the live nodes are those
  heard from within ``ttl_s`` (in memory, Redis, or a NATS JetStream key-value bucket).
* :mod:`core.cluster.routing` — strategies that pick one live node per message (round robin,
  random, consistent hash, least loaded, local first).

Neither is part of a benchmark run yet: the mediator and the transports do not import them, and
they are tested on their own (tests/unit/test_routing.py, tests/integration/test_discovery.py).
Importing this package loads no broker client; the Redis and NATS backends import theirs when
they connect.
"""
