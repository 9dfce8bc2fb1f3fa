#!/usr/bin/env bash
# Install what the NUMA lab (tests/lab/run.py) needs on a Debian bookworm machine.
#
# Idempotent: does nothing (and touches no network) when everything is present.
#
#   bash tests/lab/setup.sh                    # virtme-ng goes into `python3`
#   PYTHON=/path/to/python bash tests/lab/setup.sh
#
# What it installs:
#   apt: qemu-system-x86     QEMU (software emulation, TCG, is used)
#        linux-image-6.12-amd64  guest kernel + modules (>= 6.9 for weighted interleave)
#        busybox-static      vng builds its tiny initramfs from a *static* busybox
#        numactl             for cross-checks inside the guest
#   pip: virtme-ng           provides `vng`
#
# Environment knobs:
#   PYTHON              interpreter to install virtme-ng into (default: python3)
#   VIRTME_NG_SPEC      pip requirement for virtme-ng (default: pinned version below)
#   NUMA_LAB_VNG_VENV   venv used for virtme-ng when $PYTHON is an externally managed
#                       (PEP 668) system interpreter (default: ~/.cache/numa-lab/vng-venv)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VIRTME_NG_SPEC="${VIRTME_NG_SPEC:-virtme-ng==1.42}"
VNG_VENV="${NUMA_LAB_VNG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/numa-lab/vng-venv}"
APT_PACKAGES=(qemu-system-x86 busybox-static numactl linux-image-6.12-amd64)

log() { printf 'numa-lab setup: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        log "not root and no sudo: apt installs will fail"; fi
fi

# ---------------------------------------------------------------- apt packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    $SUDO apt-get update -qq
    # --no-install-recommends: qemu's recommends pull in a GUI stack (~150 packages).
    # INITRD=No: the host never boots this kernel, and vng builds its own initramfs,
    # so skip the (slow) update-initramfs run of the kernel package.
    $SUDO env DEBIAN_FRONTEND=noninteractive INITRD=No \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "apt packages present: ${APT_PACKAGES[*]}"
fi

if ! ls /boot/vmlinuz-6.12* >/dev/null 2>&1; then
    log "no /boot/vmlinuz-6.12* after install"; exit 1
fi
# vng reads the kernel image; Debian installs it mode 0600 (fine as root).
if [ "$(id -u)" -ne 0 ]; then
    for k in /boot/vmlinuz-6.12*; do [ -r "$k" ] || log "WARNING: $k is not readable by $(id -un)"; done
fi

# ----------------------------------------------------------------- virtme-ng
have_vng() { "$1" -c 'import virtme_ng, virtme' >/dev/null 2>&1; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "interpreter not found: $PYTHON"; exit 1
fi

if have_vng "$PYTHON"; then
    log "virtme-ng present in $PYTHON"
elif [ -x "$VNG_VENV/bin/python" ] && have_vng "$VNG_VENV/bin/python"; then
    log "virtme-ng present in $VNG_VENV"
else
    # PEP 668: a distribution's own python3 refuses `pip install`; use a venv then.
    managed=$("$PYTHON" - <<'EOF'
import os, sys, sysconfig
in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
print(1 if (not in_venv and os.path.exists(marker)) else 0)
EOF
)
    if [ "$managed" = 1 ]; then
        log "$PYTHON is externally managed; installing virtme-ng into $VNG_VENV"
        "$PYTHON" -m venv "$VNG_VENV" || {
            log "python3 -m venv failed (apt-get install python3-venv?)"; exit 1; }
        "$VNG_VENV/bin/python" -m pip install -q --disable-pip-version-check "$VIRTME_NG_SPEC"
    else
        log "installing $VIRTME_NG_SPEC into $PYTHON"
        "$PYTHON" -m pip install -q --disable-pip-version-check "$VIRTME_NG_SPEC"
    fi
fi

if [ -e /dev/kvm ]; then
    log "note: /dev/kvm exists but the lab uses software emulation (--disable-kvm) on purpose"
fi
log "ok"
