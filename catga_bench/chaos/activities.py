"""What each activity type does. An action returns its output (raising when it fails); a probe
returns ``(output, tolerance_met)``. Both receive the running :class:`~.env.Env`."""

from __future__ import annotations

import math
import socket
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from catga_bench.chaos import model as m
from catga_bench.chaos.env import Env

ActionFn = Callable[[Env, Any], Any]
ProbeFn = Callable[[Env, Any], tuple[Any, bool]]


def _proxy(env: Env) -> tuple[Any, str]:
    if env.proxy is None:
        raise RuntimeError("this experiment's environment has no proxy (environment.proxy)")
    return env.proxy, f"/proxies/{env.proxy_name}"


def _broker(env: Env) -> Any:
    if env.broker is None:
        raise RuntimeError("no broker in this experiment's environment")
    return env.broker


def _core(env: Env) -> Any:
    if env.core is None:
        raise RuntimeError("no core in this experiment's environment (environment.core)")
    return env.core


# --------------------------------------------------------------------------- actions
def sleep(env: Env, a: m.Sleep) -> Any:
    time.sleep(a.duration_s)
    return {"slept_s": a.duration_s}


def toxic_add(env: Env, a: m.ToxicAdd) -> Any:
    api, path = _proxy(env)
    body = {"name": a.toxic.toxic_name(), "type": a.toxic.type, "stream": a.toxic.stream,
            "toxicity": a.toxic.toxicity, "attributes": a.toxic.attributes}
    return api.expect("POST", f"{path}/toxics", body)


def toxic_remove(env: Env, a: m.ToxicRemove) -> Any:
    api, path = _proxy(env)
    names = [a.toxic] if a.toxic else [t["name"] for t in api.expect("GET", f"{path}/toxics")]
    removed = []
    for name in names:
        status, answer = api.call("DELETE", f"{path}/toxics/{name}")
        if status == 204:
            removed.append(name)
        elif not (status == 404 and a.missing_ok):
            raise RuntimeError(f"DELETE toxic {name}: HTTP {status}: {answer}")
    return {"removed": removed}


def proxy_disable(env: Env, a: m.ProxyDisable) -> Any:
    api, path = _proxy(env)
    return api.expect("POST", path, {"enabled": False})


def proxy_enable(env: Env, a: m.ProxyEnable) -> Any:
    api, path = _proxy(env)
    return api.expect("POST", path, {"enabled": True})


def proxy_reset(env: Env, a: m.ProxyReset) -> Any:
    api, _ = _proxy(env)
    api.expect("POST", "/reset")
    return {"reset": True}


def broker_pause(env: Env, a: m.BrokerPause) -> Any:
    b = _broker(env)
    b.pause()
    return {"pid": b.pid, "paused": b.paused}


def broker_resume(env: Env, a: m.BrokerResume) -> Any:
    b = _broker(env)
    b.resume()
    return {"pid": b.pid, "paused": b.paused}


def broker_kill(env: Env, a: m.BrokerKill) -> Any:
    b = _broker(env)
    pid = b.pid
    b.kill()
    return {"killed_pid": pid}


def broker_start(env: Env, a: m.BrokerStart) -> Any:
    b = _broker(env)
    was_running = b.running
    b.start()
    b.resume()
    return {"pid": b.pid, "was_running": was_running}


def broker_restart(env: Env, a: m.BrokerRestart) -> Any:
    b = _broker(env)
    old = b.pid
    b.restart(hard=a.hard)
    return {"old_pid": old, "pid": b.pid, "hard": a.hard}


def core_kill(env: Env, a: m.CoreKill) -> Any:
    c = _core(env)
    pid = c.proc.pid if c.running else None
    c.kill()
    return {"killed_pid": pid}


def core_restart(env: Env, a: m.CoreRestart) -> Any:
    c = _core(env)
    if c.running and a.only_if_down:
        return {"pid": c.proc.pid, "restarted": False}
    c.kill()
    c.start()
    return {"pid": c.proc.pid, "restarted": True}


