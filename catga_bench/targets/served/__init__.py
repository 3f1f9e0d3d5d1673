"""``catga-bench serve``: the reference core in its own process, behind NATS or Redis.

``main.py`` (the command), ``server.py`` (control requests, one run at a time), ``core.py``
(the served core: handlers, runtime faults, outcomes), ``publisher.py`` (completion batches).
"""
