"""``python -m catga_bench.faultproxy``: the same as ``catga-bench proxy``."""

from catga_bench.faultproxy.cli import main

raise SystemExit(main())
