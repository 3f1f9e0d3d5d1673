"""The three dashboards, as data: overview, chaos run and load generator (:data:`DASHBOARDS`).

Each is a :class:`~catga_bench.observability.dashboards.panels.DashboardSpec` of rows of panels;
every query uses only the metrics listed in docs/metrics.md.
"""

from __future__ import annotations

from catga_bench.observability.dashboards.panels import (
    BREAKER_OPEN_REJECTS,
    COMPLETED_RATE,
    COMPLETED_RATE_OF,
    FAILED_RATE,
    FAULT_STATES,
    HANDLER_FAILURES,
    LATENCY_THRESHOLDS,
    PUBLISHED_RATE,
    SLO_P99,
    DashboardSpec,
    Query,
    Row,
    breaker_state,
    kinded_buckets,
    quantile,
    rate,
    stat,
    timeline,
    ts,
    zero_if_absent,
)

OVERVIEW = DashboardSpec(
    uid="catga-overview",
    title="Catga overview",
    description="Throughput, latency, errors, backpressure and resilience of a Catga mediator "
                "(metrics of docs/metrics.md; also emitted by .NET Catga).",
    rows=(
        Row("Now", (
            stat("Throughput now", "Messages admitted per second (send + publish).",
                 Query(PUBLISHED_RATE, "msg/s"), unit="ops"),
            stat("P99 latency now", "P99 of event fan-out and command handling time.",
                 Query(quantile(0.99, kinded_buckets()), "P99"), unit="ms",
                 thresholds=LATENCY_THRESHOLDS),
            stat("Error ratio now", "Failed messages / admitted messages.",
                 Query(f"{FAILED_RATE} / {PUBLISHED_RATE}", "errors"), unit="percentunit",
                 thresholds=((None, "green"), (0.01, "red"))),
            stat("Open breakers", "Circuit breakers open now (0 when none is configured).",
                 Query(zero_if_absent("count(catga_circuit_breaker_state == 1)"), "open"),
                 thresholds=((None, "green"), (1.0, "red"))),
            stat("Dead letters (total)", "Deliveries dead-lettered since the process started.",
                 Query("sum(catga_deadletter_messages_total)", "dead letters"),
                 thresholds=((None, "green"), (1.0, "red"))),
            stat("Duplicates suppressed (total)",
                 "Idempotency hits since the process started (QoS 2).",
                 Query("sum(catga_idempotency_hits_total)", "hits")),
        )),
        Row("Traffic", (
            ts("Throughput by message type",
               "Messages admitted by send/publish per second, in total and by message type.",
               Query(PUBLISHED_RATE, "all"),
               Query(f"sum by (message_type) ({rate('catga_messages_published_total')})",
                     "{{message_type}}"),
               unit="ops", min=0),
            ts("Error ratio",
               "Failed messages (a request failed, or an event handler finally failed) / "
               "admitted messages.",
               Query(f"{FAILED_RATE} / {PUBLISHED_RATE}", "error ratio"),
               unit="percentunit", min=0),
        )),
        Row("Latency", (
            ts("Latency P50 / P99 / P999",
               "Event fan-out time (every handler, with retries) and command handling time, "
               "from the duration histograms. The red line is the design's 100 ms P99 "
               "objective.",
               Query(quantile(0.5, kinded_buckets(), "kind"), "P50 {{kind}}"),
               Query(quantile(0.99, kinded_buckets(), "kind"), "P99 {{kind}}"),
               Query(quantile(0.999, kinded_buckets(), "kind"), "P999 {{kind}}"),
               unit="ms", min=0, thresholds=LATENCY_THRESHOLDS),
            ts("Event-loop lag",
               "How late the event loop woke a 50 ms sampler: a busy loop delays every "
               "message.",
               Query(quantile(0.5, rate("catga_event_loop_lag_milliseconds_bucket")), "P50"),
               Query(quantile(0.99, rate("catga_event_loop_lag_milliseconds_bucket")), "P99"),
               unit="ms", min=0),
        )),
        Row("Backpressure", (
            ts("Active and queued",
               "Messages being processed, bulkhead slots in use and callers waiting for one.",
               Query("sum(catga_messages_active)", "active messages"),
               Query("sum by (limiter) (catga_limiter_active)", "{{limiter}} slots in use"),
               Query("sum by (limiter) (catga_limiter_queue_depth)", "{{limiter}} queued"),
               min=0),
            ts("Rejected",
               "Calls rejected at once by a full bulkhead queue, and calls failed fast by an "
               "open breaker, per second.",
               Query(f"sum by (limiter) ({rate('catga_resilience_bulkhead_rejected_total')})",
                     "bulkhead {{limiter}}"),
               Query(BREAKER_OPEN_REJECTS, "open breakers"),
               unit="ops", min=0),
        )),
        Row("Resilience", (
            breaker_state("Circuit breaker state"),
            ts("Timeouts", "Handler calls cut by their timeout, per second.",
               Query(f"sum({rate('catga_resilience_timeouts_total')})", "timeouts"),
               unit="ops", min=0, width=6),
            ts("Retries", "Retries (before each backoff sleep), per second.",
               Query(f"sum({rate('catga_resilience_retries_total')})", "retries"),
               unit="ops", min=0, width=6),
            ts("Idempotency hits", "Duplicates suppressed and first deliveries (QoS 2), "
               "per second.",
               Query(f"sum({rate('catga_idempotency_hits_total')})", "hits (duplicates)"),
               Query(f"sum({rate('catga_idempotency_misses_total')})", "misses (first seen)"),
               unit="ops", min=0, width=6),
            ts("Dead letters and failed handler calls",
               "Deliveries dead-lettered after their last attempt, and event handler calls "
               "that failed, per second.",
               Query(f"sum({rate('catga_deadletter_messages_total')})", "dead-lettered"),
               Query(HANDLER_FAILURES, "handler call failures"),
               unit="ops", min=0, width=6),
        )),
    ),
)

