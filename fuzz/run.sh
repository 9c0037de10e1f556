#!/bin/sh
# Runs one fuzz target (issue 9): niced, one job, time-boxed, seeded with every CSV under
# tests/fixtures/ and examples/, with the headings dictionary. Usage: fuzz/run.sh TARGET [SECONDS] [RUNS]
# The corpus grows in fuzz/corpus/TARGET, crashes land in fuzz/artifacts/TARGET, libFuzzer's log in
# fuzz/logs/TARGET-<time>.log. Targets may run side by side (each works in fuzz/logs/TARGET.work). FUZZ_PREBUILT=1 runs the target as last built (`cargo +nightly fuzz build
# -s none`) without building again, so that a change elsewhere in the tree does not cost a rebuild.
set -eu
fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz")
target=$1
secs=${2:-3600}
runs=${3:-10000000}
corpus="$fuzz/corpus/$target"
mkdir -p "$corpus" "$fuzz/logs"
find "$root/tests/fixtures" "$root/examples" -name '*.csv' -exec cp -n {} "$corpus/" \;
log="$fuzz/logs/$target-$(date -u +%Y%m%dT%H%M%S).log"
# Each target works in a folder of its own: with -jobs libFuzzer writes fuzz-0.log in the working
# folder, so targets run side by side would otherwise share (and clobber) one log.
work="$fuzz/logs/$target.work"
mkdir -p "$work"
cd "$work"
flags="-dict=$fuzz/headings.dict -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -jobs=1 -workers=1 -max_total_time=$secs -runs=$runs -print_final_stats=1"
if [ "${FUZZ_PREBUILT:-}" = 1 ]; then
    mkdir -p "$fuzz/artifacts/$target"
    # shellcheck disable=SC2086
    nice -n 19 "$fuzz/target/x86_64-unknown-linux-gnu/release/$target" -artifact_prefix="$fuzz/artifacts/$target/" \
        $flags "$corpus" >"$log" 2>&1 || true
else
    # shellcheck disable=SC2086
    nice -n 19 cargo +nightly fuzz run --fuzz-dir "$fuzz" -s none "$target" "$corpus" -- $flags >"$log" 2>&1 || true
fi
# With -jobs libFuzzer writes the job's output to fuzz-0.log and copies it into its own at the end.
rm -f fuzz-0.log
cd "$fuzz/logs" && rmdir "$work" 2>/dev/null || true
echo "$log"
