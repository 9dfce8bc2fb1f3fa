#!/usr/bin/env bash
# The README's first two bash blocks (install+run, then the tests), run literally,
# as a newcomer would: a fresh clone of this repository's HEAD, a fresh venv made
# with the given interpreter and activated, each block in its own shell from the
# clone's root. The blocks are read from the clone's README.md, so an edit of the
# README is what gets tested.
#
#   bash .ci/readme-commands.sh PYTHON [WORKDIR]
set -euo pipefail
PY=${1:?usage: readme-commands.sh PYTHON [WORKDIR]}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${2:-$(mktemp -d /tmp/numa-numpy-readme.XXXXXX)}
rm -rf "$WORK"
mkdir -p "$WORK"

git clone -q "$REPO" "$WORK/clone"
cd "$WORK/clone"
"$PY" -m venv venv
# shellcheck disable=SC1091
. venv/bin/activate
echo "readme-commands: $(python --version) in a fresh venv, fresh clone of $(git rev-parse --short HEAD)"

# The first two ```bash blocks, each as written.
python - README.md "$WORK" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
if len(blocks) < 2:
    sys.exit("readme-commands: the README has fewer than two bash blocks")
for i, block in enumerate(blocks[:2], 1):
    with open(f"{sys.argv[2]}/block{i}.sh", "w") as f:
        f.write(block)
EOF
for i in 1 2; do
    echo "readme-commands: block $i:"
    sed 's/^/    $ /' "$WORK/block$i.sh"
    # -o pipefail and -e, like a careful user's shell: any failing command fails
    bash -eo pipefail "$WORK/block$i.sh"
done
deactivate
cd /
rm -rf "$WORK"
