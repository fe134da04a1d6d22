#!/usr/bin/env bash
# Set up the environment (when needed) and run the test suite (pytest arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
