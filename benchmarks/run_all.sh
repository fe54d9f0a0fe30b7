#!/usr/bin/env bash
# The figures of issues 17 and 22, one benchmark after the other, tracing off, then a summary.
#
#   benchmarks/run_all.sh                  # full run (about an hour on a quiet 2-core machine)
#   benchmarks/run_all.sh --quick          # fewer events and rounds (a few minutes): a smoke run
#   OLD=/tmp/polyn-old benchmarks/run_all.sh   # also polyn from another checkout (publish, request)
#   benchmarks/run_all.sh --summary DIR    # only print the summary of an earlier run's logs
#
# Each benchmark's full output goes to $LOGS/<name>.txt (stderr to <name>.err; default
# bench-logs/<UTC time>); benchmarks/summary.py reads them and prints one table: each figure,
# its target, met or not. Run it on a quiet machine: figures measured while other programs use
# the CPU are indicative only (the benchmarks compare against baselines in the same run, so read
# the ratios, not the rates). Use the interpreter of a venv with the bench extra
# (pip install -e ".[dev,bench]"), or set PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
if [[ "${1:-}" == "--summary" ]]; then
    exec "$PY" benchmarks/summary.py "${2:?give the log folder}"
fi
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

# Tracing off: no OpenTelemetry SDK (the benchmarks never install one) and nothing named by
# the environment.
unset OTEL_PYTHON_TRACER_PROVIDER OTEL_TRACES_EXPORTER
export OTEL_SDK_DISABLED=true

LOGS=${LOGS:-bench-logs/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$LOGS"
OLD_ARGS=()
[[ -n "${OLD:-}" ]] && OLD_ARGS=(--old "$OLD")

run() {
    local name=$1
    shift
    echo ">> $name: $PY $*"
    local started=$SECONDS
    if ! "$PY" "$@" >"$LOGS/$name.txt" 2>"$LOGS/$name.err"; then
        echo "!! $name failed: see $LOGS/$name.err"
    fi
    echo "   done in $((SECONDS - started)) s"
}

if ((QUICK)); then
    run codec benchmarks/codec.py 0.5
    run publish benchmarks/publish.py --rounds 2 --events 10000 --ack-events 4000 "${OLD_ARGS[@]}"
    run request benchmarks/request.py --rounds 2 --count 500 "${OLD_ARGS[@]}"
    run request-2020-12 benchmarks/request.py --rounds 2 --count 500 --draft 2020-12
    run consume benchmarks/consume.py --only compare --events 5000 --rounds 1
    run consume-scale benchmarks/consume.py --only scale --events 20000 --backlog 20000
    run portal benchmarks/portal.py --rounds 2 --events 10000 --requests 500
    run schema-store benchmarks/schema_store.py 0 1000
else
    run codec benchmarks/codec.py 5
    run publish benchmarks/publish.py --rounds 5 "${OLD_ARGS[@]}"
    run request benchmarks/request.py --rounds 7 "${OLD_ARGS[@]}"
    run request-2020-12 benchmarks/request.py --rounds 7 --draft 2020-12
    run consume benchmarks/consume.py --only compare --rounds 3
    run consume-prefetch benchmarks/consume.py --only prefetch --rounds 3
    run consume-scale benchmarks/consume.py --only scale --events 100000
    run portal benchmarks/portal.py --rounds 5
    run schema-store benchmarks/schema_store.py 0 100 10000
fi

echo
"$PY" benchmarks/summary.py "$LOGS"
