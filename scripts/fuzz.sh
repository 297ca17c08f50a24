#!/usr/bin/env bash
# scripts/fuzz.sh SECONDS [merge]: runs every fuzz target of fuzz/ (cargo fuzz, libFuzzer,
# the nightly toolchain) for SECONDS each, starting from the corpus kept in fuzz/corpus.
# New inputs go to .local/fuzz; with `merge`, those that reach new code are added to
# fuzz/corpus afterwards (libFuzzer's -merge=1), to be committed. A crash stops the run
# with the input under fuzz/artifacts/<target>/ and the command that replays it.
#
# `make fuzz-smoke` (CI): 60 s each. `make fuzz`: FUZZ_SECONDS (600) each, then merge.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:?usage: scripts/fuzz.sh SECONDS [merge]}
merge=${2:-}
cache=${STORE_EVENTS_CACHE:-$HOME/.cache/store-events}
cargo_fuzz_version=0.13.2
log() { printf '[fuzz] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

rustup run nightly rustc --version >/dev/null 2>&1 ||
  die "the nightly toolchain is needed (libFuzzer's instrumentation): rustup toolchain install nightly"
bin=$cache/cargo-fuzz-$cargo_fuzz_version/bin
if [ ! -x "$bin/cargo-fuzz" ]; then
  log "Building cargo-fuzz $cargo_fuzz_version from crates.io (once, about a minute)"
  cargo install cargo-fuzz --version "=$cargo_fuzz_version" --locked --root "$cache/cargo-fuzz-$cargo_fuzz_version" -q
fi
export PATH=$bin:$PATH
log "Building the fuzz targets (nightly, address sanitizer, release; a few minutes the first time)"
cargo +nightly fuzz build -O
for target in $(cargo +nightly fuzz list); do
  scratch=$root/.local/fuzz/$target
  mkdir -p "$scratch"
  log "$target: ${seconds}s from fuzz/corpus/$target"
  if ! cargo +nightly fuzz run -O "$target" "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$scratch.log" 2>&1; then
    tail -n 40 "$scratch.log" >&2
    artifact=$(ls -t "fuzz/artifacts/$target"/* 2>/dev/null | head -n 1 || true)
    die "$target failed; replay with: cargo +nightly fuzz run -O $target ${artifact:-fuzz/artifacts/$target/<input>}"
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added):' "$scratch.log" | sed "s/^/[fuzz] $target /" >&2 || true
  if [ "$merge" = merge ]; then
    cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "$scratch" -- -merge=1 >"$scratch.merge.log" 2>&1
    log "$target: corpus now $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
  fi
done
log "every target ran ${seconds}s without a failure"
