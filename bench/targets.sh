#!/usr/bin/env bash
# Every measurement behind the targets in docs/benchmarks.md, in one run, into one directory, so
# that a machine's figures come from the same minutes:
#   1. criterion: the protocol and the raw crates, ES256 as the identity API signs (one core);
#   2. the sidecar's overhead on a core of its own: at a fixed offered load, and closed-loop;
#   3. loadgen on SQLite, C = 16 (every scenario) and C = 64 (the identity API direct), rounds;
#   3b. the standard endpoints beside their /api/v1 equivalents, direct, C = 64, rounds;
#   4. the oidc-provider baseline and our identity API alternating, C = 64 (when node exists);
#   5. the sidecar's RSS idle and with 100,000 live sessions;
#   6. Redis-backed sidecars (--session-store) beside memory-backed ones, alternating round by
#      round: session init and sealed introspection, C = 16; then the sidecar's RSS with
#      100,000 sessions in Redis, and Redis' own memory per session (a private redis-server);
#   7. tenants, alternating round by round, C = 64: the default tenant (issue-direct and
#      introspect-direct), the same spread over 100 tenants (loadgen --tenants 100), and
#      issue-direct in an RS256 tenant beside the default tenant's ES256 (a failed RS256 run, by
#      an identity-api that does not sign RS256, is recorded and skipped).
# Loopback only; every load is bounded in time and count. About 17 minutes on 2 vCPUs.
#   bench/targets.sh [OUT_DIR]      (ROUNDS=3 by default; needs taskset for step 4, redis-server
#                                    and redis-cli for step 6; STEPS="6" runs only the steps named)
# With BASELINE_BIN_DIR (the release binaries of another commit), step 3 alternates those and
# these, round by round, driven by this loadgen: a before/after in the same minutes; step 7 then
# runs the baseline's default tenant too, in each of its rounds. For the default tenant against
# the commit before tenants (46aa722):
#   git worktree add /tmp/base 46aa722
#   (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target \
#       cargo build --release -p identity-api -p identity-sidecar --bins)
#   BASELINE_BIN_DIR=/tmp/base-target/release STEPS="3 7" bench/targets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
OUT=${1:-$CARGO_TARGET_DIR/targets-$(date -u +%Y%m%dT%H%MZ)}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"

step() { echo "== $* ($(date -u +%T) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/steps.log"; }
STEPS=${STEPS:-1 2 3 3b 4 5 6 7}
run() { [[ " $STEPS " == *" $1 "* ]]; }

cargo build --release --workspace --bins
LG="$CARGO_TARGET_DIR/release/loadgen"
BOUND=(--local --duration-secs 5 --warmup-secs 1 --requests 400000)
{ lscpu; uname -r; rustc -V; } > "$OUT/machine.txt"

if run 1; then
step "1. criterion"
cargo bench -p identity-protocol --bench protocol -- --warm-up-time 1 --measurement-time 3 --noplot \
    > "$OUT/1-protocol.txt"
cargo bench -p identity-api --bench tokens -- --warm-up-time 1 --measurement-time 3 --noplot \
    > "$OUT/1-tokens.txt"
fi

# Before the node baseline: in the seconds after a Node process exits, the sidecar's CPU per
# request can double.
if run 2; then
step "2. the sidecar on a core of its own"
PINNED=(--unix-socket --sidecar-cpus 1 --other-cpus 0 --rounds "$ROUNDS")
"$LG" "${BOUND[@]}" "${PINNED[@]}" -c 16 --rate 2000 \
    --scenarios introspect,introspect-direct,jwks,jwks-direct > "$OUT/2-rate-2000.txt"
"$LG" "${BOUND[@]}" "${PINNED[@]}" -c 16 \
    --scenarios introspect,introspect-direct,jwks,jwks-direct > "$OUT/2-closed-c16.txt"
fi

if run 3; then
step "3. loadgen, C = 16 and 64"
if [[ -n "${BASELINE_BIN_DIR:-}" ]]; then
    C64=(-c 64 --scenarios issue-direct,refresh-direct,introspect-direct)
    for round in $(seq "$ROUNDS"); do
        for side in baseline this; do
            dir=()
            [[ $side == baseline ]] && dir=(--bin-dir "$BASELINE_BIN_DIR")
            printf 'round %s\n' "$round" >> "$OUT/3-c16-$side.txt"
            "$LG" "${BOUND[@]}" "${dir[@]}" -c 16 >> "$OUT/3-c16-$side.txt"
            printf 'round %s\n' "$round" >> "$OUT/3-c64-$side.txt"
            "$LG" "${BOUND[@]}" "${dir[@]}" "${C64[@]}" >> "$OUT/3-c64-$side.txt"
        done
    done
