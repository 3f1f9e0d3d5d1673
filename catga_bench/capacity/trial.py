"""One capacity trial: a Locust run of the scenario at a fixed offered rate, and its verdict.

The run is ``python -m locust -f SCENARIO --headless ... --rate R`` (the same command line as the
release gate, :func:`catga_bench.processes.locust.locust_command`) with the user's pass-through
options, plus ``--catga-stop-on-breach-s`` (the harness stops it after sustained breach) and
``--slo-min-throughput off`` (a fixed-rate target; capacity measures the rate instead); ``-t`` is
the trial's length plus ``WARMUP_S`` (Locust counts start-up in ``-t``). Its
``report.json`` is judged by :func:`judge_trial`:

* **INVALID** when the generator did not offer the load: more than 2 % of the messages that fell
  due were never sent (its own schedule: ``generator.dropped_sends``), the schedule fell more than
  ``MAX_BEHIND_S`` behind at some moment, or the sent rate of the measured window (of at least
  ``MIN_WINDOW_S`` whole seconds) is under ``MIN_WINDOW_SHARE`` of the rate. That is the
  generator's limit, never the system's.
* **FAIL** when more than ``exceed_ratio`` (default 0.5) of its trial-seconds breached the
  per-second targets (P99, error ratio: :mod:`catga_bench.judge.breach`), a target that is not
  per second missed (lost, duplicates ...; ``min_throughput`` is ignored), the system handled
  < 98 % of what was sent in the same window, or the harness stopped the trial early.
* **PASS** otherwise — also when the whole trial's P99 missed its limit but at most
  ``exceed_ratio`` of its seconds breached: MLRsearch (RFC 9971) judges a load by the share of
  trial time that breached its goal (the *exceed ratio*), and a per-second figure is far less
  swayed by one second's spike than one P99 over the whole trial. The reason names the miss.

Why the 98 % shares are not read off the window's rates against the asked rate: a trial's
window is a few whole seconds, and the per-second counts of a short window wobble by a few per
cent (a late loop tick moves messages into the next second). The generator's own accounting
(due vs sent) is exact, and handled vs sent in the same window cancels the wobble; the window's
sent rate is only checked coarsely (the gate's own 5 %).

A run that wrote no report, sent nothing, or failed for another environment reason (broker
down, service not ready) raises :class:`TrialBroken` (exit 3 for the command).
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catga_bench.capacity.model import Phase, Trial, Verdict
from catga_bench.judge.breach import BreachLimits, breached_seconds
from catga_bench.judge.values import as_dict, as_list, as_number
from catga_bench.processes.locust import locust_command

#: the generator must send, and the system handle, at least this share
MIN_SHARE = 0.98
#: the window's sent rate at least this share of the asked rate (coarse: see above)
MIN_WINDOW_SHARE = 0.95
#: the generator's schedule fell further behind than this (s) at some moment: not offered
MAX_BEHIND_S = 1.0
#: SLO rows that are judged per second too (the others make a whole-run breach)
PER_SECOND_ROWS = frozenset({"p50_latency", "p99_latency", "p999_latency", "max_error_ratio"})
#: the fixed-rate target that capacity replaces by its own achieved-rate check
IGNORED_ROWS = frozenset({"min_throughput"})
#: the gate's environment failure for a generator shortfall starts so (judge/gate.py)
SHORTFALL_PREFIX = "the generator issued"
#: Locust's -t counts from before the generator (and a service it starts) is up: each trial
#: runs this much longer than asked, so its measured window is about the length asked
WARMUP_S = 2.0
#: the window's sent rate is judged only over at least this many whole seconds (a shorter run's
#: rate is taken from the harness's start, before the generator's target was open)
MIN_WINDOW_S = 2.0
#: whole messages per second of slack in the share checks (counts per second are integers)
SLACK_MSG_S = 1.0
#: a trial's own report files: its HTML page (matplotlib, ~1.5 s of each trial's start-up and
#: end) is left out; the capacity report draws the trials together (the user's own
#: --report-formats after ``--`` wins)
TRIAL_REPORT_FORMATS = "json,md"
#: seconds a trial may take beyond its length (start-up, drain, report) before it is killed
GRACE_S = 120.0


class TrialBroken(Exception):
    """The trial's run could not be judged (an environment failure): one line."""


