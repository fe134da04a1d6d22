#!/usr/bin/env bash
# Set up the environment (when needed) and run the CPU demo: train + evaluate a detector on synthetic COCO data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python tools/demo.py "$@"