def _answer(reply: Any, what: str) -> Any:
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise RuntimeError(f"{what}: the core refused: {reply}")
    return reply


def handler_fault(env: Env, a: m.HandlerFault) -> Any:
    req: dict[str, Any] = {"op": "fault", "handler": a.handler, "latency_ms": a.latency_ms}
    if a.error_rate is not None:
        req["error_rate"] = a.error_rate
    if a.outage_s is not None:
        req["outage_s"] = a.outage_s
    return _answer(env.control(req), "fault")


def handler_fault_clear(env: Env, a: m.HandlerFaultClear) -> Any:
    return _answer(env.control({"op": "fault_clear"}), "fault_clear")


# --------------------------------------------------------------------------- probes
def core_ping(env: Env, p: m.CorePing) -> tuple[Any, bool]:
    deadline = time.monotonic() + p.retry_for_s
    tries = 0
    while True:
        tries += 1
        try:
            reply = env.control({"op": "ping"}, timeout_s=p.timeout_s)
            return {"reply": reply, "tries": tries}, bool(reply.get("ok"))
        except Exception as exc:
            if time.monotonic() >= deadline:
                return {"error": f"{type(exc).__name__}: {exc}", "tries": tries}, False
            time.sleep(0.5)


def _broker_answers(kind: str, port: int) -> bool:
    """A protocol-level check (a paused broker still accepts TCP connections)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.settimeout(1.0)
            if kind == "redis":
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
            return s.recv(64).startswith(b"INFO")
    except OSError:
        return False


def broker_reachable(env: Env, p: m.BrokerReachable) -> tuple[Any, bool]:
    b = _broker(env)
    deadline = time.monotonic() + p.retry_for_s
    while True:
        ok = _broker_answers(b.kind, b.port)
        if ok or time.monotonic() >= deadline:
            return {"url": b.url, "answers": ok, "paused": b.paused, "running": b.running}, ok
        time.sleep(0.25)


def proxy_has_no_toxics(env: Env, p: m.ProxyHasNoToxics) -> tuple[Any, bool]:
    api, path = _proxy(env)
    toxics = api.expect("GET", f"{path}/toxics")
    enabled = bool(api.expect("GET", path).get("enabled"))
    return {"toxics": toxics, "enabled": enabled}, not toxics and enabled


def sut_alive(env: Env, p: m.SutAlive) -> tuple[Any, bool]:
    if env.sut is None:
        raise RuntimeError("no black box in this experiment's environment (environment.sut)")
    return {"pid": env.sut.pid, "running": env.sut.running}, bool(env.sut.running)


def get_path(report: dict[str, Any], path: str) -> Any:
    cur: Any = report
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def check(actual: Any, cond: Any) -> bool:
    """``cond`` is a value (equality) or ``{lt, le, gt, ge, eq, ne, in}``; a missing value
    (None) fails every comparison but ``eq: null``."""
    if not isinstance(cond, dict):
        return bool(actual == cond)
    for op, ref in cond.items():
        if op == "eq" and actual != ref:
            return False
        if op == "ne" and actual == ref:
            return False
        if op == "in" and actual not in ref:
            return False
        if op in ("lt", "le", "gt", "ge"):
            if not isinstance(actual, int | float) or isinstance(actual, bool):
                return False
            ok = {"lt": actual < ref, "le": actual <= ref, "gt": actual > ref,
                  "ge": actual >= ref}[op]
            if not ok:
                return False
    return True


def recovery(env: Env, report: dict[str, Any], spec: m.Recovery) -> dict[str, Any]:
    """Seconds from the end of ``fault_end`` until completed/s is back to ``min_ratio`` of
    its median before ``fault_start`` (timeline seconds mapped to wall-clock seconds: the
    first timeline row is the second of ``started_at``; about +-1 s)."""
    for name in (spec.fault_start, spec.fault_end):
        if name not in env.marks:
            raise RuntimeError(f"recovery: no activity named {name!r} ran (ran: "
                               f"{', '.join(env.marks) or 'none'})")
    tl = report.get("timeline") or {}
    t_s, completed = tl.get("t_s") or [], tl.get("completed") or []
    if not t_s or not report.get("started_at"):
        raise RuntimeError("recovery: the report has no timeline")
    first = math.floor(datetime.fromisoformat(report["started_at"]).timestamp())
    seconds = [first + (t - t_s[0]) for t in t_s]
    start = env.marks[spec.fault_start][0]
    end = env.marks[spec.fault_end][1]
    before = [c for s, c, t in zip(seconds, completed, t_s, strict=False)
              if t >= 0 and s + 1 <= start]
    if not before:  # the fault came during ramp-up: use what there is
        before = [c for s, c in zip(seconds, completed, strict=False) if s + 1 <= start]
    baseline = statistics.median(before) if before else 0.0
    need = spec.min_ratio * baseline
    full = seconds[:-1]  # the last second is partial
    back = next((s for s, c in zip(full, completed, strict=False)
                 if s >= math.floor(end) and c >= need), None)
    recovered_after = None if back is None else round(max(0.0, back + 1 - end), 1)
    during = [c for s, c in zip(seconds, completed, strict=False) if start <= s < end]
    return {"baseline_per_s": baseline, "threshold_per_s": round(need, 1),
            "min_during_fault_per_s": min(during) if during else None,
            "fault_s": round(end - start, 2), "recovered_after_s": recovered_after,
            "within_s": spec.within_s,
            "passed": recovered_after is not None and recovered_after <= spec.within_s}


FIGURES = ("exit_code", "verdict", "sent", "acked", "handled", "lost", "duplicates",
           "lost_by_qos.0", "lost_by_qos.1", "lost_by_qos.2", "duplicates_by_qos.1",
           "duplicates_by_qos.2", "rss_mb.growth", "rejected",
           "achieved_rate", "goodput_rate", "latency_ms.p50", "latency_ms.p99", "breaker.opened",
           "breaker.closed", "breaker.state", "errors", "broker.reconnects",
           "broker.disconnects", "broker.publish_errors", "core.transport.redelivered",
           "core.transport.reconnects")


def load_report(env: Env, p: m.LoadReport) -> tuple[Any, bool]:
    if env.load is None:
        raise RuntimeError("no load run in this experiment's environment (environment.load)")
    code = env.load.wait()
    report = env.load.report()
    checks = []
    for path, cond in p.expect.items():
        actual = code if path == "exit_code" else get_path(report, path)
        checks.append({"path": path, "expected": cond, "actual": actual,
                       "passed": check(actual, cond)})
    figures = {f: code if f == "exit_code" else get_path(report, f) for f in FIGURES}
    out: dict[str, Any] = {"exit_code": code, "report": str(env.load.report_dir / "report.json"),
                           "figures": figures, "checks": checks}
    ok = all(c["passed"] for c in checks)
    if p.recovery is not None:
        out["recovery"] = recovery(env, report, p.recovery)
        ok = ok and out["recovery"]["passed"]
    return out, ok


ACTIONS: dict[str, ActionFn] = {
    "sleep": sleep, "toxic_add": toxic_add, "toxic_remove": toxic_remove,
    "proxy_disable": proxy_disable, "proxy_enable": proxy_enable, "proxy_reset": proxy_reset,
    "broker_pause": broker_pause, "broker_resume": broker_resume, "broker_kill": broker_kill,
    "broker_start": broker_start, "broker_restart": broker_restart, "core_kill": core_kill,
    "core_restart": core_restart, "handler_fault": handler_fault,
    "handler_fault_clear": handler_fault_clear,
}
PROBES: dict[str, ProbeFn] = {
    "core_ping": core_ping, "broker_reachable": broker_reachable,
    "proxy_has_no_toxics": proxy_has_no_toxics, "sut_alive": sut_alive,
    "load_report": load_report,
}