@dataclass(frozen=True)
class TrialRunner:
    """Runs trials of one scenario.

    Args:
        scenario: the locustfile.
        out_dir: each trial writes to ``out_dir/trial-NN-<rate>/``.
        users: Locust users (producers sharing the rate).
        extra: the user's pass-through Locust/harness options.
        stop_on_breach_s: the harness's early stop (0: off).
        exceed_ratio: a trial fails when more of its seconds than this share breached.
    """

    scenario: Path
    out_dir: Path
    users: int = 10
    extra: Sequence[str] = ()
    stop_on_breach_s: int = 5
    exceed_ratio: float = 0.5

    def command(self, rate: float, seconds: float, report_dir: Path,
                stop_after_s: int | None = None) -> list[str]:
        """The trial's command line; ``stop_after_s`` replaces ``stop_on_breach_s`` for this
        trial (unless that is 0: never stop)."""
        stop = self.stop_on_breach_s
        if stop and stop_after_s is not None:
            stop = max(1, stop_after_s)
        extra = ["--report-formats", TRIAL_REPORT_FORMATS, *self.extra,
                 "--rate", f"{rate:.10g}", "--slo-min-throughput", "off",
                 "--catga-stop-on-breach-s", str(stop)]
        return locust_command(self.scenario, users=self.users,
                              run_time_s=math.ceil(seconds + WARMUP_S), report_dir=report_dir,
                              extra=extra)

    def __call__(self, rate: float, seconds: float, phase: Phase, index: int,
                 stop_after_s: int | None = None) -> Trial:
        """Run one trial and judge it. Raises TrialBroken."""
        report_dir = self.out_dir / f"trial-{index:02d}-{phase}-{rate:.0f}"
        report_dir.mkdir(parents=True, exist_ok=True)
        log_path = report_dir / "locust.log"
        started = time.monotonic()
        with log_path.open("w") as log:
            try:
                proc = subprocess.run(self.command(rate, seconds, report_dir, stop_after_s),
                                      stdout=log,
                                      stderr=subprocess.STDOUT, timeout=seconds + GRACE_S,
                                      check=False)
            except subprocess.TimeoutExpired:
                raise TrialBroken(f"the trial at {rate:,.0f} msg/s did not end within "
                                  f"{seconds + GRACE_S:.0f} s; see {log_path}") from None
        wall = time.monotonic() - started
        report_path = report_dir / "report.json"
        if not report_path.exists():
            raise TrialBroken(f"the trial at {rate:,.0f} msg/s wrote no report (exit "
                              f"{proc.returncode}): {_last_error(log_path)}; see {log_path}")
        report = json.loads(report_path.read_text())
        return judge_trial(report, rate, seconds, phase, wall_s=wall, report_dir=report_dir,
                           exceed_ratio=self.exceed_ratio)


