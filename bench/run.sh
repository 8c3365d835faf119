#!/usr/bin/env bash
# cachegate benchmark: one command, `bench/run.sh`.
#
# Builds the release binary, starts a private redis-server and cachegate on free loopback ports,
# preloads KEYS keys holding a VALUE_BYTES JSON value, then drives wrk (-t1 -cCONNECTIONS) through
# GET hit, GET miss, PUT with a ttl, PUT with 3 tags, batch get of BATCH keys and a 90/10 GET/PUT
# mix, then invalidates a tag of INVALIDATE_KEYS keys against redis-cli --scan | xargs unlink. In the same
# run it measures redis-benchmark GET, SET and MGET of BATCH keys at the same concurrency and value
# size (no pipelining), and prints every cachegate figure as a ratio to that baseline. Optional
# second column: webdis against the same Redis. Results: a Markdown report on stdout, appended
# as a new "Run" section to OUT (docs/benchmarks.md).
#
# With CLUSTER=1 (or CLUSTER=only, without the standalone run) it also starts a Redis Cluster of
# three primaries (redis-server, free loopback ports, no persistence, its files on /dev/shm when
# there is one), preloads it, points a cachegate at it (REDIS_MODE=cluster) and measures GET hit,
# PUT and batch get of BATCH keys in BATCH hash slots over all three primaries, each as a ratio to
# `redis-benchmark --cluster` at the same concurrency (GET, SET, MGET of BATCH keys of one hash
# slot: Redis has no MGET across slots) in the same run.
#
# Only 127.0.0.1 is ever contacted. Everything started here is stopped on exit.
#
# Environment (all optional):
#   DURATION=10s         measured length of each wrk / redis-benchmark run (wrk syntax: 10s, 1m)
#   WARMUP=2s            unmeasured wrk run before each measured one (0 to skip)
#   CONNECTIONS=64       wrk -c and redis-benchmark -c
#   THREADS=1            wrk -t
#   KEYS=10000           preloaded keys
#   VALUE_BYTES=1024     size of the JSON value (exact)
#   TTL=300              ttl of each PUT (?ttl=)
#   BATCH=10             keys per batch get / MGET
#   INVALIDATE_KEYS=1000 keys of the tag invalidated per round (and deleted by redis-cli)
#   INVALIDATE_ROUNDS=5  rounds of the invalidation scenario
#   WITH_WEBDIS=auto     auto: run webdis when installed; 1: require it; 0: skip
#   INFO_RUN=1           also run GET hit once against a cachegate with RUST_LOG=info (0 to skip)
#   CACHEGATE_RUST_LOG=warn  RUST_LOG of the measured cachegate
#   REDIS_POOL_SIZE      passed to cachegate when set
#   CACHEGATE_BIN        use this binary instead of `cargo build --release --locked`
#   OUT=docs/benchmarks.md  where the run is appended (relative to the repository root); empty: don't write
#   KEEP_TMP=0           1 keeps the scratch directory (logs, raw outputs)
#   CLUSTER=0            1: also the Redis Cluster run; only: the cluster run alone
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WRK_DIR=$ROOT/bench/wrk

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
KEYS=${KEYS:-10000}
VALUE_BYTES=${VALUE_BYTES:-1024}
TTL=${TTL:-300}
BATCH=${BATCH:-10}
INVALIDATE_KEYS=${INVALIDATE_KEYS:-1000}
INVALIDATE_ROUNDS=${INVALIDATE_ROUNDS:-5}
WITH_WEBDIS=${WITH_WEBDIS:-auto}
INFO_RUN=${INFO_RUN:-1}
CACHEGATE_RUST_LOG=${CACHEGATE_RUST_LOG:-warn}
CACHEGATE_BIN=${CACHEGATE_BIN:-}
OUT=${OUT-docs/benchmarks.md}
KEEP_TMP=${KEEP_TMP:-0}
CLUSTER=${CLUSTER:-0}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Seconds in a wrk-style duration: 10, 10s, 2m, 1h.
seconds() {
    local d=$1
    case $d in
        *h) echo $(( ${d%h} * 3600 )) ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *s) echo "${d%s}" ;;
        *) echo "$d" ;;
    esac
}
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
[[ $DURATION_S =~ ^[0-9]+$ && $DURATION_S -ge 1 ]] || die "DURATION must be whole seconds, minutes or hours (got '$DURATION')"
[[ $WARMUP_S =~ ^[0-9]+$ ]] || die "WARMUP must be whole seconds, minutes or hours (got '$WARMUP')"
for n in CONNECTIONS THREADS KEYS VALUE_BYTES TTL BATCH; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -ge 1 ]] || die "$n must be a positive integer (got '${!n}')"
done
(( VALUE_BYTES >= 64 )) || die "VALUE_BYTES must be at least 64"
(( KEYS >= BATCH )) || die "KEYS must be at least BATCH"
[[ $CLUSTER == 0 || $CLUSTER == 1 || $CLUSTER == only ]] || die "CLUSTER must be 0, 1 or only (got '$CLUSTER')"

for tool in wrk redis-server redis-cli redis-benchmark python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install wrk redis-server redis-tools python3 curl)"
done
[[ $CLUSTER != only ]] || WITH_WEBDIS=0
case $WITH_WEBDIS in
    auto) if command -v webdis >/dev/null; then WITH_WEBDIS=1; else WITH_WEBDIS=0; log "webdis not installed: no webdis column (apt-get install webdis)"; fi ;;
    1) command -v webdis >/dev/null || die "WITH_WEBDIS=1 but webdis is not installed (apt-get install webdis)" ;;
    0) ;;
    *) die "WITH_WEBDIS must be auto, 0 or 1" ;;
