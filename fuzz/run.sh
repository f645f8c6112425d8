#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other, one job each.
#
#   fuzz/run.sh [seconds-per-target] [target...]      (default: 60 s, all targets)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz passes nightly-only flags
# to rustc; on the stable toolchain RUSTC_BOOTSTRAP=1 allows them (set here). Crash inputs land in
# fuzz/artifacts/<target>/; keep each one as a regression test (see fuzz/README.md). libFuzzer's
# output goes to fuzz/logs/<target>.log; the final statistics are printed here.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(session_init envelope replay_window identity_api_bodies)
fi
export RUSTC_BOOTSTRAP=1
# --sanitizer none: every crate of this project forbids unsafe code; debug assertions (-a) turn
# on overflow checks, which matter more here (replay window arithmetic). For AddressSanitizer
# over the dependencies' unsafe code, run with FUZZ_SANITIZER=address.
sanitizer="${FUZZ_SANITIZER:-none}"
mkdir -p logs
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    # -jobs=1 runs one fuzzing process, whose output libFuzzer writes to fuzz-0.log.
    if ! cargo fuzz run --sanitizer "$sanitizer" -a "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -max_len=4096 -print_final_stats=1; then
        status=1
    fi
    if [ -f fuzz-0.log ]; then
        mv fuzz-0.log "logs/$target.log"
        grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)|ERROR|panicked' \
            "logs/$target.log" || true
    fi
    if compgen -G "artifacts/$target/*" > /dev/null; then
        echo "!! $target: crash inputs in fuzz/artifacts/$target/"
        status=1
    fi
done
exit "$status"
