#!/usr/bin/env bash
# Multi-process testing with torchrun:  bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args]
# One process per GPU (nccl); on a machine without a CUDA GPU, NPROC CPU processes (gloo, see tools/_bootstrap.py).
# Runs the project's .venv Python without activating it (PYTHON=... to use another interpreter).
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
cd "$(dirname "$0")/.."
source tools/python_env.sh
"$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" tools/test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
