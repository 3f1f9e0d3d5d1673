"""Runs an experiment: environment up -> steady-state hypothesis (before) -> load started ->
method -> rollbacks (always played: after a missed hypothesis, a failed activity, an
interruption) -> steady-state hypothesis again (after: the recovery check) -> environment down.

Status (Chaos Toolkit's names): ``completed`` (everything ran, every hypothesis met),
``failed`` (a hypothesis was not met, before or after, or a method probe missed its
tolerance), ``aborted`` (the environment could not be set up, or a method action raised),
``interrupted`` (SIGINT/SIGTERM). ``deviated``: the after hypothesis was not met.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Protocol

from catga_bench.chaos import activities
from catga_bench.chaos.journal import new_journal, now_iso
from catga_bench.chaos.model import ActivityBase, Experiment

log = logging.getLogger("catga.chaos")


class Runtime(Protocol):
    marks: dict[str, tuple[float, float]]

    def setup(self) -> None: ...
    def start_load(self) -> None: ...
    def teardown(self, *, wait_for_load: bool = True) -> None: ...
    def describe(self) -> dict[str, Any]: ...


class Runner:
    """Runs ``experiment`` against ``env`` (an :class:`~.env.Env`, or a fake in tests) with
    the activity implementations ``actions`` / ``probes`` (default: :mod:`.activities`)."""

    def __init__(self, experiment: Experiment, env: Runtime, *,
                 actions: dict[str, Any] | None = None, probes: dict[str, Any] | None = None,
                 sleep: Any = time.sleep) -> None:
        self.experiment = experiment
        self.env = env
        self.actions = activities.ACTIONS if actions is None else actions
        self.probes = activities.PROBES if probes is None else probes
        self.sleep = sleep

    # ------------------------------------------------------------------ one activity
    def run_activity(self, a: ActivityBase) -> dict[str, Any]:
        kind = a.kind
        entry: dict[str, Any] = {"activity": {"kind": kind, **a.model_dump(mode="json")},
                                 "status": "succeeded", "output": None}
        if a.pauses.before:
            self.sleep(a.pauses.before)
        t0 = time.time()
        entry["start"] = now_iso(t0)
        log.info("%s %s (%s)", kind, a.label(), a.type)  # type: ignore[attr-defined]
        try:
            if kind == "probe":
                output, met = self.probes[a.type](self.env, a)  # type: ignore[attr-defined]
                entry["output"], entry["tolerance_met"] = output, bool(met)
                if not met:
                    entry["status"] = "failed"
            else:
                entry["output"] = self.actions[a.type](self.env, a)  # type: ignore[attr-defined]
        except Exception as exc:
            entry["status"] = "failed"
            entry["exception"] = traceback.format_exception_only(exc)
            if kind == "probe":
                entry["tolerance_met"] = False
            log.warning("%s %s failed: %s", kind, a.label(), exc)
        t1 = time.time()
        entry["end"], entry["duration"] = now_iso(t1), round(t1 - t0, 3)
        self.env.marks.setdefault(a.label(), (t0, t1))
        if a.pauses.after:
            self.sleep(a.pauses.after)
        return entry

    def hypothesis(self, phase: str) -> dict[str, Any] | None:
        """The steady-state probes; ``load_report`` judges the load run, which starts with the
        method, so it is only evaluated ``after`` (``before`` records it as skipped)."""
        h = self.experiment.steady_state_hypothesis
        if h is None:
            return None
        probes = []
        for p in h.probes:
            if phase == "before" and p.type == "load_report":
                now = now_iso(time.time())
                probes.append({"activity": {"kind": "probe", **p.model_dump(mode="json")},
                               "status": "skipped", "tolerance_met": True, "start": now,
                               "end": now, "duration": 0.0,
                               "output": "the load run starts with the method: judged after"})
                continue
            probes.append(self.run_activity(p))
        return {"steady_state_met": all(p.get("tolerance_met") for p in probes),
                "probes": probes}

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        journal = new_journal(self.experiment.dump())
        t0 = time.time()
        journal["start"] = now_iso(t0)
        status = "completed"
        set_up = False
        method_ran = False
        try:
            try:
                self.env.setup()
                set_up = True
            except Exception as exc:
                status = "aborted"
                journal["environment"]["error"] = "".join(traceback.format_exception_only(exc))
                log.error("environment: %s", exc)
            if set_up:
                before = self.hypothesis("before")
                journal["steady_states"]["before"] = before
                if before is not None and not before["steady_state_met"]:
                    status = "failed"
                    log.warning("steady state not met before the method: not running it")
                else:
                    method_ran = True
                    self.env.start_load()
                    for a in self.experiment.method:
                        entry = self.run_activity(a)
                        journal["run"].append(entry)
                        if entry["status"] == "failed":
                            if a.kind == "action":
                                status = "aborted"
                                break
                            status = "failed"
        except KeyboardInterrupt:
            status = "interrupted"
            log.warning("interrupted: playing the rollbacks")
        finally:
            status = self._rollbacks(journal, status)
            if set_up and method_ran and status != "interrupted":
                try:
                    after = self.hypothesis("after")
                except KeyboardInterrupt:
                    status, after = "interrupted", None
                journal["steady_states"]["after"] = after
                if after is not None and not after["steady_state_met"]:
                    journal["deviated"] = True
                    if status == "completed":
                        status = "failed"
            journal["environment"].update(self.env.describe())
            try:
                self.env.teardown(wait_for_load=status != "interrupted")
            except Exception as exc:
                journal["environment"]["teardown_error"] = str(exc)
            t1 = time.time()
            journal["status"] = status
            journal["end"], journal["duration"] = now_iso(t1), round(t1 - t0, 3)
        return journal

    def _rollbacks(self, journal: dict[str, Any], status: str) -> str:
        for a in self.experiment.rollbacks:
            try:
                journal["rollbacks"].append(self.run_activity(a))
            except KeyboardInterrupt:  # a second Ctrl-C: note it, keep rolling back
                status = "interrupted"
        return status
