#!/usr/bin/env bash
# Set up and open the explorer: JupyterLab on the quick-start notebook (offline default model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh notebook
. .venv/bin/activate
exec jupyter lab notebooks/00_quickstart.ipynb "$@"
