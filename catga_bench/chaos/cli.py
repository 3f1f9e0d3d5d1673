"""``catga-bench chaos run FILE [--journal PATH] [--var k=v ...]``: run one experiment.

Exit codes: 0 completed (steady state met before and after), 1 failed or deviated, 2 usage or
an invalid experiment file, 3 aborted (the environment could not be set up, or an action
failed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from catga_bench.chaos.journal import write_journal
from catga_bench.chaos.model import ExperimentError, load_experiment, parse_var

EXIT = {"completed": 0, "failed": 1, "aborted": 3, "interrupted": 130}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catga-bench chaos",
        description="Chaos experiments as data: steady state -> faults -> observation -> "
                    "rollbacks (always) -> recovery check. See experiments/README.md.",
        epilog="exit codes: 0 completed, 1 failed or deviated, 2 usage/invalid experiment, "
               "3 aborted, 130 interrupted",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run one experiment file (YAML or TOML)")
    run.add_argument("file", type=Path, help="experiment (.yaml, .yml or .toml)")
    run.add_argument("--journal", type=Path, default=None, metavar="PATH",
                     help="where to write the journal (default: journal.json in --workdir)")
    run.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                     help="override a configuration variable (repeatable)")
    run.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                     help="logs and the load report (default: a new temporary directory)")
    val = sub.add_parser("validate", help="check an experiment file and print it resolved")
    val.add_argument("file", type=Path)
    val.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    return p


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``catga-bench chaos``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    try:
        overrides = dict(parse_var(v) for v in args.var)
        experiment = load_experiment(args.file, overrides)
    except ExperimentError as exc:
        sys.stderr.write(f"catga-bench chaos: error: {exc}\n")
        return 2
    if args.command == "validate":
        import json

        print(json.dumps(experiment.dump(), indent=2))
        return 0
    from catga_bench.chaos.env import Env
    from catga_bench.chaos.runner import Runner

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="catga-chaos-"))
    journal_path = args.journal or workdir / "journal.json"
    signal.signal(signal.SIGTERM, _interrupt)
    env = Env(experiment.environment, workdir, args.file.resolve().parent)
    t0 = time.monotonic()
    journal = Runner(experiment, env).run()
    write_journal(journal, journal_path)
    status = journal["status"]
    print(f"catga-bench chaos: {experiment.title}: {status}"
          f"{' (deviated)' if journal['deviated'] else ''} in {time.monotonic() - t0:.1f} s; "
          f"journal: {journal_path}", flush=True)
    for phase in ("before", "after"):
        ss = journal["steady_states"][phase]
        if ss is not None:
            for pr in ss["probes"]:
                mark = "ok " if pr.get("tolerance_met") else "NOT MET"
                print(f"  {phase:6} {mark} {pr['activity']['name'] or pr['activity']['type']}")
    for entry in journal["run"] + journal["rollbacks"]:
        if entry["status"] == "failed":
            a = entry["activity"]
            print(f"  failed: {a['name'] or a['type']}: "
                  f"{''.join(entry.get('exception') or []).strip() or 'tolerance not met'}")
    return EXIT.get(status, 1)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
