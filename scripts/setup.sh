#!/usr/bin/env bash
# Set up everything cnn_widgets needs on a fresh Debian machine: a venv with torch + the package,
# and the JS bundle (built with the npm registry's esbuild; users of the wheel need no Node).
# Usage: scripts/setup.sh [extra]   (extra: "test" adds pytest, captum, playwright, jupyter)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-notebook}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first: this pair resolves from the local disk on these machines (x86_64); elsewhere from PyPI.
if [ "$(uname -m)" = "aarch64" ]; then
    python -m pip install -q "torch==2.9.1" "torchvision==0.24.1"
else
    python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
(cd js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
python -m pip install -q -e ".[$extra]"