esac

# --- processes we start, stopped on exit ------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cachegate-bench.XXXXXX")
PIDS=()
cleanup() {
    local status=$?
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_TMP == 1 || $status != 0 ]]; then
        log "scratch directory kept: $TMP${CLUSTER_DIR:+ (cluster nodes: $CLUSTER_DIR)}"
    else
        rm -rf "$TMP"
        [[ -z ${CLUSTER_DIR:-} ]] || rm -rf "$CLUSTER_DIR"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one of our processes now (and forgets it).
stop() {
    local pid=$1 p keep=()
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Polls `check` every 0.1 s for at most $2 seconds; fails when the process $3 dies meanwhile.
wait_until() {
    local what=$1 limit=$2 pid=$3 logfile=$4; shift 4
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$what exited during start-up"
        fi
        if (( $(date +%s) >= deadline )); then
            tail -n 20 "$logfile" >&2 || true
            die "$what not ready after ${limit}s"
        fi
        sleep 0.1
    done
}

# N distinct free loopback ports (held open together while picked so they differ).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

rss_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
# utime + stime of a process, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# busy and total jiffies of the whole machine.
machine_ticks() { awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; total=busy+$5+$6; print busy, total}' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# --- build -------------------------------------------------------------------------------------
if [[ -z $CACHEGATE_BIN ]]; then
    log "building the release binary (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked)
    CACHEGATE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cachegate
    BIN_NOTE="built from the working tree by this run"
else
    BIN_NOTE="CACHEGATE_BIN=$CACHEGATE_BIN"
fi
[[ -x $CACHEGATE_BIN ]] || die "no executable at $CACHEGATE_BIN"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the value ---------------------------------------------------------------------------------
VALUE_FILE=$TMP/value.json
python3 "$ROOT/bench/make_value.py" "$VALUE_BYTES" "$VALUE_FILE"

# --- helpers shared by the standalone and the cluster run ---------------------------------------
# What they talk to, set by each run: the redis-server processes whose CPU is sampled, how
# redis-benchmark reaches Redis, cachegate's Redis variables, and the results file.
REDIS_CPU_PIDS=()
WD_PID=
RB_TARGET=()
CG_REDIS_ENV=()
RESULTS=

start_cachegate() { # port rust_log logfile
    env -i PATH="$PATH" HOME="${HOME:-/root}" \
        "${CG_REDIS_ENV[@]}" \
        CACHE_HOST=127.0.0.1 CACHE_PORT="$1" CACHE_LOG_FORMAT=json RUST_LOG="$2" \
        ${REDIS_POOL_SIZE:+REDIS_POOL_SIZE="$REDIS_POOL_SIZE"} \
        "$CACHEGATE_BIN" > "$3" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    local url="http://127.0.0.1:$1/health/ready"
    wait_until cachegate 30 "$LAST_PID" "$3" curl -fsS -o /dev/null "$url"
}

# A quick functional check so that a broken build does not produce nonsense figures.
expect() { # description expected-status curl-args...
    local what=$1 want=$2; shift 2
    local got
    got=$(curl -sS -o "$TMP/check.out" -w '%{http_code}' "$@") || die "$what: request failed"
    [[ $got == "$want" ]] || { cat "$TMP/check.out" >&2; echo >&2; die "$what: expected $want, got $got"; }
}

# CPU ticks of all the redis-server processes of the run.
redis_ticks() {
    local pid sum=0
    for pid in "${REDIS_CPU_PIDS[@]}"; do sum=$(( sum + $(cpu_ticks "$pid") )); done
    echo "$sum"
}

# Runs a command while sampling the CPU time of the server process, redis-server and the machine;
# the load generator's own CPU comes from bash's `time`. Appends one row to $RESULTS.
#   measure <kind> <target> <scenario> <server-pid or -> <outfile> <command...>
measure() {
    local kind=$1 target=$2 scenario=$3 spid=$4 outfile=$5; shift 5
    local s0=0 s1=0 r0 r1 m0 m1 t0 t1 gen
    [[ $spid == - ]] || s0=$(cpu_ticks "$spid")
    r0=$(redis_ticks); read -r -a m0 <<<"$(machine_ticks)"; t0=$(date +%s.%N)
    local TIMEFORMAT='%U %S'
    { time "$@" > "$outfile" 2>&1; } 2> "$outfile.time" || { cat "$outfile" >&2; die "$target $scenario: load generator failed"; }
    t1=$(date +%s.%N); read -r -a m1 <<<"$(machine_ticks)"; r1=$(redis_ticks)
    [[ $spid == - ]] || s1=$(cpu_ticks "$spid")
    gen=$(awk '{print $1 + $2}' "$outfile.time")
    local cpu
    cpu=$(awk -v s=$((s1 - s0)) -v r=$((r1 - r0)) -v g="$gen" -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" \
        -v mb=$((m1[0] - m0[0])) -v mt=$((m1[1] - m0[1])) -v np="$(nproc)" -v srv="$spid" \
        'BEGIN { w = t1 - t0; printf "%s\t%.0f\t%.0f\t%.0f\t%.0f", w, (srv == "-" ? -1 : 100 * s / hz / w), 100 * r / hz / w, 100 * g / w, (mt > 0 ? 100 * np * mb / mt : 0) }')
    local fields
    if [[ $kind == wrk ]]; then
        fields=$(grep '^BENCH_RESULT' "$outfile" | tail -n 1) || { cat "$outfile" >&2; die "$target $scenario: no result line from wrk"; }
    else
        # redis-benchmark --csv: "test","rps","avg","min","p50","p95","p99","max" (ms)
        fields=$(tail -n 1 "$outfile" | tr -d '"' | awk -F, '{printf "BENCH_RESULT rps=%s p50_us=%d p99_us=%d p999_us=-1 err_status=0 err_connect=0 err_read=0 err_write=0 err_timeout=0", $2, $5 * 1000, $7 * 1000}')
    fi
    printf '%s\t%s\t%s\t%s\n' "$target" "$scenario" "$cpu" "$fields" >> "$RESULTS"
}

# wrk_run <target> <scenario> <script> <base-url> <server-pid>
wrk_run() {
    local target=$1 scenario=$2 script=$3 url=$4 spid=$5
    local bt=cachegate
    [[ $target == webdis ]] && bt=webdis
    log "wrk: $target $scenario ($DURATION after a $WARMUP warm-up)"
    export BENCH_TARGET=$bt BENCH_KEYS=$KEYS BENCH_VALUE_FILE=$VALUE_FILE BENCH_TTL=$TTL BENCH_BATCH=$BATCH BENCH_PREFIX=bench:
    if (( WARMUP_S > 0 )); then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP_S}s" -s "$WRK_DIR/$script" "$url" > "$TMP/warmup.txt" 2>&1 \
            || { cat "$TMP/warmup.txt" >&2; die "wrk warm-up failed"; }
    fi
    measure wrk "$target" "$scenario" "$spid" "$TMP/wrk-$target-$scenario.txt" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION_S}s" --latency --timeout 5s -s "$WRK_DIR/$script" "$url"
}

