"""A history of releases: each release's load-test runs kept side by side, so the next release
can be compared with the last one (``catga-bench compare``) and change points found over many
(``catga-bench trend``).

Layout (plain files, safe to commit or to keep as a CI artifact)::

    HISTORY/
      <release>/                  a label: letters, digits, ``.``, ``_``, ``-``
        release.json              {"release", "stored_at" (UTC ISO 8601), "scenarios", "runs"}
        <scenario>-<transport>/
          run-1/report.json       the run's report (report.md / report.html too, if present)
          run-2/report.json
        ...

A release may hold the runs of several scenarios (a release gate's cases); who reads it picks
the runs of one scenario and transport by the reports' own ``scenario`` and ``transport``.

Releases are ordered by ``stored_at`` (then label), not by label: ``v1.10`` after ``v1.9``
needs no version parsing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catga_bench.errors import ConfigError

#: a release label: safe as one folder name on every OS
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RELEASE_FILE = "release.json"
#: files of a run folder kept in the history beside report.json
KEPT = ("report.json", "report.md", "report.html")


@dataclass(frozen=True)
class Release:
    """One stored release: its label, when it was stored (UTC ISO 8601), and its run folders
    (each holding a report.json), by scenario and run order."""

    label: str
    stored_at: str
    runs: tuple[Path, ...]
    path: Path


def default_label() -> str:
    """A label from the current UTC time, ``YYYYmmdd-HHMMSS``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def check_label(label: str) -> str:
    """``label`` if it is a valid release label.

    Raises:
        ConfigError: not 1-100 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit.
    """
    if not LABEL.match(label):
        raise ConfigError(f"--release: {label!r} is not a release label; allowed: 1-100 of "
                          "letters, digits, '.', '_', '-', starting with a letter or digit")
    return label


def _report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable report.json ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a report (a JSON object is expected)")
    return doc


def store_release(history: Path, label: str, reports: list[Path],
                  groups: list[str] | None = None) -> Release:
    """Copy the runs whose ``report.json`` files are ``reports`` into ``history/label/``.

    Args:
        history: the history folder (created if missing).
        label: the release label (:func:`check_label`).
        reports: the runs' report.json paths, in run order (their report.md/.html are kept too).
        groups: per report, the folder it goes in (the release gate's ``<case>-<transport>``);
            default ``<scenario>-<transport>`` from the report.

    Returns:
        The stored :class:`Release`.

    Raises:
        ConfigError: a bad label, no runs, the label already in the history, or a report that
            cannot be read.
    """
    check_label(label)
    if not reports:
        raise ConfigError("--history: no runs to store")
    dest = history / label
    if dest.exists():
        raise ConfigError(f"--history: release {label!r} is already in {history}; give another "
                          "--release")
    docs = [_report(p) for p in reports]
    dest.mkdir(parents=True)
    runs = []
    counts: dict[str, int] = {}
    if groups is not None and len(groups) != len(reports):
        raise ValueError("store_release: one group per report")
    for k, (src, doc) in enumerate(zip(reports, docs, strict=True)):
        group = (groups[k] if groups is not None else
                 f"{doc.get('scenario') or 'run'}-{doc.get('transport') or 'unknown'}")
        if not LABEL.match(group):
            group = re.sub(r"[^A-Za-z0-9._-]", "_", group) or "run"
        counts[group] = counts.get(group, 0) + 1
        run_dir = dest / group / f"run-{counts[group]}"
        run_dir.mkdir(parents=True)
        for name in KEPT:
            if (src.parent / name).is_file():
                shutil.copy2(src.parent / name, run_dir / name)
        runs.append(run_dir)
    meta = {"release": label,
            "stored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scenarios": sorted(counts), "runs": len(runs)}
    (dest / RELEASE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return Release(label, meta["stored_at"], tuple(runs), dest)


def _run_order(run: Path) -> tuple[str, int]:
    tail = run.name.rpartition("-")[2]
    return (str(run.parent), int(tail) if tail.isdigit() else 0)


def load_history(history: Path) -> list[Release]:
    """Every release stored in ``history``, oldest first.

    Raises:
        ConfigError: ``history`` is not a folder, or holds no release.
    """
    if not history.is_dir():
        raise ConfigError(f"history: no such directory: {history}")
    out = []
    for meta_path in sorted(history.glob(f"*/{RELEASE_FILE}")):
        meta = _report(meta_path)
        folder = meta_path.parent
        runs = tuple(sorted((p.parent for p in folder.rglob("report.json")), key=_run_order))
        out.append(Release(str(meta.get("release") or folder.name),
                           str(meta.get("stored_at") or ""), runs, folder))
    if not out:
        raise ConfigError(f"history: {history} holds no release (no */{RELEASE_FILE}); "
                          "store one with --history")
    out.sort(key=lambda r: (r.stored_at, r.label))
    return out


def latest_release(history: Path) -> Release:
    """The newest release in ``history`` (:func:`load_history`'s last)."""
    return load_history(history)[-1]


def is_history(path: Path) -> bool:
    """True when ``path`` is a history folder (it holds ``*/release.json``)."""
    return path.is_dir() and any(path.glob(f"*/{RELEASE_FILE}"))
