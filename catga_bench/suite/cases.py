"""The release gate's tables: its cases (a scenario, how long per profile, what it proves) and
its fault matrix (the shipped chaos experiments, what each injects and checks), with the
profiles and transports they run on. Data only: :mod:`catga_bench.suite.run` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field

PROFILES = ("ci", "release")
TRANSPORTS = ("embedded", "nats", "redis")
BROKERS = ("nats", "redis")


@dataclass(frozen=True)
class Case:
    """One gate case: a scenario, how long per profile, and what it proves."""

    name: str
    scenario: str
    what: str
    seconds: dict[str, int]
    transports: tuple[str, ...] = ("embedded",)
    users: int = 20
    args: tuple[str, ...] = ()
    remote_users: int = 10
    #: core_killed: seconds into the run to kill -9 the core, and how long it stays down
    kill_at: dict[str, float] = field(default_factory=dict)
    down_s: float = 1.5


_REMOTE = ("embedded", "nats", "redis")

CASES: tuple[Case, ...] = (
    Case("high_fanout", "high_fanout", "120 handlers per event: P99 < 100 ms, nothing lost",
         {"ci": 10, "release": 60}, _REMOTE),
    Case("high_throughput", "high_throughput", "10.5K msg/s offered: >= 10K msg/s achieved, "
         "P99 < 100 ms", {"ci": 12, "release": 60}),
    Case("slow_handlers", "slow_handlers", "5 s handlers cut at 1 s: fast P99 < 100 ms, "
         "timeouts counted, loop lag P99 < 50 ms", {"ci": 10, "release": 60}, _REMOTE),
    Case("failing_handlers", "failing_handlers", "handler outage 4-10 s: breaker opens within "
         "5 failures, closes <= 3 s after recovery, nothing lost", {"ci": 16, "release": 60},
         _REMOTE),
    Case("overload", "overload", "10x overload: rejections counted, P99 of admitted < 100 ms, "
         "RSS growth < 100 MB", {"ci": 10, "release": 60}),
    Case("exactly_once", "exactly_once", "QoS 2 with 5% re-sent ids: duplicates 0, lost 0",
         {"ci": 8, "release": 60}),
    Case("service_time", "service_time", "500 req/s to a 20 ms handler: P99 follows the "
         "handler path (what --baseline compares best)", {"ci": 3, "release": 60}, users=4),
    Case("core_killed", "high_fanout", "QoS 1, the core killed -9 mid-run and restarted: "
         "lost 0", {"ci": 12, "release": 60}, ("nats", "redis"), remote_users=5,
         args=("--qos", "1", "--handlers", "20", "--slo-p99-ms", "off", "--slo-p999-ms", "off",
               "--slo-min-throughput", "off", "--slo-max-error-ratio", "off"),
         kill_at={"ci": 4.0, "release": 20.0}),
)
CASE_NAMES = tuple(c.name for c in CASES)


@dataclass(frozen=True)
class Fault:
    """One fault of the matrix: the shipped experiment ``experiments/<name>.yaml``, what it
    injects and what it checks, and its ``--var`` overrides per profile (``{}`` = the file's
    defaults)."""

    name: str
    what: str
    vars: dict[str, dict[str, str]]
    #: its targets are latencies: never run beside another cell (``--jobs``)
    exclusive: bool = False


#: every fault cell also checks, per QoS level of its three streams: QoS 1/2 lost 0, QoS 2
#: duplicates 0, QoS 0 loss reported
FAULTS: tuple[Fault, ...] = (
    Fault("link_latency", "link latency 50 ms +-10 ms: exit 0, P99 < 500 ms",
          {"ci": {"duration": "11", "warmup_s": "3", "fault_s": "4"}, "release": {}},
          exclusive=True),
    Fault("link_partition", "link down 10 s, then healed: throughput back within 10 s",
          {"ci": {"duration": "22", "warmup_s": "4"}, "release": {}}),
    Fault("bandwidth_squeeze", "link squeezed to 32 KB/s: throughput back within 15 s",
          {"ci": {"duration": "11", "warmup_s": "3", "fault_s": "3"}, "release": {}}),
    Fault("reset_peer_storm", "every connection reset after 500 ms: throughput back "
          "within 10 s", {"ci": {"duration": "11", "warmup_s": "3", "fault_s": "3"},
                          "release": {}}),
    Fault("broker_kill_restart", "broker killed -9 and restarted: throughput back within 15 s",
          {"ci": {"duration": "12", "warmup_s": "3", "down_s": "2"}, "release": {}}),
    Fault("broker_pause", "broker frozen (SIGSTOP) then resumed: throughput back within 10 s",
          {"ci": {"duration": "11", "warmup_s": "3", "pause_s": "3"}, "release": {}}),
    Fault("handler_outage", "charge_card fails every call for 4 s: breakers open within 5 "
          "failures, close within 10 s of recovery", {"ci": {"duration": "12", "warmup_s": "3"},
                                                      "release": {}}),
    Fault("overload_10x", "10x overload into a bulkhead: rejected > 0 (counted), admitted "
          "P99 < 100 ms, RSS growth < 100 MB", {"ci": {"duration": "12"}, "release": {}},
          exclusive=True),
)
FAULT_NAMES = tuple(f.name for f in FAULTS)