# rb_run <scenario> <redis-benchmark test arguments...>: sized to last about DURATION.
rb_run() {
    local scenario=$1; shift
    local common=("${RB_TARGET[@]}" -c "$CONNECTIONS" -d "$VALUE_BYTES" -r "$KEYS" -P 1 --csv)
    local probe rps n
    probe=$(redis-benchmark "${common[@]}" -n 20000 "$@" 2>&1 | tail -n 1 | tr -d '"' | cut -d, -f2)
    [[ $probe =~ ^[0-9.]+$ ]] || die "redis-benchmark $scenario failed: $probe"
    n=$(awk -v r="$probe" -v d="$DURATION_S" 'BEGIN { n = int(r * d); if (n < 20000) n = 20000; print n }')
    log "redis-benchmark: $scenario (-n $n, about $DURATION)"
    measure rb redis-benchmark "$scenario" - "$TMP/rb-$RUN-$scenario.txt" redis-benchmark "${common[@]}" -n "$n" "$@"
}

# --- standalone: one redis-server ---------------------------------------------------------------
standalone_run() {
    RUN=standalone
    read -r REDIS_PORT CACHE_PORT INFO_PORT WEBDIS_PORT <<<"$(free_ports 4)"
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize no \
        --dir "$TMP" --logfile "$TMP/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    REDIS_CPU_PIDS=("$REDIS_PID")
    RB_TARGET=(-h 127.0.0.1 -p "$REDIS_PORT")
    CG_REDIS_ENV=(REDIS_HOST=127.0.0.1 REDIS_PORT="$REDIS_PORT")
    redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
    wait_until redis-server 10 "$REDIS_PID" "$TMP/redis.log" redis_ping

    log "preloading $KEYS keys x 2 (bench:N for HTTP, key:NNNNNNNNNNNN for redis-benchmark) of $VALUE_BYTES bytes"
    python3 "$ROOT/bench/preload.py" "$KEYS" "$VALUE_FILE" | redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe > "$TMP/preload.txt"
    grep -q "errors: 0, replies: $(( KEYS * 2 ))" "$TMP/preload.txt" || { cat "$TMP/preload.txt" >&2; die "preload failed"; }

    log "starting cachegate on 127.0.0.1:$CACHE_PORT (RUST_LOG=$CACHEGATE_RUST_LOG)"
    start_cachegate "$CACHE_PORT" "$CACHEGATE_RUST_LOG" "$TMP/cachegate.log"
    CG_PID=$LAST_PID
    RSS_START=$(rss_kib "$CG_PID" VmRSS)
    CG=http://127.0.0.1:$CACHE_PORT

    expect "cachegate GET hit" 200 "$CG/v1/cache/bench:0"
    cmp -s "$TMP/check.out" "$VALUE_FILE" || die "cachegate GET returned a different value than preloaded"
    expect "cachegate GET miss" 404 "$CG/v1/cache/miss:0"
    expect "cachegate PUT" 204 -X PUT -H 'Content-Type: application/json' --data-binary "@$VALUE_FILE" "$CG/v1/cache/bench:0?ttl=$TTL"
    expect "cachegate batch get" 200 -X POST -H 'Content-Type: application/json' --data '{"keys":["bench:0","bench:1","miss:0"]}' "$CG/v1/batch/get"
    grep -q '"missing":\["miss:0"\]' "$TMP/check.out" || { cat "$TMP/check.out" >&2; die "batch get answered an unexpected body"; }
    sleep 1 # let the allocator settle after start-up and the checks before the idle sample
    RSS_IDLE=$(rss_kib "$CG_PID" VmRSS)

    # webdis (optional)
    WD_PID=
    if [[ $WITH_WEBDIS == 1 ]]; then
        cat > "$TMP/webdis.json" <<EOF
{
  "redis_host": "127.0.0.1", "redis_port": $REDIS_PORT, "redis_auth": null,
  "http_host": "127.0.0.1", "http_port": $WEBDIS_PORT,
  "threads": $(nproc), "daemonize": false, "database": 0, "websockets": false,
  "verbosity": 1, "logfile": "$TMP/webdis.log"
}
EOF
        log "starting webdis on 127.0.0.1:$WEBDIS_PORT"
        webdis "$TMP/webdis.json" > "$TMP/webdis.out" 2>&1 &
        WD_PID=$!
        PIDS+=("$WD_PID")
        wait_until webdis 10 "$WD_PID" "$TMP/webdis.out" curl -fsS -o /dev/null "http://127.0.0.1:$WEBDIS_PORT/PING"
        WD=http://127.0.0.1:$WEBDIS_PORT
        expect "webdis GET" 200 "$WD/GET/bench:1"
        expect "webdis SETEX" 200 -X PUT --data-binary "@$VALUE_FILE" "$WD/SETEX/bench:1/$TTL"
        expect "webdis MGET" 200 "$WD/MGET/bench:1/bench:2"
        WD_RSS_IDLE=$(rss_kib "$WD_PID" VmRSS)
    fi

    RESULTS=$TMP/results.tsv
    : > "$RESULTS"
    local mget_args=(MGET)
    for _ in $(seq "$BATCH"); do mget_args+=("key:__rand_int__"); done

    # Interleaved so that each figure and its baseline see the same background load.
    rb_run GET -t get
    wrk_run cachegate get_hit get_hit.lua "$CG" "$CG_PID"
    [[ -z $WD_PID ]] || wrk_run webdis get_hit get_hit.lua "$WD" "$WD_PID"
    wrk_run cachegate get_miss get_miss.lua "$CG" "$CG_PID"
    [[ -z $WD_PID ]] || wrk_run webdis get_miss get_miss.lua "$WD" "$WD_PID"
    rb_run SET -t set
    wrk_run cachegate put put.lua "$CG" "$CG_PID"
    wrk_run cachegate put_tags put_tags.lua "$CG" "$CG_PID"
    [[ -z $WD_PID ]] || wrk_run webdis put put.lua "$WD" "$WD_PID"
    rb_run MGET "${mget_args[@]}"
    wrk_run cachegate batch_get batch_get.lua "$CG" "$CG_PID"
    [[ -z $WD_PID ]] || wrk_run webdis batch_get batch_get.lua "$WD" "$WD_PID"
    wrk_run cachegate mix mix.lua "$CG" "$CG_PID"
    [[ -z $WD_PID ]] || wrk_run webdis mix mix.lua "$WD" "$WD_PID"

    # Invalidating a tag of INVALIDATE_KEYS keys through cachegate, against deleting the same
    # number of keys (same value, written the same way) with redis-cli --scan | xargs redis-cli
    # unlink, round after round so both see the same background load. Keys deleted per second.
    INVALIDATE=$TMP/invalidate.tsv
    : > "$INVALIDATE"
    now_s() { date +%s.%N; }
    write_batch() { # prefix tag-json
        python3 - "$1" "$2" "$INVALIDATE_KEYS" "$VALUE_FILE" > "$TMP/batch.json" <<'PY'
import json, sys
prefix, tags, n, value = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4]).read()
entries = [{"key": f"{prefix}{i}", "value": json.loads(value), "ttl": 600, "tags": tags} for i in range(n)]
print(json.dumps({"entries": entries, "atomic": False}))
PY
        expect "batch set for the invalidation scenario" 200 -X POST -H 'Content-Type: application/json' \
            --data-binary "@$TMP/batch.json" "$CG/v1/batch/set"
    }
    for round in $(seq "$INVALIDATE_ROUNDS"); do
        log "invalidate a tag of $INVALIDATE_KEYS keys, round $round of $INVALIDATE_ROUNDS"
        write_batch "inv:$round:" "[\"round-$round\"]"
        t0=$(now_s)
        curl -sS -o "$TMP/inv.out" -X POST -H 'Content-Type: application/json' \
            --data "{\"tags\":[\"round-$round\"]}" "$CG/v1/tags/invalidate"
        t1=$(now_s)
        grep -q "\"deleted\":$INVALIDATE_KEYS" "$TMP/inv.out" || { cat "$TMP/inv.out" >&2; die "the invalidation deleted another number of keys"; }
        printf 'cachegate\t%s\n' "$(awk -v a="$t0" -v b="$t1" -v n="$INVALIDATE_KEYS" 'BEGIN{printf "%.0f", n / (b - a)}')" >> "$INVALIDATE"
        write_batch "scan:$round:" '[]'
        t0=$(now_s)
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "scan:$round:*" \
            | xargs -r redis-cli -h 127.0.0.1 -p "$REDIS_PORT" unlink > /dev/null
        t1=$(now_s)
        left=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "scan:$round:*" | wc -l)
        [[ $left == 0 ]] || die "redis-cli left $left keys"
        printf 'redis-cli\t%s\n' "$(awk -v a="$t0" -v b="$t1" -v n="$INVALIDATE_KEYS" 'BEGIN{printf "%.0f", n / (b - a)}')" >> "$INVALIDATE"
    done


    RSS_PEAK=$(rss_kib "$CG_PID" VmHWM)
    sleep 1
    RSS_AFTER=$(rss_kib "$CG_PID" VmRSS)
    WD_RSS_PEAK=-1; WD_RSS_IDLE=${WD_RSS_IDLE:--1}
    [[ -z $WD_PID ]] || WD_RSS_PEAK=$(rss_kib "$WD_PID" VmHWM)

    if [[ $INFO_RUN == 1 ]]; then
        # The cost of the default access log: the same binary with RUST_LOG=info (one line per
        # request, to a file) against the measured one, in interleaved GET-hit rounds so that
        # both see the same background load. The idle one of the two costs next to nothing.
        log "starting a second cachegate with RUST_LOG=info (log to a file) on 127.0.0.1:$INFO_PORT"
        start_cachegate "$INFO_PORT" info "$TMP/cachegate-info.log"
        INFO_PID=$LAST_PID
        for round in 1 2 3; do
            wrk_run cachegate-info "get_hit_$round" get_hit.lua "http://127.0.0.1:$INFO_PORT" "$INFO_PID"
            wrk_run cachegate-default "get_hit_$round" get_hit.lua "$CG" "$CG_PID"
        done
        stop "$INFO_PID"
    fi
    stop "$CG_PID"
    [[ -z $WD_PID ]] || stop "$WD_PID"
    stop "$REDIS_PID" # the cluster run, if any, gets the machine to itself
}

