#!/usr/bin/env bash
# NumPy's own test suite with numa_numpy as NumPy's allocator.
#
# Runs NumPy's INSTALLED test modules (numpy/_core/tests in the venv's
# site-packages) twice, with the same arguments:
#   1. baseline: plain pytest (NumPy's default allocator);
#   2. with numa_plugin.py (-p numa_plugin): one numa_numpy scope for the whole
#      session, policy from NUMA_NUMPY_SUITE_POLICY (default "bind:0"; e.g.
#      "interleave"), checked around every test and at the end.
# Each run writes a JUnit XML file; the script fails if the run with the plugin
# has any failed/errored test that the baseline does not (matched by test id),
# if a test of the baseline is missing from it, if pytest crashed or timed out,
# or if the plugin's own checks failed (handler lost, scope not exited cleanly).
#
# Selection (CI budget: this stage <= 8 min on a 2-core runner, both runs):
#   MODULES below, with -m "not slow" (what np.test() runs by default), at most
#   NUMA_NUMPY_SUITE_MEM (default 10 GB, never more than MemAvailable) given to
#   NumPy's @requires_memory tests (NPY_AVAILABLE_MEM), and one deselected test
#   (see DESELECT). NUMA_NUMPY_SUITE_FULL=1 runs all of numpy/_core/tests with
#   nothing left out (about 21 min per run on 2 cores: not for CI).
#   NUMA_NUMPY_SUITE_MODULES="test_api test_indexing" overrides the module list.
#
# Other environment: PYTHON (default <repo>/.venv/bin/python),
# NUMA_NUMPY_SUITE_OUT (directory for the XML/JSON/log files; default a new
# temporary directory), NUMA_NUMPY_SUITE_TIMEOUT (seconds per run, default 900),
# NUMA_NUMPY_SUITE_SKIP_BASELINE=1 (reuse baseline.xml already in OUT: it does
# not depend on numa_numpy, only on NumPy and the selection),
# NUMA_NUMPY_SUITE_PARALLEL=auto|1|0 (run baseline and plugin run at the same
# time; auto: when there are 2+ CPUs), NUMA_NUMPY_SUITE_LOOPS=1 (the plugin run
# also turns numa_numpy's node-parallel ufunc loops on, threshold 1, so that
# every eligible call is split; it reports how many were and fails if none).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
POLICY=${NUMA_NUMPY_SUITE_POLICY:-bind:0}
OUT=${NUMA_NUMPY_SUITE_OUT:-$(mktemp -d /tmp/numpy-suite.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TIMEOUT=${NUMA_NUMPY_SUITE_TIMEOUT:-900}

# NumPy's tests import pytest and hypothesis (numpy/conftest.py, test_multiarray,
# test_numeric, ...); nothing in numpy/_core/tests needs pytz or typing_extensions.
if ! "$PY" -c "import numpy, pytest, hypothesis, numa_numpy" 2>/dev/null; then
    echo "numpy-suite: needs numpy, pytest, hypothesis and numa_numpy in $PY" \
         "(pip install -e '.[test]')"
    exit 2
fi
NPDIR=$("$PY" -c "import numpy, os; print(os.path.dirname(numpy.__file__))")
TESTS=$NPDIR/_core/tests

# Modules, and why (timings: README.md next to this script):
#   the ten that exercise array creation, copies, resizing, views, iteration and
#   ufunc buffers most: test_multiarray (~14k tests), test_umath, test_ufunc,
#   test_numeric, test_regression, test_nditer, test_indexing, test_shape_base,
#   test_item_selection, test_api;
#   cheap ones that add other allocation paths: test_memmap (arrays NOT owned by
#   the handler), test_dlpack (exported buffers), test_array_coercion,
#   test_datetime, test_records, test_einsum (buffered iterators), test_half,
#   test_casting_unittests (cast buffers), test_multithreading (allocations in
#   threads, which start with NumPy's default handler), test_arrayprint,
#   test_defchararray, test_unicode, test_function_base, test_arrayobject,
#   test_conversion_utils.
# Left out: test_mem_policy (tests NumPy's allocator API itself: it asserts the
#   default handler's name and needs meson to build a helper module, erroring
#   in both runs here); test_cython/test_limited_api (build extensions: skipped
#   or errors without a compiler toolchain); test_strings/test_stringdtype
#   (2.5 min: StringDType keeps string data in its own allocator); test_dtype,
#   test_mem_overlap (2.5 min together, few allocations per test); test_simd,
#   test_extint128, test_scalarmath, test_umath_accuracy (no array allocation to
#   speak of).
MODULES=(test_multiarray test_umath test_ufunc test_numeric test_regression test_nditer
         test_indexing test_shape_base test_item_selection test_api
         test_memmap test_dlpack test_array_coercion test_datetime test_records
         test_einsum test_half test_casting_unittests test_multithreading
         test_arrayprint test_defchararray test_unicode test_function_base
         test_arrayobject test_conversion_utils)
if [[ -n ${NUMA_NUMPY_SUITE_MODULES:-} ]]; then
    read -r -a MODULES <<<"$NUMA_NUMPY_SUITE_MODULES"
fi
# test_huge_list_error builds a 2**31-element Python tuple (17 GB of CPython
# memory, ~2 min) to check an argument count: no NumPy allocation is involved.
DESELECT=(_core/tests/test_shape_base.py::TestConcatenate::test_huge_list_error)

ARGS=(-c "$HERE/pytest-numpy.ini" --rootdir="$NPDIR" --confcutdir="$NPDIR"
      -p no:cacheprovider -q -rfE --tb=short)
if [[ ${NUMA_NUMPY_SUITE_FULL:-0} == 1 ]]; then
    PATHS=("$TESTS")
    SELECT_DESC="all of numpy/_core/tests"
else
    PATHS=()
    for m in "${MODULES[@]}"; do PATHS+=("$TESTS/$m.py"); done
    ARGS+=(-m "not slow")
    for d in "${DESELECT[@]}"; do ARGS+=(--deselect "$d"); done
    # @requires_memory tests run when this much memory is available (both runs).
    mem_cap=$("$PY" - "${NUMA_NUMPY_SUITE_MEM:-10 GB}" <<'EOF'
import re, sys
m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)b?\s*", sys.argv[1].lower())
if not m:
    sys.exit(f"NUMA_NUMPY_SUITE_MEM={sys.argv[1]!r}: expected e.g. '10 GB'")
cap = int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2)])
try:
    avail = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo")
                 if l.startswith("MemAvailable:"))
