#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: a figure that does not
# move with the load of a shared machine, for comparing builds of the hot path step by step.
#
#   bench/instructions.sh [BINARY ...]     default: target/release/cachegate (build it first)
#
# For each binary: a private redis-server (no persistence) with KEYS keys of the benchmark's
# 1 KiB JSON value, cachegate started under callgrind with instrumentation off, a warm-up, then
# instrumentation on for a wrk run of each scenario (GET hit, PUT with a ttl, batch get of 10,
# and a conditional PUT: the same PUT with If-Match carrying the ETag of the stored value, which
# stays the same because the same bytes are written back) at -c8, and the instructions counted
# divided by the requests served (a binary that answers no ETag gets "—" for the conditional
# PUT). With KEEP_TMP=1 each profile stays as TMP/callgrind.<binary number>.<scenario>, for
# callgrind_annotate. Kernel time (the TCP
# stack, which is about half of cachegate's CPU under load) is not counted: this measures the
# work cachegate itself does, and throughput stays bench/run.sh's job.
#
# Environment: KEYS=10000, VALUE_BYTES=1024, DURATION=3 (seconds per scenario), RUST_LOG=warn.
# Needs valgrind, wrk, redis-server, redis-tools, python3, curl (Debian packages).
# Only 127.0.0.1 is contacted; everything started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${KEYS:-10000}
VALUE_BYTES=${VALUE_BYTES:-1024}
DURATION=${DURATION:-3}
LOG_LEVEL=${RUST_LOG:-warn}
BINARIES=("$@")
[[ ${#BINARIES[@]} -gt 0 ]] || BINARIES=("$ROOT/target/release/cachegate")

die() { echo "instructions.sh: $*" >&2; exit 1; }
for tool in valgrind callgrind_control wrk redis-server redis-cli python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install valgrind wrk redis-server redis-tools python3 curl)"
done
for bin in "${BINARIES[@]}"; do [[ -x $bin ]] || die "no executable at $bin"; done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cachegate-instr.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ ${KEEP_TMP:-0} == 1 ]] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

read -r REDIS_PORT HTTP_PORT <<<"$(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')"

# Polls a command every 0.2 s for at most $1 seconds.
poll() {
    local limit=$1; shift
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || return 1
        sleep 0.2
    done
}

VALUE_FILE=$TMP/value.json
python3 "$ROOT/bench/make_value.py" "$VALUE_BYTES" "$VALUE_FILE"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" &
PIDS+=($!)
poll 10 redis-cli -p "$REDIS_PORT" ping || die "redis-server did not start"
python3 "$ROOT/bench/preload.py" "$KEYS" "$VALUE_FILE" | redis-cli -p "$REDIS_PORT" --pipe > "$TMP/preload.txt"

export BENCH_KEYS=$KEYS BENCH_VALUE_FILE=$VALUE_FILE BENCH_TTL=300 BENCH_BATCH=10 BENCH_PREFIX=bench:
URL=http://127.0.0.1:$HTTP_PORT

# Instructions per request of one scenario against the running cachegate $1.
count() {
    local pid=$1 script=$2 out=$TMP/callgrind.out
    rm -f "$out".*
    wrk -t1 -c8 -d1s -s "$ROOT/bench/wrk/$script" "$URL" > /dev/null
    callgrind_control -i on "$pid" > /dev/null 2>&1
    local requests
    wrk -t1 -c8 -d"${DURATION}s" -s "$ROOT/bench/wrk/$script" "$URL" > "$TMP/wrk.txt"
    # Every request must succeed (a 412 of a conditional PUT would measure the wrong path).
    ! grep -q 'Non-2xx' "$TMP/wrk.txt" || { cat "$TMP/wrk.txt" >&2; die "$script: requests failed"; }
    requests=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
    callgrind_control -i off "$pid" > /dev/null 2>&1
    callgrind_control -d "$pid" > /dev/null 2>&1
    # The dump is complete once its closing totals line is written.
    poll 30 grep -q '^totals:' "$out".* || die "callgrind wrote no profile"
    awk -v n="$requests" '/^totals:/ {s += $2} END {printf "%.0f", s / n}' "$out".*
    cat "$out".* > "$TMP/callgrind.$BIN_NUMBER.${script%.lua}"
}

printf '| binary | GET hit | PUT | batch get of 10 | PUT with If-Match |\n|---|---:|---:|---:|---:|\n'
BIN_NUMBER=0
# CACHE_SLOW_MS: under callgrind on a busy machine Redis calls take over the default 100 ms, and
# each "slow Redis call" WARN line costs about 20,000 instructions: a term the load would set.
for bin in "${BINARIES[@]}"; do
    BIN_NUMBER=$((BIN_NUMBER + 1))
    env -i PATH="$PATH" REDIS_HOST=127.0.0.1 REDIS_PORT="$REDIS_PORT" CACHE_HOST=127.0.0.1 \
        CACHE_PORT="$HTTP_PORT" CACHE_LOG_FORMAT=json RUST_LOG="$LOG_LEVEL" REDIS_COMMAND_TIMEOUT_MS=5000 \
        CACHE_SLOW_MS=3600000 \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/callgrind.out.%p" \
        "$bin" > "$TMP/cachegate.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    poll 60 curl -fsS -o /dev/null "$URL/health/ready" || { tail "$TMP/cachegate.log" >&2; die "$bin did not start"; }
    # The ETag of the preloaded value (every key holds the same one); none before entity tags.
    etag=$(curl -fsS -D - -o /dev/null "$URL/v1/cache/bench:0" | tr -d '\r' | awk 'tolower($1) == "etag:" {print $2}')
    get=$(count "$pid" get_hit.lua)
    put=$(count "$pid" put.lua)
    batch=$(count "$pid" batch_get.lua)
    conditional="—"
    [[ -z $etag ]] || conditional=$(BENCH_IF_MATCH=$etag count "$pid" put_if_match.lua)
    printf '| %s | %s | %s | %s | %s |\n' "$bin" "$get" "$put" "$batch" "$conditional"
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