CHAOS_RUN = DashboardSpec(
    uid="catga-chaos-run",
    title="Catga chaos run",
    description="What a fault did: the injected faults (catga_bench_fault_active, exported by the "
                "harness) against latency with its SLO line, throughput, breakers and "
                "rejections.",
    fault_annotations=True,
    rows=(
        Row("Fault injection", (
            timeline("Faults",
                     "1 while a fault is injected (handler outage, proxy toxic, broker pause); "
                     "'none' when the run declares no fault.",
                     Query("max by (fault) (catga_bench_fault_active) or on() "
                           'label_replace(vector(0), "fault", "none", "", "")', "{{fault}}"),
                     mappings=FAULT_STATES, height=5),
        )),
        Row("Service level", (
            ts("P99 latency vs SLO",
               "P99 latency from the intended send time (coordinated omission corrected), per "
               "stream; the dashed red line is the run's P99 target.",
               Query(quantile(0.99, rate("catga_bench_latency_milliseconds_bucket"),
                              "stream"), "P99 {{stream}}"),
               Query(SLO_P99, "SLO P99"),
               unit="ms", min=0, slo_lines=("SLO P99",)),
            ts("Throughput",
               "Offered rate and completions per second by outcome (ok, error, rejected).",
               Query("sum(catga_bench_offered_rate)", "offered"),
               Query(f"sum by (outcome) ({rate('catga_bench_messages_completed_total')})",
                     "{{outcome}}"),
               unit="ops", min=0),
        )),
        Row("Resilience", (
            breaker_state("Breaker state"),
            ts("Rejections",
               "Calls rejected by a full bulkhead, calls failed fast by an open breaker, and "
               "messages the generator saw rejected, per second.",
               Query(f"sum by (limiter) ({rate('catga_resilience_bulkhead_rejected_total')})",
                     "bulkhead {{limiter}}"),
               Query(BREAKER_OPEN_REJECTS, "open breakers"),
               Query(COMPLETED_RATE_OF.format(outcome="rejected"), "rejected (generator)"),
               unit="ops", min=0),
            ts("Errors and timeouts",
               "Messages completed with an error, event handler calls that failed and handler "
               "calls cut by their timeout, per second.",
               Query(COMPLETED_RATE_OF.format(outcome="error"), "errors (generator)"),
               Query(HANDLER_FAILURES, "handler call failures"),
               Query(f"sum({rate('catga_resilience_timeouts_total')})", "timeouts"),
               unit="ops", min=0),
        )),
    ),
)

