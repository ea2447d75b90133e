#!/bin/sh
# Fuzz echo_server.c's request handling (libFuzzer + ASan + UBSan, fuzz/fuzz_server.c) for a bounded time.
#
#   echo/fuzz/run.sh [SECONDS]     default 60; needs clang (apt-get install clang)
#
# Exit status 0: no crash, no sanitizer report, no wrong reply. Otherwise the failing input is kept and its
# path printed; replay it with `fuzz_server FILE`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-60}
work=$(mktemp -d "${TMPDIR:-/tmp}/echo-fuzz.XXXXXX")

make -s -C "$here/.." fuzz OUT="$work"

# Seeds in the harness's format: a size byte b (read of 1 + b%128 bytes, 0xff = reset), then the bytes.
mkdir "$work/corpus"
printf '\005hello\n\004exit\n' >"$work/corpus/hello-exit"
printf '\006hello\r\n\000\n' >"$work/corpus/crlf-empty"
printf '\142%0100d\n' 0 >"$work/corpus/longer-than-a-read"
printf '\002hi\n\377' >"$work/corpus/reset"

if "$work/fuzz_server" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/" "$work/corpus" >"$work/fuzz.log" 2>&1; then
    tail -n 1 "$work/fuzz.log"
    rm -rf "$work"
    echo "fuzz: no crash in ${seconds} s"
else
    tail -n 30 "$work/fuzz.log"
    echo "fuzz: FAILED; log, crashing input and binary kept in $work" >&2
    exit 1
fi
