#!/usr/bin/env bash
# Build numa_numpy's C extension with AddressSanitizer + UndefinedBehaviorSanitizer
# in a throwaway copy of the repository and run the project's test suite (and
# tests/sanitizers/stress.py) against that build. Fails on any sanitizer report.
#
# The copy is made from `git ls-files --cached --others --exclude-standard` (the
# tracked files plus untracked files that are not ignored: never the main tree's
# build outputs), its extension built by the project's _build_cffi.py with
# NUMA_NUMPY_CFLAGS/NUMA_NUMPY_LDFLAGS, and the copy is put first on PYTHONPATH;
# the project's .venv is used only as the interpreter with NumPy, cffi, pytest and
# hypothesis, and its editable build is never touched.
#
# Output: pytest's verbose log and the sanitizer reports (one file per process
# that reported) are in $WORK/logs; KEEP_WORKDIR=1 keeps them.
#
# Environment: PYTHON (default <repo>/.venv/bin/python), KEEP_WORKDIR=1 to keep
# the temporary directory, ASAN_PYTEST_ARGS (extra pytest arguments, e.g.
# "--deselect tests/test_x.py::test_y"), ASAN_STRESS_ARGS (for stress.py).
#
# Blind spot: the arena hands out blocks carved from its own mmap'd chunks, which
# ASan treats as plain addressable memory, so an overflow from one NumPy array
# into the next block, or a use after free of an arena block, is not seen here
# (stress.py checks for those with fill patterns). ASan does check the arena's own
# malloc'd structures, stack use, and everything the C code does outside blocks.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")

WORK=$(mktemp -d /tmp/numa_numpy-asan.XXXXXX)
cleanup() {
    if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then
        echo "asan: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
SRC=$WORK/src
LOGS=$WORK/logs
mkdir -p "$SRC" "$LOGS"

t0=$(date +%s)
echo "== asan: copying the working tree to $SRC"
"$PY" - "$REPO" "$SRC" <<'EOF'
import os, shutil, subprocess, sys
repo, dst = sys.argv[1:3]
out = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others",
                      "--exclude-standard"], check=True, capture_output=True).stdout
n = 0
for rel in filter(None, out.decode().split("\0")):
    src = os.path.join(repo, rel)
    if not os.path.isfile(src):  # deleted in the working tree but still tracked
        continue
    os.makedirs(os.path.dirname(os.path.join(dst, rel)) or dst, exist_ok=True)
    shutil.copy2(src, os.path.join(dst, rel))
    n += 1
print(f"copied {n} files")
EOF

echo "== asan: building numa_numpy._numa with -fsanitize=address,undefined"
# _build_cffi.py run directly (ffibuilder.compile), from an empty build directory:
# cffi's build step parses the setuptools configuration of its working directory,
# and the project's pyproject.toml needs a newer setuptools (PEP 639 license)
# than the venv may have; the build itself only needs cffi, NumPy's headers and
# gcc. The module lands in $BUILD/numa_numpy/ and is copied into the copy.
BUILD=$WORK/build
mkdir -p "$BUILD"
(
    cd "$BUILD"
    # -fsanitize-recover=address with halt_on_error=0 below: every ASan report is
    # logged and the suite runs to its end (the script still fails on any report).
    export NUMA_NUMPY_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g -fsanitize-recover=address"
    export NUMA_NUMPY_LDFLAGS="-fsanitize=address,undefined"
    "$PY" "$SRC/_build_cffi.py" >"$LOGS/build.log" 2>&1 || {
        cat "$LOGS/build.log"; echo "asan: build failed"; exit 1; }
) || exit 1
rm -f "$SRC"/numa_numpy/_numa*.so
cp "$BUILD"/numa_numpy/_numa*.so "$SRC/numa_numpy/"
SO=$(ls "$SRC"/numa_numpy/_numa*.so)
LDD=$(ldd "$SO")  # (grep -q on a pipe under pipefail could see ldd's SIGPIPE)
if [[ $LDD != *libasan* || $LDD != *libubsan* ]]; then
    echo "$LDD"
    echo "asan: $SO is not linked against libasan and libubsan"
    exit 1
fi
if grep -E "warning:" "$LOGS/build.log"; then
    echo "asan: (compiler warnings above)"
fi
t1=$(date +%s)
echo "asan: built $SO in $((t1 - t0))s"

LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
# The interpreter is not instrumented, so the runtimes must be preloaded.
# detect_leaks=0: CPython does not free everything at exit (LeakSanitizer would
# report the interpreter's own allocations). Reports go to files under $LOGS so
# that one in a subprocess (tests/test_cli.py runs `python -m numa_numpy`) or one
# that a test swallows is still seen.
export LD_PRELOAD="$LIBASAN:$LIBUBSAN"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$LOGS/asan"
# UBSan halts at its first report (UBSAN_HALT=0 to log them all and go on).
export UBSAN_OPTIONS="halt_on_error=${UBSAN_HALT:-1}:print_stacktrace=1:log_path=$LOGS/ubsan"
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

cd "$SRC"
"$PY" - "$SRC" <<'EOF'
import sys
import numa_numpy, numa_numpy._numa as m
assert numa_numpy.__file__.startswith(sys.argv[1] + "/"), numa_numpy.__file__
assert m.__file__.startswith(sys.argv[1] + "/"), m.__file__
print("asan: testing", m.__file__)
EOF

status=0
# Tests that compare process-wide mapping counts or RSS before and after (they
# prove the arena gives memory back) also see the sanitizer's own memory: its
# quarantine keeps freed malloc blocks mapped (256 MB by default) and its
# allocator's reserved regions split into more VMAs as they fill. They run in a
# second pass without quarantine; asan_plugin.py leaves ASan's fixed shadow and
# allocator ranges out of kernel_view.mapping_count() in both passes.
COUNTING=${ASAN_COUNTING_TESTS:-tests/system/test_leaks.py tests/kernel/test_arena.py}
DESELECT=()
for t in $COUNTING; do [[ -e ${t%%::*} ]] && DESELECT+=(--deselect "$t"); done
export PYTHONPATH="$HERE:$PYTHONPATH"

echo "== asan: python -m pytest tests (quarantine on; without: $COUNTING)"
# -v: a run that a sanitizer halts still shows which test was running.
# shellcheck disable=SC2086
"$PY" -m pytest -v -rfE -p no:cacheprovider -p asan_plugin "${DESELECT[@]}" \
    ${ASAN_PYTEST_ARGS:-} tests >"$LOGS/pytest.log" 2>&1 || status=$?
grep -E "^(FAILED|ERROR)|^=+ .*(passed|failed|error).* =+$" "$LOGS/pytest.log" || {
    echo "asan: pytest ended without a summary; last lines:"; tail -n 5 "$LOGS/pytest.log"; }
t2=$(date +%s)
echo "asan: pytest exit $status in $((t2 - t1))s"

counting=()
for t in $COUNTING; do [[ -e ${t%%::*} ]] && counting+=("$t"); done
if [[ ${#counting[@]} -gt 0 ]]; then
    echo "== asan: python -m pytest ${counting[*]} (quarantine off)"
    rc=0
    ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0:thread_local_quarantine_size_kb=0" \
        "$PY" -m pytest -v -rfE -p no:cacheprovider -p asan_plugin "${counting[@]}" \
        >"$LOGS/pytest-counting.log" 2>&1 || rc=$?
    grep -E "^(FAILED|ERROR)|^=+ .*(passed|failed|error).* =+$" "$LOGS/pytest-counting.log" || {
        echo "asan: pytest ended without a summary; last lines:"
        tail -n 5 "$LOGS/pytest-counting.log"; }
    [[ $rc != 0 && $status == 0 ]] && status=$rc
    t2b=$(date +%s)
    echo "asan: pytest (counting tests) exit $rc in $((t2b - t2))s"
    t2=$t2b
fi

echo "== asan: stress.py"
# shellcheck disable=SC2086
"$PY" "$HERE/stress.py" ${ASAN_STRESS_ARGS:-} || status=$((status ? status : 3))
t3=$(date +%s)
echo "asan: stress in $((t3 - t2))s"

reports=$(find "$LOGS" -name 'asan.*' -o -name 'ubsan.*' | sort)
if [[ -n $reports ]]; then
    for f in $reports; do
        echo "---- $f (process $(basename "$f" | cut -d. -f2))"
        # The report, without the shadow-memory dump.
        sed '/^Shadow bytes around/,/^ *Right alloca redzone/d' "$f"
    done
    echo "asan: reports by place:"
    grep -h "^SUMMARY:" $reports | sort | uniq -c
    echo "asan: FAILED: $(echo "$reports" | wc -l) sanitizer report(s)"
    exit 1
fi
if [[ $status != 0 ]]; then
    echo "asan: FAILED: tests failed under the sanitizer build (exit $status)"
    exit "$status"
fi
echo "asan: OK: no sanitizer report; total $((t3 - t0))s"
