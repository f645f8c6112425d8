#!/usr/bin/env bash
# Every measurement behind the targets in docs/benchmarks.md, in one run, into one directory, so
# that a machine's figures come from the same minutes:
#   1. criterion: the protocol and the raw crates, ES256 as the identity API signs (one core);
#   2. the sidecar's overhead on a core of its own: at a fixed offered load, and closed-loop;
#   3. loadgen on SQLite, C = 16 (every scenario) and C = 64 (the identity API direct), rounds;
#   3b. the standard endpoints beside their /api/v1 equivalents, direct, C = 64, rounds;
#   4. the oidc-provider baseline and our identity API alternating, C = 64 (when node exists);
#   5. the sidecar's RSS idle and with 100,000 live sessions.
# Loopback only; every load is bounded in time and count. About 14 minutes on 2 vCPUs.
#   bench/targets.sh [OUT_DIR]      (ROUNDS=3 by default; needs taskset for step 4)
# With BASELINE_BIN_DIR (the release binaries of another commit), step 3 alternates those and
# these, round by round, driven by this loadgen: a before/after in the same minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
OUT=${1:-$CARGO_TARGET_DIR/targets-$(date -u +%Y%m%dT%H%MZ)}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"

step() { echo "== $* ($(date -u +%T) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/steps.log"; }

cargo build --release --workspace --bins
LG="$CARGO_TARGET_DIR/release/loadgen"
BOUND=(--local --duration-secs 5 --warmup-secs 1 --requests 400000)
{ lscpu; uname -r; rustc -V; } > "$OUT/machine.txt"

step "1. criterion"
cargo bench -p identity-protocol --bench protocol -- --warm-up-time 1 --measurement-time 3 --noplot \
    > "$OUT/1-protocol.txt"
cargo bench -p identity-api --bench tokens -- --warm-up-time 1 --measurement-time 3 --noplot \
    > "$OUT/1-tokens.txt"

# First: in the seconds after the node baseline exits the sidecar's CPU per request doubled
# (three tries of three).
step "2. the sidecar on a core of its own"
PINNED=(--unix-socket --sidecar-cpus 1 --other-cpus 0 --rounds "$ROUNDS")
"$LG" "${BOUND[@]}" "${PINNED[@]}" -c 16 --rate 2000 \
    --scenarios introspect,introspect-direct,jwks,jwks-direct > "$OUT/2-rate-2000.txt"
"$LG" "${BOUND[@]}" "${PINNED[@]}" -c 16 \
    --scenarios introspect,introspect-direct,jwks,jwks-direct > "$OUT/2-closed-c16.txt"

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

# Each round runs the four in turn: /oauth/token's client_credentials right after
# /api/v1/token/issue, /oauth/introspect right after /api/v1/introspect.
step "3b. the standard endpoints beside /api/v1, C = 64"
"$LG" "${BOUND[@]}" --rounds "$ROUNDS" -c 64 \
    --scenarios issue-direct,oauth-token-direct,introspect-direct,oauth-introspect-direct \
    > "$OUT/3b-oauth-c64.txt"
awk -f bench/oauth-over-api.awk "$OUT/3b-oauth-c64.txt" > "$OUT/3b-oauth-over-api.txt"

if command -v node > /dev/null; then
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

step "5. sidecar RSS"
"$LG" --local -c 16 --memory-sessions 100000 > "$OUT/5-memory.txt"

step "done: $OUT"
# The figures the targets are read from.
grep -h -A12 '^median of' "$OUT"/2-*.txt "$OUT"/3-*.txt "$OUT"/3b-*.txt
cat "$OUT/3b-oauth-over-api.txt"
cat "$OUT/4-ours-over-oidc-provider.txt" 2> /dev/null || true
cat "$OUT/5-memory.txt"
