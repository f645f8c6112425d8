#!/usr/bin/env bash
# The oidc-provider baseline of issue 6, on this machine: client_credentials issuance and
# introspection of an active token, C connections for D seconds each, loopback only.
#   bench/oidc-provider/run.sh [C] [D]       (defaults 16 and 6; needs node and npm)
# Fails if any answer is not 2xx or the introspected token is not active at the end (the
# in-memory adapter keeps 1,000 tokens: the token is taken after the issuance run).
set -euo pipefail
cd "$(dirname "$0")"
C=${1:-16} D=${2:-6} PORT=${PORT:-3900}
SECRET=bench-secret-0123456789abcdef0123456789
[ -d node_modules ] || npm install --no-audit --no-fund --silent
PORT=$PORT NODE_ENV=production node server.mjs >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done
AUTH="authorization=Basic $(printf 'bench:%s' "$SECRET" | base64 -w0)"
FORM="content-type=application/x-www-form-urlencoded"
load() { # name body path
    local out
    out=$(npx autocannon --json -c "$C" -d "$D" -m POST -H "$AUTH" -H "$FORM" -b "$2" \
        "http://127.0.0.1:$PORT$3" 2>/dev/null)
    echo "$out" | node -e '
        const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const bad = r.non2xx + r.errors + r.timeouts;
        console.log(`${process.argv[1].padEnd(14)} C=${r.connections} ${r.requests.average.toFixed(0)} req/s (${r.requests.total} in ${r.duration} s), p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, errors ${bad}`);
        process.exit(bad ? 1 : 0);' "$1"
}
load issue 'grant_type=client_credentials&scope=orders.read' /token
TOKEN=$(curl -fs -u "bench:$SECRET" -d 'grant_type=client_credentials&scope=orders.read' \
    "http://127.0.0.1:$PORT/token" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).access_token)')
load introspect "token=$TOKEN" /token/introspection
curl -fs -u "bench:$SECRET" -d "token=$TOKEN" "http://127.0.0.1:$PORT/token/introspection" \
    | grep -q '"active":true' || { echo "the introspected token is no longer active" >&2; exit 1; }
