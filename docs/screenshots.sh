#!/usr/bin/env bash
# Pictures of the built site, as a reader's browser draws it: the landing page,
# a guide page and an API page, 1400x1000 (a laptop window), by headless
# Chromium. Build the site first (bash .ci/docs.sh).
#
#   bash docs/screenshots.sh [OUTDIR]     # default: docs/_build/screenshots
#
# Needs chromium-headless-shell (Debian: apt-get install chromium-headless-shell)
# or chromium on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/_build/screenshots}
SITE=$PWD/docs/_build/html
[[ -f $SITE/index.html ]] || { echo "no built site: bash .ci/docs.sh builds $SITE" >&2; exit 2; }
BROWSER=$(command -v chromium-headless-shell || command -v chromium || true)
[[ -n $BROWSER ]] || { echo "needs chromium-headless-shell or chromium on PATH" >&2; exit 2; }
mkdir -p "$OUT"
for page in index guide/files api/generated/numa_numpy.numa_zeros; do
    shot=$OUT/$(echo "$page" | tr / _).png
    "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size=1400,1000 --screenshot="$shot" "file://$SITE/$page.html" 2>/dev/null
    [[ -s $shot ]] || { echo "no picture of $page" >&2; exit 1; }
    echo "$shot"
done
