#!/usr/bin/env bash
# Set up and open the explorer: JupyterLab on the quick-start notebook (offline default model).
# Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8899).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh notebook
. .venv/bin/activate
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-root)
exec jupyter lab "${root_flag[@]}" notebooks/00_quickstart.ipynb "$@"
