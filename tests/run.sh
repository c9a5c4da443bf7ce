#!/usr/bin/env bash
# tests/run.sh BIN...: run each cmocka test binary, show its output, and end
# with one line "N passed, N failed" summing every group.  Exits non-zero
# when any test failed or any binary crashed.  A binary that runs longer
# than TEST_TIMEOUT seconds (default 300) is killed and counts as failed,
# so a hang costs minutes, not the CI's whole budget.
set -u
limit=${TEST_TIMEOUT:-300}
passed=0
failed=0
broken=()
for bin in "$@"; do
    [ -x "$bin" ] || { echo "missing test binary: $bin"; failed=$((failed + 1)); broken+=("$bin"); continue; }
    log=$(mktemp)
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$bin" >"$log" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] && echo "$bin: killed after ${limit}s (TEST_TIMEOUT)" >>"$log"
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    rm -f "$log"
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ] && [ -z "${f:-}" ]; then
        failed=$((failed + 1))   # crashed or aborted before cmocka's summary
    fi
    [ "$rc" -ne 0 ] && broken+=("$bin")
    echo "--- $bin: exit $rc, $(( $(date +%s) - start ))s"
done
if [ "${#broken[@]}" -gt 0 ]; then
    echo "failing: ${broken[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "${#broken[@]}" -eq 0 ]
