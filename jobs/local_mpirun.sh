#!/bin/bash
# A smoke run on a laptop or a login-free test box: 4 ranks with Open MPI,
# one Ray node per rank (--node-per-rank) to try the multi-node path on one
# machine, PPO for a few iterations.
#
#   bash jobs/local_mpirun.sh                     # from the project folder
#   NP=2 STOP_ITERS=5 bash jobs/local_mpirun.sh
set -euo pipefail

VENV=${VENV:-.venv}                             # `make venv` makes it
NP=${NP:-4}
FRAMEWORK=${FRAMEWORK:-tf2}
STOP_ITERS=${STOP_ITERS:-3}
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then                     # Open MPI refuses root without these
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# --oversubscribe: more ranks than cores is fine for a smoke run.
exec "$VENV/bin/mpirun" --oversubscribe -np "$NP" \
    "$VENV/bin/python" -m start_ray --node-per-rank --num-cpus 1 drivers/train_ppo.py \
    --framework "$FRAMEWORK" --stop-iters "$STOP_ITERS" --train-batch-size 1000