else
    "$LG" "${BOUND[@]}" --rounds "$ROUNDS" -c 16 > "$OUT/3-c16.txt"
    "$LG" "${BOUND[@]}" --rounds "$ROUNDS" -c 64 \
        --scenarios issue-direct,refresh-direct,introspect-direct > "$OUT/3-c64.txt"
fi
fi

# Each round runs the four in turn: /oauth/token's client_credentials right after
# /api/v1/token/issue, /oauth/introspect right after /api/v1/introspect.
if run 3b; then
step "3b. the standard endpoints beside /api/v1, C = 64"
"$LG" "${BOUND[@]}" --rounds "$ROUNDS" -c 64 \
    --scenarios issue-direct,oauth-token-direct,introspect-direct,oauth-introspect-direct \
    > "$OUT/3b-oauth-c64.txt"
awk -f bench/oauth-over-api.awk "$OUT/3b-oauth-c64.txt" > "$OUT/3b-oauth-over-api.txt"
fi

if ! run 4; then
    :
elif command -v node > /dev/null; then
    step "4. oidc-provider and ours, alternating, C = 64"
    # ours ÷ theirs for one scenario of this round: req/s is the 5th field of loadgen's table
    # and the 3rd of run.sh's lines.
    times() {
        awk -v a="$(awk -v s="$1" '$1 == s { print $5 }' <<< "$ours")" \
            -v b="$(awk -v s="$2" '$1 == s { print $3 }' <<< "$theirs")" \
            'BEGIN { printf "%.0f / %.0f = %.2f", a, b, a / b }'
    }
    for round in $(seq "$ROUNDS"); do
        theirs=$(bench/oidc-provider/run.sh 64 5)
        ours=$("$LG" "${BOUND[@]}" -c 64 \
            --scenarios issue-direct,introspect-direct,oauth-token-direct,oauth-introspect-direct)
        printf 'round %s\n%s\n' "$round" "$theirs" >> "$OUT/4-oidc-provider.txt"
        printf 'round %s\n%s\n' "$round" "$ours" >> "$OUT/4-ours.txt"
        echo "round $round: issue $(times issue-direct issue), introspect $(times introspect-direct introspect)," \
            "oauth token $(times oauth-token-direct issue), oauth introspect $(times oauth-introspect-direct introspect)" \
            >> "$OUT/4-ours-over-oidc-provider.txt"
    done
else
    step "4. skipped: no node for the oidc-provider baseline"
fi

if run 5; then
step "5. sidecar RSS"
"$LG" --local -c 16 --memory-sessions 100000 > "$OUT/5-memory.txt"
fi

if run 6; then
step "6. Redis-backed sidecars beside memory-backed ones"
# A private, empty redis-server without persistence: nothing else's keys in its memory figures.
REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$OUT/6-redis-server.log" 2>&1 &
REDIS_PID=$!
trap 'kill "$REDIS_PID" 2> /dev/null || true' EXIT
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
for _ in $(seq 50); do [[ "$(rcli ping 2> /dev/null)" == PONG ]] && break; sleep 0.1; done
REDIS=(--sidecar-env "SIDECAR_SESSION_STORE=redis://127.0.0.1:$REDIS_PORT"
       --sidecar-env "SIDECAR_SESSION_STORE_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')")
# redis ÷ memory for one scenario of this round (req/s: the 5th field of loadgen's table).
ratio() {
    awk -v r="$(awk -v s="$1" '$1 == s { print $5 }' <<< "$redis")" \
        -v m="$(awk -v s="$1" '$1 == s { print $5 }' <<< "$memory")" \
        'BEGIN { printf "%.0f / %.0f = %.2f", r, m, r / m }'
}
for round in $(seq "$ROUNDS"); do
    memory=$("$LG" "${BOUND[@]}" -c 16 --scenarios init,introspect)
    redis=$("$LG" "${BOUND[@]}" -c 16 --scenarios init,introspect "${REDIS[@]}")
    printf 'round %s\n%s\n' "$round" "$memory" >> "$OUT/6-memory.txt"
    printf 'round %s\n%s\n' "$round" "$redis" >> "$OUT/6-redis.txt"
    echo "round $round: init $(ratio init), introspect $(ratio introspect)" >> "$OUT/6-redis-over-memory.txt"
