"""``python -m catga_bench.observability.dashboards``: the same as ``catga-bench dashboards``."""

from catga_bench.observability.dashboards.cli import main

raise SystemExit(main())
