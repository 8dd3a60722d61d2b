#!/usr/bin/env bash
# Installs what the test suite talks to: real SIP peers (sipp, baresip, and kamailio as the SBC of the
# behind_sbc tests), audio tools (sox with AMR-NB, espeak-ng, multimon-ng), spandsp for the DSP
# comparison bench, libopus for the `opus` feature (browser calls' Opus), Chromium for the
# widget/portal tests, iproute2 for network-namespace tests, PostgreSQL (the server binaries: the
# PostgreSQL store's tests start throwaway clusters of their own), the npm packages of the browser tests,
# and SIPVicious (PyPI sipvicious) as the attacker of tests/sipvicious_finds_nothing.rs, in a venv
# of its own.
# Idempotent: does nothing when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(sip-tester baresip-core kamailio sox libsox-fmt-all espeak-ng multimon-ng libspandsp-dev
          pkg-config libopus-dev chromium iproute2 util-linux nodejs npm python3-venv postgresql)
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
    # Likewise the cluster the postgresql package starts on 5432: the tests run their own
    # (tests/support/postgres.rs).
    if [[ " ${missing[*]} " == *" postgresql "* ]] && [[ -d /run/systemd/system ]]; then
        $sudo systemctl disable --now postgresql.service >/dev/null 2>&1 || true
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

# SIPVicious, pinned, in a venv at $VB_SIPVICIOUS_VENV (default below); the tests look there, then on
# PATH (tests/support/sipvicious.rs).
sipvicious_version=0.3.8
venv="${VB_SIPVICIOUS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/veilig-bellen/venv}"
installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("sipvicious"))' \
    2>/dev/null || true)
if [[ $installed != "$sipvicious_version" ]]; then
    echo "installing sipvicious $sipvicious_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "sipvicious==$sipvicious_version"
fi

# PJSIP (PyPI pjsua2-python: prebuilt PJSIP 2.15.1 for CPython 3.8-3.12 on x86_64 Linux), pinned, as
# the second agent phone beside baresip (tests/support/pjsua.rs), in a venv of its own at
# $VB_PJSUA_VENV (default below); the tests use its python, or $VB_PJSUA_PYTHON when set.
pjsua_version=2.15.1.post1
pjsua_venv="${VB_PJSUA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/veilig-bellen/pjsua-venv}"
pjsua_installed=$("$pjsua_venv/bin/python" -c \
    'import importlib.metadata as m, pjsua2; print(m.version("pjsua2-python"))' 2>/dev/null || true)
if [[ $pjsua_installed != "$pjsua_version" ]]; then
    pjsua_base=""
    for py in python3.12 python3.11 python3.10 python3.9 python3.8 python3; do
        if command -v "$py" >/dev/null &&
            "$py" -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 12))'; then
            pjsua_base=$py
            break
        fi
    done
    if [[ -z $pjsua_base ]]; then
        echo "pjsua2-python $pjsua_version has wheels for Python 3.8-3.12 only; none found" >&2
        exit 1
    fi
    echo "installing pjsua2-python $pjsua_version into $pjsua_venv ($($pjsua_base --version))"
    "$pjsua_base" -m venv "$pjsua_venv"
    "$pjsua_venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
        "pjsua2-python==$pjsua_version"
fi
