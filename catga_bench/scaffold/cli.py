"""``catga-bench init [DIR] [--force]``: scaffold a team's repository for a performance gate.

Writes the files of :data:`FILES` (templates shipped in ``catga_bench/scaffold/templates/``,
copied as they are) and prints what each is and what to do next. Nothing is written when any
of them exists already, unless ``--force``. The CI script's interface follows the issue's
release-gate design (the scenario gate run ``RUNS`` times, then ``catga-bench compare`` of the
runs with a stored baseline, Kayenta/Pinpoint style).

Exit codes: 0 written, 2 usage (a file exists without ``--force``, ``DIR`` is a file, or it
cannot be written).
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from catga_bench.errors import EXIT_PASS, EXIT_USAGE, ConfigError

PROG = "catga-bench init"


@dataclass(frozen=True)
class Scaffold:
    """One file ``init`` writes: its template, where it goes (relative to DIR), what it is."""

    template: str
    path: str
    what: str
    executable: bool = False


FILES: tuple[Scaffold, ...] = (
    Scaffold("scenario.py.tmpl", "perf/scenario.py",
             "the scenario (a locustfile): 500 orders/s at QoS 1 to the embedded core; "
             "--sut asyncapi --sut-spec points it at your service"),
    Scaffold("service.asyncapi.yaml", "perf/service.asyncapi.yaml",
             "your service as an AsyncAPI 3 document (a template: edit channels and payloads)"),
    Scaffold("slo.toml", "perf/slo.toml", "the SLO targets the gate judges each run by "
                                           "(--slo-file)"),
    Scaffold("experiment.yaml", "perf/experiment.yaml",
             "a chaos experiment: broker link latency under load (catga-bench chaos run)"),
    Scaffold("catga-bench.sh", "ci/catga-bench.sh",
             "the CI job for any CI: RUNS gated runs, then compare with perf-baseline/",
             executable=True),
    Scaffold("github-workflow.yml", ".github/workflows/catga-bench.yml",
             "the GitHub Actions workflow: runs ci/catga-bench.sh, uploads reports/"),
)

NEXT_STEPS = """\
next steps (in {dir}):
  pip install 'catga-bench[nats]'         # in CI too: the workflow's CATGA_BENCH says what
  locust -f perf/scenario.py --headless -u 10 -r 10 -t 30s --slo-file perf/slo.toml
  RUNS=1 DURATION=10 bash ci/catga-bench.sh        # the CI job, by hand
  RUNS=5 SAVE_BASELINE=1 bash ci/catga-bench.sh    # once: store perf-baseline/, commit it
  catga-bench chaos run perf/experiment.yaml       # needs nats-server on PATH
your own service: edit perf/service.asyncapi.yaml, then add
  --sut asyncapi --sut-spec perf/service.asyncapi.yaml   (LOCUST_ARGS for the CI script)
"""


def template_text(name: str) -> str:
    """The text of the shipped template ``name`` (a file of ``catga_bench/scaffold/templates``).

    Raises:
        FileNotFoundError: no such template (a broken install).
    """
    return importlib.resources.files("catga_bench.scaffold").joinpath(
        "templates", name).read_text(encoding="utf-8")


def plan(directory: Path, *, force: bool) -> list[tuple[Scaffold, Path]]:
    """The files to write under ``directory``, checked before anything is written.

    Raises:
        ConfigError: ``directory`` is not a directory, or (without ``force``) some files exist
            (the message names the first and counts the rest).
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"DIR: {directory} is not a directory")
    out = [(f, directory / f.path) for f in FILES]
    existing = [p for _, p in out if p.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ConfigError(f"{existing[0]} exists{more}; pass --force to overwrite")
    return out


def write(directory: Path, *, force: bool = False) -> list[Path]:
    """Write every file of :data:`FILES` under ``directory`` (created if missing).

    Returns:
        The paths written, in :data:`FILES` order.

    Raises:
        ConfigError: see :func:`plan`; or a file cannot be written (the OS's reason).
    """
    written = []
    for scaffold, path in plan(directory, force=force):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template_text(scaffold.template), encoding="utf-8")
            if scaffold.executable:
                path.chmod(0o755)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Scaffold a repository for a performance gate with catga-bench: a "
                    "scenario, an AsyncAPI template of your service, an SLO file, a chaos "
                    "experiment and the CI job (a shell script and a GitHub Actions workflow).",
        epilog="files:\n" + "\n".join(f"  {f.path:<36} {f.what}" for f in FILES)
               + "\n\nexit codes: 0 written, 2 usage (a file exists: --force overwrites)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", default=".", type=Path, metavar="DIR",
                   help="the repository to scaffold (default: the current directory)")
    p.add_argument("--force", action="store_true",
                   help="overwrite files that exist (default: refuse, write nothing)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``catga-bench init``; returns the exit code."""
    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    try:
        written = write(args.dir, force=args.force)
    except ConfigError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    what = {f.path: f.what for f in FILES}
    print(f"{PROG}: wrote {len(written)} files in {args.dir}:")
    for path in written:
        rel = path.relative_to(args.dir).as_posix()
        print(f"  {rel:<36} {what[rel]}")
    print()
    print(NEXT_STEPS.format(dir=args.dir), end="")
    return EXIT_PASS


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
