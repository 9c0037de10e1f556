#!/bin/sh
# Runs the targets one after another, SECONDS each (issue 9's fuzzing, on a shared machine).
# Usage: fuzz/batch.sh SECONDS TARGET...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
secs=$1
shift
for t in "$@"; do
    "$here/run.sh" "$t" "$secs"
done