except (OSError, StopIteration):
    avail = cap
print(min(cap, int(avail * 0.8)))
EOF
)
    export NPY_AVAILABLE_MEM=${NPY_AVAILABLE_MEM:-$mem_cap}
    SELECT_DESC="${#MODULES[@]} modules, -m 'not slow', NPY_AVAILABLE_MEM=$NPY_AVAILABLE_MEM"
fi
# The two runs are independent single-threaded pytest processes: with 2+ CPUs
# they run at once (wall time of one run). Each keeps under ~3 GB RSS here,
# @requires_memory tests included (their big arrays are mostly untouched).
PARALLEL=${NUMA_NUMPY_SUITE_PARALLEL:-auto}
if [[ $PARALLEL == auto ]]; then
    PARALLEL=$([[ $(nproc) -ge 2 ]] && echo 1 || echo 0)
fi
SELECT_DESC="$SELECT_DESC; runs $([[ $PARALLEL == 1 ]] && echo "in parallel" || echo "one after the other")"
echo "numpy-suite: numpy $("$PY" -c 'import numpy; print(numpy.__version__)') in $NPDIR"
echo "numpy-suite: $SELECT_DESC; policy $POLICY; output in $OUT"

run_pytest() {  # name, then extra pytest arguments
    local name=$1; shift
    local start end rc
    start=$(date +%s)
    # Own working and temporary directories: the two runs may go at once.
    mkdir -p "$OUT/$name.d"
    (cd "$OUT/$name.d" && timeout --kill-after=30 "$TIMEOUT" "$PY" -m pytest "${ARGS[@]}" \
        --basetemp="$OUT/$name.d/tmp" --junitxml="$OUT/$name.xml" "$@" "${PATHS[@]}" \
        >"$OUT/$name.log" 2>&1)
    rc=$?
    end=$(date +%s)
    echo "$rc" >"$OUT/$name.rc"
    echo "$((end - start))" >"$OUT/$name.seconds"
    echo "numpy-suite: $name: exit $rc in $((end - start))s ($(tail -n 1 "$OUT/$name.log"))"
}

