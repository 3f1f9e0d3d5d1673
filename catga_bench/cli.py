"""The ``catga-bench`` command: benchmarks and helpers around the Locust scenarios.

Load tests themselves run through Locust: ``locust -f scenarios/high_fanout.py --headless ...``
(every catga-bench option is on Locust's command line: ``locust -f scenarios/X.py --help``).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path

from catga_bench import __version__
from catga_bench.bundled import local_or_shipped

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


#: subcommand -> (the module whose ``main(argv) -> int`` runs it, its line in --help); each
#: command parses its own options (``catga-bench X --help``), imported only when asked for
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("catga_bench.bench.micro",
              "micro- and embedded benchmarks, as ratios to floors measured in the same run "
              "(catga-bench bench --help)"),
    "bench-brokers": ("catga_bench.bench.brokers",
                      "transports vs raw nats-py / redis-py clients, as ratios "
                      "(catga-bench bench-brokers --help)"),
    "bench-http": ("catga_bench.bench.http",
                   "the open-model HTTP generator vs a wrk floor on the same service, "
                   "same run (catga-bench bench-http --help)"),
    "dashboards": ("catga_bench.observability.dashboards",
                   "generate the Grafana dashboards (catga-bench dashboards build [--out DIR] "
                   "[--check])"),
    "alerts": ("catga_bench.observability.alerts",
               "generate the Prometheus alert rules (catga-bench alerts build [--out DIR] "
               "[--check])"),
    "proxy": ("catga_bench.faultproxy",
              "TCP fault proxy speaking the Toxiproxy HTTP API (catga-bench proxy [--host H] "
              "[--port 8474] [--config FILE])"),
    "gate": ("catga_bench.suite.cli",
             "the release-gating chaos suite: every scenario judged by its SLO gate, embedded "
             "and over brokers (catga-bench gate --help)"),
    "compare": ("catga_bench.compare.cli",
                "did the candidate get slower than the baseline? runs compared with statistics "
                "(catga-bench compare BASELINE CANDIDATE, --self-test; --help)"),
    "capacity": ("catga_bench.capacity.cli",
                 "the highest rate a scenario's system holds under its SLO, as a bracket, "
                 "with the generator's ceiling (catga-bench capacity --help)"),
    "chaos": ("catga_bench.chaos",
              "run chaos experiments (catga-bench chaos run FILE [--journal PATH] [--var k=v]; "
              "experiments/ has the shipped ones)"),
    "trend": ("catga_bench.compare.trend",
              "change points in a history of releases, by Apache Otava: advice beside the "
              "gate (catga-bench trend DIR)"),
    "init": ("catga_bench.scaffold",
             "scaffold your repository for a performance gate: scenario, AsyncAPI template, "
             "SLO file, chaos experiment, CI job (catga-bench init [DIR] [--force])"),
    "serve": ("catga_bench.targets.served.main",
              "run the core as its own process behind NATS or Redis (catga-bench serve "
              "--transport nats|redis --scenario FILE)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catga-bench",
        description="Load, observability and chaos testing for message-driven systems built on "
                    "the Catga design (CQRS mediator, QoS, bulkheads, circuit breakers).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"catga-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_line) in COMMANDS.items():
        sub.add_parser(name, help=help_line, add_help=False)
    sc = sub.add_parser("scenarios", help="list the scenario files and what they test")
    sc.add_argument("--dir", default=None,
                    help="directory of locustfiles (default: ./scenarios, else the scenarios "
                         "shipped with catga-bench)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``catga-bench`` console script; returns the exit code."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in COMMANDS:
        command = importlib.import_module(COMMANDS[args.command][0])
        return int(command.main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "scenarios":
        try:
            directory = Path(args.dir) if args.dir is not None else local_or_shipped("scenarios")
        except FileNotFoundError as exc:
            print(f"catga-bench: error: --dir: {exc}", file=sys.stderr)
            return 2
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