# --- Redis Cluster: three primaries -------------------------------------------------------------
# The slot ranges of a cluster node from CLUSTER NODES, as "lo-hi,lo-hi".
node_slots() {
    redis-cli -h 127.0.0.1 -p "$1" cluster nodes | awk '$2 ~ /^127\.0\.0\.1:'"$1"'@/ {
        out = ""; for (i = 9; i <= NF; i++) if ($i ~ /^[0-9]+(-[0-9]+)?$/) out = out (out == "" ? "" : ",") $i
        print out }'
}

cluster_run() {
    RUN=cluster
    local ports buses i
    read -r -a ports <<<"$(free_ports 7)" # 3 data ports, 3 cluster-bus ports, cachegate's
    buses=("${ports[@]:3:3}")
    CLUSTER_CACHE_PORT=${ports[6]}
    ports=("${ports[@]:0:3}")
    # Node files (nodes.conf, logs) in memory when the machine has /dev/shm: nothing on disk.
    if [[ -d /dev/shm && -w /dev/shm ]]; then
        CLUSTER_DIR=$(mktemp -d /dev/shm/cachegate-bench-cluster.XXXXXX)
    else
        CLUSTER_DIR=$TMP/cluster
        mkdir -p "$CLUSTER_DIR"
    fi
    log "starting a Redis Cluster of 3 primaries on 127.0.0.1:${ports[*]} (files in $CLUSTER_DIR)"
    REDIS_CPU_PIDS=()
    for i in 0 1 2; do
        redis-server --bind 127.0.0.1 --port "${ports[i]}" --cluster-enabled yes \
            --cluster-port "${buses[i]}" --cluster-config-file "$CLUSTER_DIR/nodes-${ports[i]}.conf" \
            --cluster-node-timeout 1000 --save "" --appendonly no --daemonize no \
            --dir "$CLUSTER_DIR" --logfile "$CLUSTER_DIR/redis-${ports[i]}.log" &
        PIDS+=("$!")
        REDIS_CPU_PIDS+=("$!")
    done
    node_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }
    for i in 0 1 2; do
        wait_until "cluster node ${ports[i]}" 10 "${REDIS_CPU_PIDS[i]}" "$CLUSTER_DIR/redis-${ports[i]}.log" node_ping "${ports[i]}"
    done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
        > "$TMP/cluster-create.txt" 2>&1 || { cat "$TMP/cluster-create.txt" >&2; die "redis-cli --cluster create failed"; }
    cluster_ok() {
        local p
        for p in "${ports[@]}"; do
            redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
        done
    }
    wait_until "the cluster" 30 "${REDIS_CPU_PIDS[0]}" "$CLUSTER_DIR/redis-${ports[0]}.log" cluster_ok

    log "preloading $KEYS keys x 2 of $VALUE_BYTES bytes, each node its share by hash slot"
    local replies=0 slots
    for i in 0 1 2; do
        slots=$(node_slots "${ports[i]}")
        [[ -n $slots ]] || die "cluster node ${ports[i]} serves no slots"
        python3 "$ROOT/bench/preload.py" "$KEYS" "$VALUE_FILE" "$slots" \
            | redis-cli -h 127.0.0.1 -p "${ports[i]}" --pipe > "$TMP/preload-${ports[i]}.txt"
        grep -q 'errors: 0,' "$TMP/preload-${ports[i]}.txt" || { cat "$TMP/preload-${ports[i]}.txt" >&2; die "cluster preload failed"; }
        replies=$(( replies + $(sed -n 's/.*replies: \([0-9]*\).*/\1/p' "$TMP/preload-${ports[i]}.txt") ))
    done
    (( replies == KEYS * 2 )) || die "cluster preload wrote $replies keys, not $(( KEYS * 2 ))"

    RB_TARGET=(--cluster -h 127.0.0.1 -p "${ports[0]}")
    local seeds
    seeds=$(printf '127.0.0.1:%s,' "${ports[@]}")
    CG_REDIS_ENV=(REDIS_MODE=cluster REDIS_CLUSTER_NODES="${seeds%,}")
    log "starting cachegate on 127.0.0.1:$CLUSTER_CACHE_PORT against the cluster (RUST_LOG=$CACHEGATE_RUST_LOG)"
    start_cachegate "$CLUSTER_CACHE_PORT" "$CACHEGATE_RUST_LOG" "$TMP/cachegate-cluster.log"
    local pid=$LAST_PID url=http://127.0.0.1:$CLUSTER_CACHE_PORT
    expect "cluster: cachegate GET hit" 200 "$url/v1/cache/bench:0"
    cmp -s "$TMP/check.out" "$VALUE_FILE" || die "cluster: cachegate GET returned a different value than preloaded"
    expect "cluster: cachegate PUT" 204 -X PUT -H 'Content-Type: application/json' --data-binary "@$VALUE_FILE" "$url/v1/cache/bench:0?ttl=$TTL"
    # bench:0, bench:1 and bench:2 lie on three different primaries.
    expect "cluster: cachegate batch get" 200 -X POST -H 'Content-Type: application/json' --data '{"keys":["bench:0","bench:1","bench:2","miss:0"]}' "$url/v1/batch/get"
    grep -q '"missing":\["miss:0"\]' "$TMP/check.out" || { cat "$TMP/check.out" >&2; die "cluster: batch get answered an unexpected body"; }

    RESULTS=$TMP/results-cluster.tsv
    : > "$RESULTS"
    # redis-benchmark replaces {tag} with a hash tag of the node each client talks to: MGET of
    # BATCH keys of one slot, the most a single Redis command can read.
    local mget_args=(MGET)
    for _ in $(seq "$BATCH"); do mget_args+=("key:{tag}:__rand_int__"); done
    # SET first: redis-benchmark's GET and MGET then read the keys it wrote (key:{tag}:N).
    rb_run SET -t set
    wrk_run cachegate put put.lua "$url" "$pid"
    rb_run GET -t get
    wrk_run cachegate get_hit get_hit.lua "$url" "$pid"
    rb_run MGET "${mget_args[@]}"
    wrk_run cachegate batch_get batch_get_slots.lua "$url" "$pid"
    # Which answers were not 2xx, by route and status (wrk counts them only).
    curl -fsS -o "$TMP/metrics-cluster.txt" "$url/metrics" || : > "$TMP/metrics-cluster.txt"
    CLUSTER_NON_2XX=$(awk '/^cachegate_http_requests_total\{/ && !/status="2/ {
            match($0, /route="[^"]*"/); r = substr($0, RSTART + 7, RLENGTH - 8)
            match($0, /status="[^"]*"/); st = substr($0, RSTART + 8, RLENGTH - 9)
            printf "%s%s %s: %d", sep, r, st, $NF; sep = "; " }' "$TMP/metrics-cluster.txt")
    stop "$pid"
    for pid in "${REDIS_CPU_PIDS[@]}"; do stop "$pid"; done
}

