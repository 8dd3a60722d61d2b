#!/usr/bin/env bash
# Installs what the test suite talks to: real SIP peers (sipp, baresip, and kamailio as the SBC of the
# behind_sbc tests), audio tools (sox with AMR-NB, espeak-ng, multimon-ng), spandsp for the DSP
# comparison bench, Chromium for the widget/portal tests, iproute2 for network-namespace tests, and the
# npm packages of the browser tests.
# Idempotent: does nothing when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(sip-tester baresip-core kamailio sox libsox-fmt-all espeak-ng multimon-ng libspandsp-dev
          pkg-config chromium iproute2 util-linux nodejs npm)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from outside Debian (e.g. NodeSource); don't ask apt for them when present.
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    # The tests start their own kamailio (tests/support/kamailio.rs); the package's service, which
    # listens on 5060, is not wanted where this script installed it.
    if [[ " ${missing[*]} " == *" kamailio "* ]] && [[ -d /run/systemd/system ]]; then
        $sudo systemctl disable --now kamailio.service >/dev/null 2>&1 || true
    fi
fi

# npm packages of the browser tests (playwright-core drives Debian's /usr/bin/chromium).
for dir in tests/browser; do
    if [[ -f $dir/package.json ]]; then
        if [[ -f $dir/package-lock.json ]]; then
            npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
        else
            npm install --prefix "$dir" --no-audit --no-fund --loglevel=error
        fi
    fi
done