LATENCY_BUCKETS = rate("catga_bench_latency_milliseconds_bucket")
LOAD_GENERATOR = DashboardSpec(
    uid="catga-load-generator",
    title="Catga load generator",
    description="Is the test itself healthy? Offered vs achieved rate, dropped sends, schedule "
                "lag and latency from the intended send time (catga_bench_* metrics).",
    rows=(
        Row("Now", (
            stat("Offered rate now", "The rate the generators are asked to offer.",
                 Query("sum(catga_bench_offered_rate)", "offered"), unit="ops"),
            stat("Achieved rate now", "Messages completed per second.",
                 Query(COMPLETED_RATE, "achieved"), unit="ops"),
            stat("Achieved / offered", "Below 100% the generator or the system cannot keep up.",
                 Query(f"{COMPLETED_RATE} / sum(catga_bench_offered_rate)", "ratio"),
                 unit="percentunit", thresholds=((None, "red"), (0.95, "orange"),
                                                 (0.99, "green"))),
            stat("Dropped sends (total)", "Messages due but never sent, since the run started.",
                 Query("sum(catga_bench_dropped_sends_total)", "dropped"),
                 thresholds=((None, "green"), (1.0, "red"))),
            stat("Behind schedule now", "How far the slowest generator is behind its schedule.",
                 Query("max(catga_bench_generator_behind_seconds)", "behind"), unit="s",
                 thresholds=((None, "green"), (0.1, "orange"), (1.0, "red"))),
            stat("In flight now", "Messages issued and not yet completed.",
                 Query("sum(catga_bench_in_flight_messages)", "in flight")),
        )),
        Row("Rate", (
            ts("Offered vs achieved rate",
               "Offered rate (gauge) against messages sent and completed per second.",
               Query("sum(catga_bench_offered_rate)", "offered"),
               Query(f"sum({rate('catga_bench_messages_sent_total')})", "sent"),
               Query(COMPLETED_RATE, "achieved (completed)"),
               unit="ops", min=0),
            ts("Dropped sends", "Messages due but never sent (in-flight cap reached), per second.",
               Query(f"sum({rate('catga_bench_dropped_sends_total')})", "dropped"),
               unit="ops", min=0),
        )),
        Row("Latency", (
            ts("Latency from intended send time",
               "P50/P99/P999 measured from each message's intended send time (coordinated "
               "omission corrected); the dashed red line is the run's P99 target.",
               Query(quantile(0.5, LATENCY_BUCKETS), "P50"),
               Query(quantile(0.99, LATENCY_BUCKETS), "P99"),
               Query(quantile(0.999, LATENCY_BUCKETS), "P999"),
               Query(SLO_P99, "SLO P99"),
               unit="ms", min=0, slo_lines=("SLO P99",)),
            ts("Generator behind schedule", "How far the slowest generator is behind its "
               "schedule (0 when on time).",
               Query("max(catga_bench_generator_behind_seconds)", "behind"), unit="s", min=0),
        )),
        Row("Messages", (
            ts("In-flight messages", "Messages issued and not yet completed.",
               Query("sum(catga_bench_in_flight_messages)", "in flight"), min=0),
            ts("Completions by outcome", "Messages completed per second: ok, error, rejected.",
               Query(f"sum by (outcome) ({rate('catga_bench_messages_completed_total')})",
                     "{{outcome}}"),
               unit="ops", min=0),
        )),
    ),
)

#: Every dashboard, keyed by its uid (which is also its file name).
DASHBOARDS: dict[str, DashboardSpec] = {d.uid: d for d in (OVERVIEW, CHAOS_RUN, LOAD_GENERATOR)}
