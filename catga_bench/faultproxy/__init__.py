"""Fault proxy: a TCP proxy that injects network faults, driven by the Toxiproxy v2 HTTP API.

toxiproxy-python, chaostoolkit-toxiproxy and a real Toxiproxy server are interchangeable with
it (same endpoints, JSON shapes, status codes, toxics and units; see docs/faultproxy.md).

Modules: :mod:`~.model` (JSON shapes, validation, errors), :mod:`~.toxics` (one class per
toxic), :mod:`~.link` (a proxied connection and its two directions), :mod:`~.proxy` (listener
and toxics of one proxy), :mod:`~.registry` (the proxy set), :mod:`~.httpserver` and
:mod:`~.api` (the HTTP API), :mod:`~.server` (:class:`FaultProxyServer`), :mod:`~.cli`
(``catga-bench proxy``), :mod:`~.bench` (its cost with no toxics), :mod:`~.testing` (an
upstream server and an API client for tests and experiments).
"""

from catga_bench.faultproxy.cli import main
from catga_bench.faultproxy.server import DEFAULT_HOST, DEFAULT_PORT, FaultProxyServer

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "FaultProxyServer", "main"]
