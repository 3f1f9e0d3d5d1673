#!/usr/bin/env bash
# The performance gate of this repository, with catga-bench (any CI, or by hand):
#  1. runs perf/scenario.py RUNS times, each judged by perf/slo.toml (its SLO gate) and writing
#     reports/candidate/run-K/report.{json,md,html};
#  2. when a stored baseline exists (perf-baseline/, report.json files of earlier runs),
#     compares the candidate's runs with it: `catga-bench compare` fails on a regression
#     beyond MARGIN (exit 1) and says when it cannot tell at this noise (exit 3);
#     without one it says so, and with SAVE_BASELINE=1 stores these runs as the baseline
#     (commit perf-baseline/ afterwards; to re-baseline on purpose, delete it first);
#  3. exits non-zero when the gate or the comparison failed.
# A baseline is only comparable when recorded on the same kind of machine as the candidate.
# Settings (environment): RUNS, DURATION, USERS, SCENARIO, SLO_FILE, BASELINE, REPORTS,
# MARGIN, SAVE_BASELINE, LOCUST_ARGS (extra options, e.g. "--sut asyncapi --sut-spec
# perf/service.asyncapi.yaml --nats-url nats://127.0.0.1:4222"), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-5}"                     # runs per candidate: the comparison's samples
DURATION="${DURATION:-30}"            # seconds per run
USERS="${USERS:-10}"
SCENARIO="${SCENARIO:-perf/scenario.py}"
SLO_FILE="${SLO_FILE:-perf/slo.toml}"
BASELINE="${BASELINE:-perf-baseline}"
REPORTS="${REPORTS:-reports}"
MARGIN="${MARGIN:-0.03}"              # a slowdown under 3% is not a regression
SAVE_BASELINE="${SAVE_BASELINE:-0}"
LOCUST_ARGS="${LOCUST_ARGS:-}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"

rm -rf "$REPORTS/candidate" "$REPORTS/compare"
mkdir -p "$REPORTS/candidate"

gate=0
for k in $(seq 1 "$RUNS"); do
    echo "== catga-bench: run $k of $RUNS: $SCENARIO, ${DURATION}s"
    # shellcheck disable=SC2086  # LOCUST_ARGS is a list of options
    "$PYTHON" -m locust -f "$SCENARIO" --headless -u "$USERS" -r "$USERS" -t "${DURATION}s" \
        --only-summary --slo-file "$SLO_FILE" --report-dir "$REPORTS/candidate/run-$k" \
        $LOCUST_ARGS
    code=$?
    echo "== catga-bench: run $k exit $code (0 met its SLO, 1 missed, 2 usage, 3 environment)"
    if ((code > gate)); then gate=$code; fi  # the worst: 3 (no verdict) over 1 (missed)
done

compare=0
if [[ -d "$BASELINE" ]]; then
    echo "== catga-bench: comparing $REPORTS/candidate with the baseline $BASELINE"
    "$PYTHON" -m catga_bench.cli compare "$BASELINE" "$REPORTS/candidate" \
        --margin "$MARGIN" --report-dir "$REPORTS/compare"
    compare=$?
    echo "== catga-bench: compare exit $compare (0 same or better, 1 regressed," \
         "2 usage, 3 cannot tell at this noise: more runs)"
else
    echo "== catga-bench: no baseline at $BASELINE/: nothing to compare with"
    if [[ "$SAVE_BASELINE" == 1 ]]; then
        if ((gate == 0)); then
            cp -r "$REPORTS/candidate" "$BASELINE"
            echo "== catga-bench: stored these $RUNS runs as the baseline $BASELINE/" \
                 "(commit it)"
        else
            echo "== catga-bench: the gate failed: not storing these runs as the baseline"
        fi
    else
        echo "== catga-bench: SAVE_BASELINE=1 stores this run's reports as the baseline"
    fi
fi

if ((gate != 0)); then
    echo "== catga-bench: FAILED: a run missed its SLO or could not run (exit $gate)"
    exit "$gate"
fi
if ((compare != 0)); then
    echo "== catga-bench: FAILED: the comparison with the baseline (exit $compare)"
    exit "$compare"
fi
echo "== catga-bench: passed"