def _last_error(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()
             if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def judge_trial(report: dict[str, Any], rate: float, planned_s: float, phase: Phase, *,
                wall_s: float = 0.0, report_dir: Path | None = None,
                exceed_ratio: float = 0.5) -> Trial:
    """The verdict of one trial's report (``report.json`` as a dict; see the module's rules;
    ``exceed_ratio`` in [0, 1): the share of trial-seconds that may breach).

    Raises:
        TrialBroken: nothing was sent, or the run failed for an environment reason other than
            the generator's shortfall.
    """
    env = [str(f) for f in as_list(report.get("environment_failures"))]
    other = [f for f in env if not f.startswith(SHORTFALL_PREFIX)]
    if other:
        raise TrialBroken(f"the trial at {rate:,.0f} msg/s failed: {other[0]}")
    if not (as_number(report.get("sent")) or 0):
        raise TrialBroken(f"the trial at {rate:,.0f} msg/s sent no message")
    sent_rate = as_number(report.get("sent_rate")) or 0.0
    achieved = as_number(report.get("achieved_rate")) or 0.0
    p99 = as_number(as_dict(report.get("latency_ms")).get("p99"))
    rows = [r for r in as_list(report.get("slo")) if isinstance(r, dict)]
    breached, seconds = breached_seconds(as_dict(report.get("timeline")),
                                         BreachLimits.from_slo_rows(rows))
    stopped = bool(report.get("stopped_early"))
    verdict, reason, whole = _verdict(report, rate, sent_rate, achieved, rows, stopped)
    if verdict != "INVALID" and not whole and not stopped and (breached or verdict == "FAIL"):
        # per-second targets: judged by the share of seconds that breached (the exceed ratio)
        share = breached / seconds if seconds else 1.0
        held = share <= exceed_ratio + 1e-9
        verdict = "PASS" if held else "FAIL"
        reason = (f"{breached} of {seconds} s breached ({share:.0%} "
                  f"{'<=' if held else '>'} {exceed_ratio:.0%})"
                  + ("" if reason == "SLO held" else f"; whole trial: {reason}"))
    return Trial(rate=rate, phase=phase, planned_s=planned_s, verdict=verdict, reason=reason,
                 seconds=seconds, breached=breached, whole_breach=whole, stopped_early=stopped,
                 p99_ms=p99, achieved_rate=achieved, sent_rate=sent_rate, wall_s=round(wall_s, 2),
                 report_dir=str(report_dir) if report_dir is not None else None)


def _verdict(report: dict[str, Any], rate: float, sent_rate: float, achieved: float,
             rows: list[dict[str, Any]], stopped: bool) -> tuple[Verdict, str, bool]:
    """(verdict, reason, whole-run breach)."""
    gen = as_dict(report.get("generator"))
    sent = as_number(report.get("sent")) or 0.0
    dropped = as_number(gen.get("dropped_sends")) or 0.0
    behind = as_number(gen.get("max_behind_s")) or 0.0
    due = sent + dropped
    if due and sent < MIN_SHARE * due:
        return "INVALID", (f"the generator sent {sent:,.0f} of the {due:,.0f} messages that "
                           f"fell due ({sent / due:.1%} < {MIN_SHARE:.0%})"), False
    window = as_number(report.get("duration_s")) or 0.0
    if window >= MIN_WINDOW_S and sent_rate < MIN_WINDOW_SHARE * rate - SLACK_MSG_S:
        return "INVALID", (f"the generator offered {sent_rate:,.0f} of {rate:,.0f} msg/s "
                           f"({sent_rate / rate:.1%} < {MIN_WINDOW_SHARE:.0%})"), False
    if behind > MAX_BEHIND_S:
        return "INVALID", (f"the generator fell {behind:.2f} s behind its schedule "
                           f"(> {MAX_BEHIND_S:g} s)"), False
    missed = [r for r in rows if not r.get("passed") and r.get("name") not in IGNORED_ROWS]
    reasons = [f"{r.get('name')} {r.get('value')} {r.get('op')} {r.get('limit')} missed"
               for r in missed]
    whole = any(r.get("name") not in PER_SECOND_ROWS for r in missed)
    if achieved < MIN_SHARE * sent_rate - SLACK_MSG_S:
        reasons.append(f"handled {achieved:,.0f} of the {sent_rate:,.0f} msg/s sent "
                       f"({achieved / sent_rate:.1%} < {MIN_SHARE:.0%})")
        whole = True
    if stopped:
        reasons.insert(0, "stopped early after sustained SLO breach")
    if reasons:
        return "FAIL", "; ".join(reasons), whole
    return "PASS", "SLO held", False
