#!/usr/bin/env bash
# Build the documentation site (Sphinx + numpydoc + myst-nb) with warnings as
# errors. Installs the package with its `docs` extra into a venv (default:
# .venv; DOCS_VENV=path to choose another), then builds docs/ into
# docs/_build/html. The tour notebook is rendered with its stored outputs, not
# executed (nb_execution_mode = "off" in docs/conf.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${DOCS_VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e ".[docs]"
rm -rf docs/_build
"$VENV/bin/python" -m sphinx -W --keep-going -b html docs docs/_build/html
echo "docs: docs/_build/html/index.html"
