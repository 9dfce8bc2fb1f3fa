#!/usr/bin/env bash
# Run tests/sanitizers/stress.py under valgrind memcheck, against the extension
# the project's venv already has (an ordinary -O2 build: valgrind needs no special
# build). Fails on any memcheck error or any definitely-lost block.
#
#   valgrind --tool=memcheck --error-exitcode=1 --leak-check=full
#            --errors-for-leak-kinds=definite --suppressions=python.supp
#
# PYTHONMALLOC=malloc sends CPython's small objects to malloc so memcheck sees
# them too. python.supp (next to this script) holds the suppressions for CPython,
# NumPy, cffi and ld.so internals, each explained there; none can match an error
# whose innermost frame is in numa_numpy's extension. The suppressions used, with
# their counts, are printed after the run.
#
# What memcheck cannot see: blocks the arena carves out of its own mmap'd chunks
# and large mappings are not malloc blocks, so overruns between arrays, use after
# free of an array's data and leaked chunks are invisible to it (stress.py checks
# those itself: fill patterns, live-block counters, policy-bound mappings left).
# It does see every malloc/free of the C code (arena, masks, handler structs,
# prefault jobs), reads of freed memory, and uninitialised values it passes on.
#
# Environment: PYTHON (default <repo>/.venv/bin/python), STRESS_ARGS (passed to
# stress.py, default "--quick"), VALGRIND_EXTRA (more valgrind options),
# MEMCHECK_LOG (where the valgrind log goes; default a temporary file).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
LOG=${MEMCHECK_LOG:-$(mktemp /tmp/numa_numpy-memcheck.XXXXXX.log)}

command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed"; exit 2; }
echo "memcheck: $(valgrind --version); extension: $("$PY" -c 'import numa_numpy._numa as m; print(m.__file__)')"

t0=$(date +%s)
status=0
# shellcheck disable=SC2086
PYTHONMALLOC=malloc valgrind --tool=memcheck --error-exitcode=1 \
    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --track-origins=yes --num-callers=30 --suppressions="$HERE/python.supp" \
    -v --gen-suppressions=all --log-file="$LOG" ${VALGRIND_EXTRA:-} \
    "$PY" "$HERE/stress.py" ${STRESS_ARGS:---quick} || status=$?
t1=$(date +%s)

# What valgrind said about the run, and about syscalls it does not know.
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:" "$LOG" || true
if grep -E "unhandled|Unsupported|unrecognised|WARNING" "$LOG" | grep -v "used_suppression\|redirection conflicts"; then
    echo "memcheck: (valgrind warnings above: syscalls or arguments it does not model)"
fi
echo "memcheck: suppressions used (count, name):"
sed -n 's/.*used_suppression: *\([0-9]*\) \([^ ]*\) .*/  \1 \2/p' "$LOG"

errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$LOG" | tail -1)
lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$LOG" | tail -1 | tr -d ,)
echo "memcheck: stress exit $status; errors ${errors:-?}; definitely lost ${lost:-0} bytes;" \
     "$((t1 - t0))s; log: $LOG"
if [[ $status != 0 || ${errors:-1} != 0 || ${lost:-0} != 0 ]]; then
    echo "memcheck: FAILED"
    sed -n '/^==[0-9]*== \(Invalid\|Use of uninit\|Conditional jump\|.*definitely lost in\|Mismatched\|Source and destination\|Syscall param\|Jump to\)/,/^==[0-9]*== *$/p' "$LOG" | head -200
    exit 1
fi
echo "memcheck: OK"
