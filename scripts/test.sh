#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it.
#   scripts/test.sh [pytest args]
# Python packages come from PyPI (ACA-Py into a virtualenv of its own), Node packages from npm;
# Chromium, openssh and ffmpeg from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --config-settings editable_mode=strict -e '.[test]'

if [ -f tests/js/package.json ]; then
    command -v node >/dev/null || { echo "node is required for the autobahn-js tests" >&2; exit 1; }
    npm ci --prefix tests/js --no-audit --no-fund --silent
    if ! command -v chromium >/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            echo "Debian's chromium is required for the browser tests (apt-get install chromium)" >&2
            exit 1
        fi
    fi
fi

# Debian packages: sshd and ssh (tunnel), ffmpeg (live video) for the relay tests;
# mosquitto and mosquitto-clients (its dynamic-security plugin, mosquitto_ctrl)
# for the IoT agent's tests, which start their own broker; nats-server (with
# JetStream) for the cluster tests, which start their own server; systemd
# (systemd-analyze verify) for the units in contrib/systemd/; graphviz (dot) for
# the documentation's diagrams (tests/docs builds the site); curl and iproute2
# (a network namespace's loopback) for the tutorials, which tests/docs runs.
missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh >/dev/null || missing="$missing openssh-client"
command -v ffmpeg >/dev/null || missing="$missing ffmpeg"
command -v mosquitto >/dev/null || missing="$missing mosquitto"
command -v mosquitto_ctrl >/dev/null || missing="$missing mosquitto-clients"
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing="$missing nats-server"
command -v systemd-analyze >/dev/null || missing="$missing systemd"
command -v dot >/dev/null || missing="$missing graphviz"
command -v curl >/dev/null || missing="$missing curl"
command -v ip >/dev/null || missing="$missing iproute2"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "Debian packages needed by the tests:$missing (apt-get install$missing)" >&2
        exit 1
    fi
fi

# ACA-Py for the mediator-proxy test with the agents the seed serves: its own
# virtualenv (its pins are not ours), made once and reused (about a minute).
ACAPY_VENV="${RELAYROUTER_ACAPY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/relayrouter/acapy-0.12.8}"
if [ ! -f "$ACAPY_VENV/.installed" ]; then
    rm -rf "$ACAPY_VENV"
    "$PYTHON" -m venv "$ACAPY_VENV"
    "$ACAPY_VENV/bin/pip" install --quiet --disable-pip-version-check 'aries-cloudagent[askar]==0.12.8'
    touch "$ACAPY_VENV/.installed"
fi
# Indicio's Message Pickup 2.0 plugin for the external mediator (pinned to ACA-Py 0.8.2 in its metadata;
# its imports and messages work on 0.12.8, which the tests check): without its dependencies.
if [ ! -f "$ACAPY_VENV/.pickup-installed" ]; then
    "$ACAPY_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps 'acapy-plugin-pickup==0.2.0'
    touch "$ACAPY_VENV/.pickup-installed"
fi
export RELAYROUTER_ACAPY="$ACAPY_VENV/bin/aca-py"

# The suite starts hundreds of Python processes (routers, connectors, tutorials' commands) from
# this checkout: they keep the modules they compile (a machine may set PYTHONDONTWRITEBYTECODE),
# instead of each compiling the package again (about a quarter of a router's start).
unset PYTHONDONTWRITEBYTECODE

exec "$PYTHON" -m pytest "$@"
