#!/usr/bin/env bash
# The OpenAPI checks CI runs, in one script:
#   1. validate openapi/openapi.json with openapi-spec-validator;
#   2. build cachegate, start it on its own Redis, with an access token;
#   3. check that the served /openapi.json is the committed document;
#   4. fuzz every operation with schemathesis (all checks, fixed seed, >= 50 examples each);
#   5. generate a Python client with openapi-python-client, type-check ci/client_roundtrip.py
#      against it with mypy --strict, and run it;
#   6. generate TypeScript types with openapi-typescript, type-check ci/client_roundtrip.ts
#      (openapi-fetch) with tsc --strict, and run it with node;
#   7. parse /metrics with prometheus_client's parser: every family has HELP and TYPE.
# The round trips also run against a second cachegate without tokens (protected mode), whose
# loopback clients need none. Every server is killed on exit, whatever happens.
#
# Needs python3 (3.10+, with venv), node (18+) with npm, redis-server, redis-cli and cargo.
# Set CI_VENV to a directory to keep the Python tools between runs (default: a fresh venv in
# a temp dir); SCHEMATHESIS_SEED and SCHEMATHESIS_MAX_EXAMPLES (at least 50) explore further.

set -euo pipefail

OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
MYPY_VERSION=2.4.1
PROMETHEUS_CLIENT_VERSION=0.26.0
OPENAPI_TYPESCRIPT_VERSION=7.13.0
OPENAPI_FETCH_VERSION=0.17.0
TYPESCRIPT_VERSION=5.9.3
TYPES_NODE_VERSION=20.19.43
SEED=${SCHEMATHESIS_SEED:-20241125}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-50}
READY_WITHIN_S=30

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOC="$ROOT/openapi/openapi.json"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cachegate-openapi.XXXXXX")
PIDS=()

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ] && [ -f "$WORK/cachegate.log" ]; then
        echo "--- last lines of the cachegate log ---" >&2
        tail -n 40 "$WORK/cachegate.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls a command until it succeeds, for at most READY_WITHIN_S seconds.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + READY_WITHIN_S))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$what did not become ready within ${READY_WITHIN_S}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

if [ "$MAX_EXAMPLES" -lt 50 ]; then
    echo "SCHEMATHESIS_MAX_EXAMPLES must be at least 50" >&2
    exit 2
fi

step "Python tools (openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION, schemathesis $SCHEMATHESIS_VERSION, openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION, mypy $MYPY_VERSION)"
VENV=${CI_VENV:-$WORK/venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" \
    "schemathesis==$SCHEMATHESIS_VERSION" \
    "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" \
    "mypy==$MYPY_VERSION" \
    "prometheus-client==$PROMETHEUS_CLIENT_VERSION"

step "Validating $DOC"
"$VENV/bin/openapi-spec-validator" "$DOC"

step "Building cachegate"
(cd "$ROOT" && cargo build --quiet)
CACHEGATE="$ROOT/target/debug/cachegate"

step "Starting redis-server and cachegate"
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_for "redis-server on port $REDIS_PORT" redis-cli -p "$REDIS_PORT" ping

TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
HTTP_PORT=$(free_port)
BASE_URL="http://127.0.0.1:$HTTP_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CACHE_HOST=127.0.0.1 CACHE_PORT="$HTTP_PORT" \
    CACHE_AUTH_TOKENS="$TOKEN" CACHE_LOG_FORMAT=json RUST_LOG=warn \
    "$CACHEGATE" >"$WORK/cachegate.log" 2>&1 &
PIDS+=($!)
wait_for "cachegate on $BASE_URL/health/ready" \
    env CACHE_HOST=127.0.0.1 CACHE_PORT="$HTTP_PORT" "$CACHEGATE" healthcheck
echo "cachegate serves $BASE_URL on Redis port $REDIS_PORT"

# The same without tokens: protected mode serves loopback clients without one.
OPEN_PORT=$(free_port)
OPEN_URL="http://127.0.0.1:$OPEN_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CACHE_HOST=127.0.0.1 CACHE_PORT="$OPEN_PORT" \
    CACHE_LOG_FORMAT=json RUST_LOG=warn "$CACHEGATE" >"$WORK/cachegate-open.log" 2>&1 &
PIDS+=($!)
wait_for "cachegate on $OPEN_URL/health/ready" \
    env CACHE_HOST=127.0.0.1 CACHE_PORT="$OPEN_PORT" "$CACHEGATE" healthcheck
echo "cachegate without tokens serves $OPEN_URL"

step "The served /openapi.json is the committed document"
"$VENV/bin/python" - "$BASE_URL/openapi.json" "$DOC" <<'EOF'
import json, sys, urllib.request
served = json.load(urllib.request.urlopen(sys.argv[1], timeout=10))
committed = json.load(open(sys.argv[2]))
if served != committed:
    sys.exit("the served document differs from openapi/openapi.json; regenerate it with: "
             "cargo run -q -- openapi > openapi/openapi.json")
print("identical")
EOF

step "schemathesis: every operation, all checks, seed $SEED, $MAX_EXAMPLES examples each"
(
    cd "$ROOT"
    "$VENV/bin/schemathesis" --config-file ci/schemathesis.toml run "$DOC" \
        --url "$BASE_URL" \
        --header "Authorization: Bearer $TOKEN" \
        --checks all \
        --seed "$SEED" \
        --max-examples "$MAX_EXAMPLES" \
        --workers 1 \
        --request-timeout 10 \
        --suppress-health-check too_slow
)

step "Generated Python client round trip"
"$VENV/bin/openapi-python-client" generate --path "$DOC" \
    --config "$ROOT/ci/openapi-python-client.yaml" \
    --output-path "$WORK/cachegate_client" --meta none --overwrite
(cd "$WORK" && MYPYPATH="$WORK" "$VENV/bin/mypy" --strict --no-incremental "$ROOT/ci/client_roundtrip.py")
CACHEGATE_TOKEN="$TOKEN" PYTHONPATH="$WORK" \
    "$VENV/bin/python" "$ROOT/ci/client_roundtrip.py" "$BASE_URL" "$OPEN_URL"

step "TypeScript client round trip (openapi-typescript $OPENAPI_TYPESCRIPT_VERSION, openapi-fetch $OPENAPI_FETCH_VERSION, typescript $TYPESCRIPT_VERSION)"
TS=$WORK/typescript
mkdir -p "$TS"
printf '{"private": true, "type": "module"}\n' >"$TS/package.json"
(cd "$TS" && npm install --no-audit --no-fund --loglevel=error \
    "openapi-typescript@$OPENAPI_TYPESCRIPT_VERSION" "openapi-fetch@$OPENAPI_FETCH_VERSION" \
    "typescript@$TYPESCRIPT_VERSION" "@types/node@$TYPES_NODE_VERSION")
"$TS/node_modules/.bin/openapi-typescript" "$DOC" -o "$TS/cachegate.d.ts"
cp "$ROOT/ci/client_roundtrip.ts" "$TS/"
cp "$ROOT/ci/client_roundtrip.tsconfig.json" "$TS/tsconfig.json"
(cd "$TS" && node_modules/.bin/tsc -p .)
CACHEGATE_TOKEN="$TOKEN" node "$TS/dist/client_roundtrip.js" "$BASE_URL" "$OPEN_URL"

step "/metrics through the Prometheus reference parser (prometheus-client $PROMETHEUS_CLIENT_VERSION)"
CACHEGATE_TOKEN="$TOKEN" "$VENV/bin/python" "$ROOT/ci/metrics_exposition.py" "$BASE_URL"

step "OpenAPI checks passed"
