"""The ``catga-bench`` command: benchmarks and helpers around the Locust scenarios.

Load tests themselves run through Locust: ``locust -f scenarios/high_fanout.py --headless ...``
(every catga-bench option is on Locust's command line: ``locust -f scenarios/X.py --help``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from catga_bench import __version__

EPILOG = """\
load tests:
  locust -f scenarios/high_fanout.py --headless -u 20 -r 20 -t 30s
  locust -f scenarios/high_throughput.py --headless -u 20 -r 20 -t 30s --slo-p99-ms 50
  locust -f scenarios/high_fanout.py --headless --processes 2 -u 20 -r 20 -t 30s

over a broker (the core in its own process):
  catga-bench serve --transport nats --scenario scenarios/high_fanout.py &
  locust -f scenarios/high_fanout.py --transport nats --headless -u 20 -r 20 -t 30s

exit codes: 0 all SLO targets met, 1 a target missed, 2 usage or configuration error,
            3 the environment failed (broker unreachable, no core serving, generator could
              not offer the load, core did not start)
"""


def _scenarios(directory: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out.append((str(path), " ".join(doc.split())))
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``catga-bench`` console script; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="catga-bench",
        description="Load, observability and chaos testing for message-driven systems built on "
                    "the Catga design (CQRS mediator, QoS, bulkheads, circuit breakers).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"catga-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("bench", help="micro- and embedded benchmarks, as ratios to floors "
                                 "measured in the same run (catga-bench bench --help)",
                   add_help=False)
    sub.add_parser("bench-brokers", help="transports vs raw nats-py / redis-py clients, as "
                                         "ratios (catga-bench bench-brokers --help)",
                   add_help=False)
    sub.add_parser("dashboards", help="generate the Grafana dashboards "
                                      "(catga-bench dashboards build [--out DIR] [--check])",
                   add_help=False)
    sub.add_parser("alerts", help="generate the Prometheus alert rules "
                                  "(catga-bench alerts build [--out DIR] [--check])",
                   add_help=False)
    sub.add_parser("proxy", help="TCP fault proxy speaking the Toxiproxy HTTP API "
                                 "(catga-bench proxy [--host H] [--port 8474] [--config FILE])",
                   add_help=False)
    sub.add_parser("gate", help="the release-gating chaos suite: every scenario judged by its "
                                "SLO gate, embedded and over brokers (catga-bench gate --help)",
                   add_help=False)
    sub.add_parser("chaos", help="run chaos experiments (catga-bench chaos run FILE "
                                 "[--journal PATH] [--var k=v]; experiments/ has the shipped ones)",
                   add_help=False)
    sub.add_parser("serve", help="run the core as its own process behind NATS or Redis "
                                 "(catga-bench serve --transport nats|redis --scenario FILE)",
                   add_help=False)
    sc = sub.add_parser("scenarios", help="list the scenario files and what they test")
    sc.add_argument("--dir", default="scenarios", help="directory of locustfiles")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from catga_bench.bench.micro import main as bench_main

        return bench_main(rest)
    if args.command == "bench-brokers":
        from catga_bench.bench.brokers import main as bench_brokers_main

        return bench_brokers_main(rest)
    if args.command == "dashboards":
        from catga_bench.observability.dashboards import main as dashboards_main

        return dashboards_main(rest)
    if args.command == "proxy":
        from catga_bench.faultproxy import main as proxy_main

        return proxy_main(rest)
    if args.command == "gate":
        from catga_bench.suite.cli import main as gate_main

        return gate_main(rest)
    if args.command == "chaos":
        from catga_bench.chaos import main as chaos_main

        return chaos_main(rest)
    if args.command == "serve":
        import os

        os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")  # no gevent in the core process
        from catga_bench.targets.served.main import main as serve_main

        return serve_main(rest)
    if args.command == "alerts":
        from catga_bench.observability.alerts import main as alerts_main

        return alerts_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "scenarios":
        directory = Path(args.dir)
        if not directory.is_dir():
            print(f"catga-bench: error: --dir: no such directory: {directory}", file=sys.stderr)
            return 2
        for path, doc in _scenarios(directory):
            print(f"{path}\n    {doc}\n")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
