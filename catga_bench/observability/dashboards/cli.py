"""``catga-bench dashboards build [--out DIR] [--check]`` (:func:`main`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from catga_bench.bundled import local_or_shipped
from catga_bench.observability.dashboards.files import differences, write


def main(argv: Sequence[str] | None = None) -> int:
    """``catga-bench dashboards build [--out DIR] [--check]``; returns the exit code (0 ok,
    1 ``--check`` found differences, 2 usage error)."""
    parser = argparse.ArgumentParser(
        prog="catga-bench dashboards",
        description="Generate the Grafana dashboards (importable and provisionable JSON).",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write dashboards/*.json and dashboards/provisioning/*")
    build.add_argument("--out", default=None, type=Path,
                       help="output directory (default: ./dashboards; with --check and no "
                            "./dashboards, the dashboards shipped with catga-bench)")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if the files in --out differ from the "
                            "generator's output")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0)
    out_dir: Path = args.out if args.out is not None else Path("dashboards")
    if args.check:
        if args.out is None:
            try:
                out_dir = local_or_shipped("dashboards")
            except FileNotFoundError as exc:
                print(f"catga-bench dashboards: error: {exc}; pass --out DIR", file=sys.stderr)
                return 2
        problems = differences(out_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `catga-bench dashboards build` and commit the result", file=sys.stderr)
            return 1
        print(f"{out_dir}: dashboards up to date")
        return 0
    for path in write(out_dir):
        print(path)
    return 0