done
rcli flushall > /dev/null
used() { rcli info memory | awk -F: '/^used_memory:/ { print $2 + 0 }'; }
before=$(used)
"$LG" --local -c 16 --memory-sessions 100000 "${REDIS[@]}" > "$OUT/6-redis-rss.txt"
after=$(used)
keys=$(rcli dbsize)
awk -v b="$before" -v a="$after" -v k="$keys" 'BEGIN { printf "redis: %d sessions, used_memory %d -> %d bytes, %.0f bytes per session\n", k, b, a, (a - b) / k }' \
    >> "$OUT/6-redis-rss.txt"
kill "$REDIS_PID"
fi

if run 7; then
step "7. tenants: the default, 100 of them, RS256 beside ES256, C = 64"
# a ÷ b for one scenario: loadgen's tables $2 and $4 (req/s is the 5th field).
over() {
    awk -v a="$(awk -v s="$1" '$1 == s { print $5 }' <<< "$2")" \
        -v b="$(awk -v s="$3" '$1 == s { print $5 }' <<< "$4")" \
        'BEGIN { if (a == "" || b == 0) print "n/a"; else printf "%.0f / %.0f = %.2f", a, b, a / b }'
}
PAIR=(-c 64 --scenarios issue-direct,introspect-direct)
sides=(default tenants100 rs256)
[[ -n "${BASELINE_BIN_DIR:-}" ]] && sides=(baseline "${sides[@]}")
rs256_works=yes
for round in $(seq "$ROUNDS"); do
    # Every other round in the reverse order, so that no side always runs first.
    order=("${sides[@]}")
    if (( round % 2 == 0 )); then
        order=()
        for ((i = ${#sides[@]} - 1; i >= 0; i--)); do order+=("${sides[i]}"); done
    fi
    declare -A got=()
    for side in "${order[@]}"; do
        case $side in
            baseline) got[$side]=$("$LG" "${BOUND[@]}" --bin-dir "$BASELINE_BIN_DIR" "${PAIR[@]}") ;;
            default) got[$side]=$("$LG" "${BOUND[@]}" "${PAIR[@]}") ;;
            tenants100) got[$side]=$("$LG" "${BOUND[@]}" "${PAIR[@]}" --tenants 100) ;;
            rs256)
                [[ $rs256_works == yes ]] || continue
                if ! got[$side]=$("$LG" "${BOUND[@]}" -c 64 --scenarios issue-direct \
                        --algorithm RS256 2>> "$OUT/7-rs256.stderr"); then
                    rs256_works=no
                    echo "RS256 run failed: see 7-rs256.stderr; no further RS256 runs" >> "$OUT/7-rs256.txt"
                    continue
                fi ;;
        esac
        printf 'round %s\n%s\n' "$round" "${got[$side]}" >> "$OUT/7-$side.txt"
    done
    {
        echo "round $round (order ${order[*]}):"
        echo "  100 tenants / default: issue $(over issue-direct "${got[tenants100]}" issue-direct "${got[default]}")," \
            "introspect $(over introspect-direct "${got[tenants100]}" introspect-direct "${got[default]}")"
        echo "  RS256 / ES256 issue: $(over issue-direct "${got[rs256]:-}" issue-direct "${got[default]}")"
        if [[ -n "${got[baseline]:-}" ]]; then
            echo "  default / baseline: issue $(over issue-direct "${got[default]}" issue-direct "${got[baseline]}")," \
                "introspect $(over introspect-direct "${got[default]}" introspect-direct "${got[baseline]}")"
        fi
    } >> "$OUT/7-tenants-ratios.txt"
    unset got
done
fi

step "done: $OUT"
# The figures the targets are read from.
grep -h -A12 '^median of' "$OUT"/2-*.txt "$OUT"/3-*.txt "$OUT"/3b-*.txt 2> /dev/null || true
cat "$OUT/3b-oauth-over-api.txt" 2> /dev/null || true
cat "$OUT/4-ours-over-oidc-provider.txt" 2> /dev/null || true
cat "$OUT/5-memory.txt" 2> /dev/null || true
cat "$OUT/6-redis-over-memory.txt" "$OUT/6-redis-rss.txt" 2> /dev/null || true
cat "$OUT/7-tenants-ratios.txt" 2> /dev/null || true
