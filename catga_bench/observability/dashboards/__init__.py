"""Grafana dashboards for Catga, generated from code (``catga-bench dashboards build``).

Three dashboards, each in two forms:

* ``dashboards/<name>.json`` — *importable* (Dashboards → Import, or ``POST
  /api/dashboards/import``): what Grafana's "Export for sharing externally" produces, with
  ``__inputs`` declaring ``DS_PROMETHEUS`` and every panel and query pointing at
  ``${DS_PROMETHEUS}``.
* ``dashboards/provisioning/<name>.json`` — *provisionable* from files: Grafana's file
  provisioning does not resolve ``__inputs``, so these use a ``datasource`` template variable
  instead, and every panel and query points at ``${datasource}``.

Plus ``dashboards/provisioning/dashboards.yml`` (a dashboard provider) and
``dashboards/provisioning/datasource.yml`` (Prometheus at ``http://prometheus:9090``) for the
docker-compose stack. Every query uses only the metrics listed in docs/metrics.md.

The dashboards are built with grafana-foundation-sdk (an 11.x build) and encoded with its JSON
encoder; the committed files must equal what :func:`build_all` returns (``--check``).

Modules: ``panels.py`` (PromQL helpers and the panel model), ``boards.py`` (the dashboards),
``render.py`` (spec -> Grafana JSON), ``files.py`` (the generated files, write, compare),
``queries.py`` (reading the JSON back) and ``cli.py`` (:func:`main`).
"""

from catga_bench.observability.dashboards.boards import DASHBOARDS
from catga_bench.observability.dashboards.cli import main
from catga_bench.observability.dashboards.files import build_all, write
from catga_bench.observability.dashboards.panels import EMPTY_UNLESS
from catga_bench.observability.dashboards.queries import empty_unless, panel_queries
from catga_bench.observability.dashboards.render import GRAFANA_VERSION, build_dashboard

__all__ = [
    "DASHBOARDS",
    "EMPTY_UNLESS",
    "GRAFANA_VERSION",
    "build_all",
    "build_dashboard",
    "empty_unless",
    "main",
    "panel_queries",
    "write",
]
