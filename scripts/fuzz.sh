#!/usr/bin/env bash
# Fuzzes clipguard's parsers and stage inputs with libFuzzer, each target for a bounded time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
# Coverage-guided on the stable toolchain: the driver (fuzz/src/bin/fuzz.rs) is built with
# rustc's own SanitizerCoverage pass (`-C passes=sancov-module`) and libFuzzer from the
# libfuzzer-sys crate, once, into $CLIPGUARD_CACHE/fuzz/target. The corpus grows across runs in
# $CLIPGUARD_CACHE/fuzz/corpus/TARGET; what crashes, hangs or runs out of memory is saved in
# $CLIPGUARD_CACHE/fuzz/artifacts/TARGET/ (a fixed finding goes to fuzz/regressions/TARGET/,
# which the test suite replays). Exits non-zero when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
seconds=${1:-60}
shift || true
mapfile -t all < <(grep -o 'name: "[a-z0-9_]*"' fuzz/src/lib.rs | cut -d'"' -f2)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  printf '%s\n' "${all[@]}" | grep -qx "$t" || { echo "fuzz: no target $t (${all[*]})" >&2; exit 2; }
done

scripts/setup.sh
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$CACHE/fuzz/target"
# --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=4 \
-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-pc-table \
-C llvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -C debug-assertions \
-C overflow-checks -C codegen-units=16" \
  cargo build --release --locked -p clipguard-fuzz --features libfuzzer --bin clipguard-fuzz \
  --target "$host"
bin="$CARGO_TARGET_DIR/$host/release/clipguard-fuzz"

work="$CACHE/fuzz"
samples=$(mktemp -d)
trap 'rm -rf "$samples"' EXIT
bash scripts/make-samples.sh "$samples" >/dev/null
rm -rf "$work/seeds"
CLIPGUARD_FUZZ_SEEDS="$work/seeds" CLIPGUARD_FUZZ_MEDIA="$samples" "$bin" >/dev/null

summary=()
found=0
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"; artifacts="$work/artifacts/$t"; log="$work/logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  case "$t" in media_*|clip_submitted) max_len=2097152 ;; *) max_len=65536 ;; esac
  echo "== $t: ${seconds} s (log: $log)"
  before=$(find "$artifacts" -type f | wc -l)
  set +e
  CLIPGUARD_FUZZ_TARGET="$t" CLIPGUARD_LOG=off "$bin" "$corpus" "$work/seeds/$t" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len="$max_len" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  after=$(find "$artifacts" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -1)
  new=$((after - before))
  [ "$rc" -eq 0 ] && [ "$new" -eq 0 ] || { found=1; grep -a -m3 -E 'ERROR|panicked|Timeout|out-of-memory' "$log" || true; }
  summary+=("$(printf '%-16s exit %-3s %10s runs  %-34s findings %s' "$t" "$rc" "${execs:-?}" "${cov:-cov: ?}" "$new")")
done
echo
echo "fuzz summary (${seconds} s per target):"
printf '  %s\n' "${summary[@]}"
exit "$found"