[[ $CLUSTER == only ]] || standalone_run
[[ $CLUSTER == 0 ]] || cluster_run
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown && -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    COMMIT="$COMMIT (working tree with uncommitted changes)"
fi
export RESULTS_STANDALONE=$TMP/results.tsv RESULTS_CLUSTER=$TMP/results-cluster.tsv LOAD_START LOAD_END
export CLUSTER_NON_2XX=${CLUSTER_NON_2XX:-none}
export INVALIDATE=${INVALIDATE:-/dev/null} INVALIDATE_KEYS
export COMMIT BIN_NOTE DURATION WARMUP CONNECTIONS THREADS KEYS VALUE_BYTES TTL BATCH \
    CACHEGATE_RUST_LOG RSS_START RSS_IDLE RSS_AFTER RSS_PEAK WD_RSS_IDLE WD_RSS_PEAK
export NPROC=$(nproc)
export CPU_MODEL=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
export KERNEL=$(uname -r)
export REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
export WRK_VERSION=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')
export WEBDIS_ON=$([[ -n $WD_PID ]] && echo 1 || echo 0)
export POOL_NOTE=${REDIS_POOL_SIZE:-default}
REPORT=$TMP/report.md
python3 > "$REPORT" <<'PY'
import os, datetime
E = os.environ
def load(path):
    rows = {}
    if not os.path.exists(path):
        return rows
    for line in open(path):
        target, scenario, wall, cpu_srv, cpu_redis, cpu_gen, busy, fields = line.rstrip("\n").split("\t")
        d = dict(kv.split("=", 1) for kv in fields.split()[1:])
        d.update(wall=float(wall), cpu_srv=int(cpu_srv), cpu_redis=int(cpu_redis), cpu_gen=int(cpu_gen), busy=int(busy))
        rows[(target, scenario)] = d
    return rows
