#!/bin/bash
# A smoke run on a laptop or a test box: 4 ranks with Open MPI, one Ray node
# per rank (--node-per-rank) to try the multi-node path on one machine, and
# your program (or the PPO example, for a few iterations) on rank 0.
#
#   bash jobs/local_mpirun.sh                     # from anywhere
#   NP=2 DRIVER=my_driver.py DRIVER_ARGS="--epochs 1" bash jobs/local_mpirun.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)          # the project folder
VENV=${VENV:-$HERE/.venv}                       # `make venv` makes it
NP=${NP:-4}
DRIVER=${DRIVER:-$HERE/drivers/train_ppo.py}
DRIVER_ARGS=${DRIVER_ARGS:-}
# The PPO example's options (it reads PPO_*): a short run.
export PPO_FRAMEWORK=${PPO_FRAMEWORK:-tf2} PPO_STOP_ITERS=${PPO_STOP_ITERS:-3}
export PPO_TRAIN_BATCH_SIZE=${PPO_TRAIN_BATCH_SIZE:-1000}

if [ "$(id -u)" = 0 ]; then                     # Open MPI refuses root without these
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# --oversubscribe: more ranks than cores is fine for a smoke run.
exec "$VENV/bin/mpirun" --oversubscribe -np "$NP" \
    "$VENV/bin/python" -m start_ray --node-per-rank --num-cpus 1 "$DRIVER" $DRIVER_ARGS