t0=$(date +%s)
if [[ ${NUMA_NUMPY_SUITE_SKIP_BASELINE:-0} == 1 && -f $OUT/baseline.xml ]]; then
    echo "numpy-suite: baseline: reusing $OUT/baseline.xml"
    baseline_pid=
elif [[ $PARALLEL == 1 ]]; then
    run_pytest baseline &
    baseline_pid=$!
else
    run_pytest baseline
    baseline_pid=
fi
NUMA_NUMPY_SUITE_POLICY=$POLICY NUMA_NUMPY_SUITE_REPORT=$OUT/numa.json \
    PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" \
    run_pytest numa -p numa_plugin
[[ -n $baseline_pid ]] && wait "$baseline_pid"
t1=$(date +%s)
sed -n '/=* numa_numpy allocator =*/,/scope checks\|FAILED CHECK/p' "$OUT/numa.log"

"$PY" - "$OUT" "$POLICY" "$((t1 - t0))" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET

out, policy, seconds = sys.argv[1], sys.argv[2], sys.argv[3]

def outcomes(name):
    path = os.path.join(out, name + ".xml")
    if not os.path.exists(path):
        return None
    result = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            kind = "failed"
        elif case.find("skipped") is not None:
            kind = "skipped"
        else:
            kind = "passed"
        # A test can appear twice (failed call, then error in teardown): worst wins.
        if result.get(tid) != "failed":
            result[tid] = kind
    return result

def message(name, tid):
    for case in ET.parse(os.path.join(out, name + ".xml")).getroot().iter("testcase"):
        if f"{case.get('classname')}::{case.get('name')}" == tid:
            for tag in ("failure", "error"):
                e = case.find(tag)
                if e is not None:
                    return (e.get("message") or "").splitlines()[0][:300]
    return ""

def counts(res):
    c = {"passed": 0, "failed": 0, "skipped": 0}
    for kind in res.values():
        c[kind] += 1
    return c

base, numa = outcomes("baseline"), outcomes("numa")
rc = {n: open(os.path.join(out, n + ".rc")).read().strip() for n in ("baseline", "numa")
      if os.path.exists(os.path.join(out, n + ".rc"))}
problems = []
for name, res in (("baseline", base), ("numa", numa)):
    if res is None:
        problems.append(f"{name}: no JUnit XML (pytest crashed or timed out: exit {rc.get(name)})")
    elif rc.get(name) not in (None, "0", "1"):
        problems.append(f"{name}: pytest exit {rc.get(name)} (0 or 1 expected: 124/137 timeout, "
                        "2 interrupted, 3 internal error, 4 usage error, 5 no tests, >128 signal)")
if base is not None and numa is not None:
    new = sorted(t for t, k in numa.items() if k == "failed" and base.get(t) != "failed")
    missing = sorted(set(base) - set(numa))
    fixed = sorted(t for t, k in base.items() if k == "failed" and numa.get(t) != "failed")
    for t in new:
        problems.append(f"new failure under numa_numpy: {t}: {message('numa', t)}")
    if missing:
        problems.append(f"{len(missing)} test(s) of the baseline did not run under numa_numpy, "
                        f"e.g. {missing[:5]}")
    for t in fixed:
        print(f"numpy-suite: note: fails in the baseline only: {t}")
    b, n = counts(base), counts(numa)
    print(f"numpy suite under numa_numpy: {n['passed']} passed, {n['failed']} failed, "
          f"{n['skipped']} skipped (baseline: {b['passed']} passed, {b['failed']} failed, "
          f"{b['skipped']} skipped); policy {policy}; {seconds}s for both runs")
    for t in sorted(t for t, k in base.items() if k == "failed"):
        print(f"numpy-suite: fails in the baseline too (not counted against numa_numpy): {t}")
report = os.path.join(out, "numa.json")
if numa is not None:
    if not os.path.exists(report):
        problems.append("the plugin wrote no report (was it loaded?)")
    else:
        r = json.load(open(report))
        problems += [f"plugin check: {p}" for p in r["problems"]]
        if not r["tests_checked"]:
            problems.append("the plugin checked no test")
for p in problems:
    print(f"numpy-suite: FAIL: {p}")
sys.exit(1 if problems else 0)
EOF
status=$?
echo "numpy-suite: $([[ $status == 0 ]] && echo OK || echo FAILED) (logs: $OUT)"
exit $status