rows = load(E["RESULTS_STANDALONE"])
cluster = load(E["RESULTS_CLUSTER"])

def f(v, digits=0): return f"{float(v):,.{digits}f}"
def ms(us): return "—" if us is None or int(float(us)) < 0 else f"{int(float(us)) / 1000:.2f}"
def ratio(a, b): return float(a["rps"]) / float(b["rps"])
def errors(d, scenario, target):
    sock = sum(int(d.get(k, 0)) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    status = int(d.get("err_status", 0))
    if scenario == "get_miss" and target.startswith("cachegate"):
        status = 0  # every request is a 404 by design
    return sock + status

scen = [("get_hit", "GET hit", "GET"), ("get_miss", "GET miss", "GET"), ("put", f"PUT {E['VALUE_BYTES']} B, ?ttl={E['TTL']}", "SET"),
        ("put_tags", f"PUT with 3 tags, {E['VALUE_BYTES']} B", "SET"),
        ("batch_get", f"batch get of {E['BATCH']}", "MGET"), ("mix", "90/10 GET/PUT mix", "GET")]
targets = {"get_hit": ("ratio", 0.8), "put": ("ratio", 0.75), "batch_get": ("ratio", 0.5)}
webdis = E["WEBDIS_ON"] == "1"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
out = []
p = out.append
p(f"## Run {now}, commit {E['COMMIT']}\n")
p(f"- machine: {E['NPROC']} cores ({E['CPU_MODEL']}), Linux {E['KERNEL']}; Redis {E['REDIS_VERSION']}, wrk {E['WRK_VERSION']}")
p(f"- binary: {E['BIN_NOTE']}; cachegate RUST_LOG={E['CACHEGATE_RUST_LOG']}, CACHE_LOG_FORMAT=json, REDIS_POOL_SIZE={E['POOL_NOTE']}")
p(f"- load: wrk -t{E['THREADS']} -c{E['CONNECTIONS']} -d{E['DURATION']} (after a {E['WARMUP']} warm-up); redis-benchmark -c {E['CONNECTIONS']} -d {E['VALUE_BYTES']} -r {E['KEYS']} -P 1, sized to about {E['DURATION']}")
p(f"- data: {E['KEYS']} keys, {E['VALUE_BYTES']}-byte JSON values, random keys per request")
p(f"- machine load (1, 5, 15-minute load averages): {E['LOAD_START']} at the start, {E['LOAD_END']} at the end\n")
if rows:
    hdr = "| scenario | req/s | × baseline | p50 ms | p99 ms | p99.9 ms | errors | baseline |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---|"
    if webdis:
        hdr += " webdis req/s | webdis × | webdis p99 ms |"
        sep += "---:|---:|---:|"
    p(hdr); p(sep)
    checks = []
    for key, name, base in scen:
        c = rows.get(("cachegate", key)); b = rows.get(("redis-benchmark", base))
        if not c or not b: continue
        r = ratio(c, b)
        line = f"| {name} | {f(c['rps'])} | **{r:.2f}×** | {ms(c['p50_us'])} | {ms(c['p99_us'])} | {ms(c['p999_us'])} | {errors(c, key, 'cachegate')} | {base} {f(b['rps'])}/s |"
        if webdis:
            w = rows.get(("webdis", key))
            line += f" {f(w['rps'])} | {ratio(w, b):.2f}× | {ms(w['p99_us'])} |" if w else " — | — | — |"
        p(line)
        if key in targets:
            checks.append((f"{name} ≥ {targets[key][1]}× of redis-benchmark {base}", r >= targets[key][1], f"{r:.2f}×"))
        if key in ("get_hit", "put"):
            p99 = int(c["p99_us"]) / 1000
            checks.append((f"{name} p99 ≤ 2 ms", p99 <= 2.0, f"{p99:.2f} ms"))
    rounds = [(rows.get(("cachegate-info", f"get_hit_{i}")), rows.get(("cachegate-default", f"get_hit_{i}"))) for i in (1, 2, 3)]
    rounds = [(info, plain) for info, plain in rounds if info and plain]
    if rounds:
        b = rows[("redis-benchmark", "GET")]
        info = rounds[0][0]
        costs = [ratio(info, plain) for info, plain in rounds]
        log_ratio = sum(costs) / len(costs)
        p(f"| GET hit, RUST_LOG=info | {f(info['rps'])} | {ratio(info, b):.2f}× | {ms(info['p50_us'])} | {ms(info['p99_us'])} | {ms(info['p999_us'])} | {errors(info, 'get_hit', 'cachegate')} | GET {f(b['rps'])}/s |" + (" | | |" if webdis else ""))
        p("")
        p(f"Access log: GET hit with `RUST_LOG=info` (one JSON line per request, to a file) served **{log_ratio:.2f}×** the requests per second of "
          f"`RUST_LOG={E['CACHEGATE_RUST_LOG']}`, mean of {len(costs)} interleaved rounds ({', '.join(f'{c:.2f}×' for c in costs)}).")
        checks.append(("the default access log costs at most 5% of GET-hit throughput (RUST_LOG=info ≥ 0.95× of warn)", log_ratio >= 0.95, f"{log_ratio:.2f}×"))
    p("")
    p("Baseline, redis-benchmark (no pipelining; its latencies are its own client-side figures):\n")
    p("| command | req/s | p50 ms | p99 ms |")
    p("|---|---:|---:|---:|")
    for base in ("GET", "SET", "MGET"):
        b = rows.get(("redis-benchmark", base))
        if b:
            label = f"MGET of {E['BATCH']}" if base == "MGET" else base
            p(f"| {label} | {f(b['rps'])} | {ms(b['p50_us'])} | {ms(b['p99_us'])} |")
    p("")
    p("CPU during each measured run, in % of one core (server = cachegate, webdis or —; machine = all processes, of "
      f"{int(E['NPROC']) * 100}%):\n")
    p("| target | scenario | server | redis-server | load generator | machine |")
    p("|---|---|---:|---:|---:|---:|")
    for (t, s), d in rows.items():
        srv = "—" if d["cpu_srv"] < 0 else f"{d['cpu_srv']}%"
        p(f"| {t} | {s} | {srv} | {d['cpu_redis']}% | {d['cpu_gen']}% | {d['busy']}% |")
    p("")
    mib = lambda k: int(k) / 1024
    p("Memory of cachegate (from /proc/PID/status):\n")
    p("| after start | idle after preload | idle after the load | peak (VmHWM) |")
    p("|---:|---:|---:|---:|")
    p(f"| {mib(E['RSS_START']):.1f} MiB | {mib(E['RSS_IDLE']):.1f} MiB | {mib(E['RSS_AFTER']):.1f} MiB | {mib(E['RSS_PEAK']):.1f} MiB |")
    if webdis and int(E["WD_RSS_PEAK"]) > 0:
        p(f"\nwebdis: {mib(E['WD_RSS_IDLE']):.1f} MiB idle, {mib(E['WD_RSS_PEAK']):.1f} MiB peak.")
    checks.append(("peak RSS ≤ 32 MiB", mib(E["RSS_PEAK"]) <= 32, f"{mib(E['RSS_PEAK']):.1f} MiB"))
    p("\nTargets of issue 7:\n")
    for what, ok, val in checks:
        p(f"- {'met' if ok else '**not met**'}: {what} ({val})")
inval = {}
for line in open(E["INVALIDATE"]):
    who, rate = line.split()
    inval.setdefault(who, []).append(int(rate))
if inval:
    med = lambda v: sorted(v)[len(v) // 2]
    p(f"Invalidate a tag of {E['INVALIDATE_KEYS']} keys (`POST /v1/tags/invalidate`) against "
      "`redis-cli --scan --pattern ... | xargs redis-cli unlink` on as many keys, keys deleted per second, "
      f"{len(inval.get('cachegate', []))} interleaved rounds:\n")
    p("| how | median keys/s | all rounds |")
    p("|---|---:|---|")
    for who in ("cachegate", "redis-cli"):
        if who in inval:
            p(f"| {who} | {f(med(inval[who]))} | {', '.join(f(v) for v in inval[who])} |")
    p("")
if cluster:
    if rows:
        p("")
    p("### Redis Cluster, 3 primaries\n")
    p(f"cachegate with REDIS_MODE=cluster against three primaries (no replicas) started by this run; "
      f"the baseline is `redis-benchmark --cluster` at the same -c {E['CONNECTIONS']}. cachegate's batch get "
      f"reads {E['BATCH']} keys in {E['BATCH']} hash slots spread over the three primaries "
      f"(`bench/wrk/batch_get_slots.lua`); redis-benchmark's MGET reads {E['BATCH']} keys of one slot "
      "(its `{tag}`), the most one Redis command can read in a cluster.\n")
    p("| scenario | req/s | × baseline | p50 ms | p99 ms | p99.9 ms | errors | baseline |")
    p("|---|---:|---:|---:|---:|---:|---:|---|")
    for key, name, base in [("get_hit", "GET hit", "GET"), ("put", f"PUT {E['VALUE_BYTES']} B, ?ttl={E['TTL']}", "SET"),
                            ("batch_get", f"batch get of {E['BATCH']}, {E['BATCH']} slots", "MGET")]:
        c = cluster.get(("cachegate", key)); b = cluster.get(("redis-benchmark", base))
        if not c or not b: continue
        p(f"| {name} | {f(c['rps'])} | **{ratio(c, b):.2f}×** | {ms(c['p50_us'])} | {ms(c['p99_us'])} | {ms(c['p999_us'])} | {errors(c, key, 'cachegate')} | {base} {f(b['rps'])}/s |")
    p(f"\nAnswers other than 2xx during the cluster run (cachegate's /metrics, warm-ups and checks included): {E['CLUSTER_NON_2XX'] or 'none'}.\n")
    p("Baseline, redis-benchmark --cluster (no pipelining):\n")
    p("| command | req/s | p50 ms | p99 ms |")
    p("|---|---:|---:|---:|")
    for base in ("GET", "SET", "MGET"):
        b = cluster.get(("redis-benchmark", base))
        if b:
            label = f"MGET of {E['BATCH']}, one slot" if base == "MGET" else base
            p(f"| {label} | {f(b['rps'])} | {ms(b['p50_us'])} | {ms(b['p99_us'])} |")
    p("")
    p(f"CPU during each measured run, in % of one core (redis-server = the three nodes together; machine = all processes, of {int(E['NPROC']) * 100}%):\n")
    p("| target | scenario | server | redis-server | load generator | machine |")
    p("|---|---|---:|---:|---:|---:|")
    for (t, sc), d in cluster.items():
        srv = "—" if d["cpu_srv"] < 0 else f"{d['cpu_srv']}%"
        p(f"| {t} | {sc} | {srv} | {d['cpu_redis']}% | {d['cpu_gen']}% | {d['busy']}% |")
print("\n".join(out))
PY

if [[ -n $OUT ]]; then
    [[ $OUT == /* ]] || OUT=$ROOT/$OUT
    mkdir -p "$(dirname "$OUT")"
    if [[ ! -s $OUT ]]; then
        cat > "$OUT" <<'EOF'
# Benchmarks

`bench/run.sh` measures cachegate on the machine it runs on, with one command:

```sh
bench/run.sh                           # builds the release binary, about 4 minutes of load
DURATION=5s WITH_WEBDIS=0 bench/run.sh # quicker, without the webdis column
CACHEGATE_BIN=target/release/cachegate bench/run.sh   # skip the build
```

It needs `wrk`, `redis-server`, `redis-tools`, `python3` and `curl` (Debian packages of those
names); `webdis`, when installed, adds a column. Everything runs on 127.0.0.1: the script starts
its own redis-server (no persistence) and cachegate on free ports and stops both when it ends.

Method:

- 10,000 keys are preloaded with a 1 KiB JSON document; every request picks a random key.
- wrk, one thread with 64 keep-alive connections, drives each scenario for `DURATION` after a
  short warm-up: GET hit, GET miss (404), PUT of the 1 KiB value with `?ttl=300`, batch get of
  10 keys, and a 90/10 GET/PUT mix. Latencies come from wrk's histogram (p99.9 through a Lua
  `done()` hook in `bench/wrk/`).
- In the same run, redis-benchmark measures Redis itself at the same concurrency and value size
  without pipelining: GET, SET and MGET of 10 keys. Every cachegate figure is shown as a ratio
  to that baseline (GET hit, GET miss and the mix against GET, PUT against SET, batch get against
  MGET), and each scenario runs right after its baseline, so the ratios stay comparable across
  machines and background load while the absolute numbers do not.
- cachegate runs with `RUST_LOG=warn` and JSON logs; one extra GET-hit run shows the cost of the
  default `RUST_LOG=info` (one log line per request, written to a file).
- Memory is cachegate's resident set from `/proc/PID/status`: idle after the preload, and the
  peak (`VmHWM`) over the whole run.

On a machine with few cores, wrk, cachegate and Redis share them, so the load generator takes
part of the capacity it measures; the CPU table of each run shows who used what.

Each run appends a section below; earlier runs stay as history.

EOF
    fi
    { echo; cat "$REPORT"; } >> "$OUT"
    log "appended to ${OUT#"$ROOT"/}"
fi
echo
cat "$REPORT"
