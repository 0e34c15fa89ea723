#!/usr/bin/env bash
# Install everything the tests need (Python packages, Debian's chromium, the JS toolchain) and run
# all three tiers: engine + widget tests (pytest), renderer tests (node --test), browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
fi
scripts/setup.sh test
. .venv/bin/activate
(cd js && npm test --silent)
python -m pytest -q -ra --durations=40 "$@"
