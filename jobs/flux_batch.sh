#!/bin/bash
# Your program (or the PPO example) under Flux (El Capitan style), as a chain
# of jobs ("links") when it needs longer than one job's time limit.
#
#   flux batch jobs/flux_batch.sh
#   flux batch --env=DRIVER=train.py --env=MAX_LINKS=20 jobs/flux_batch.sh
#
# Each link queues the next (--dependency=afterany on itself, with this job's
# size, time limit, name and queue), then runs your program with `flux run`.
# Flux sends the walltime warning (--signal below) to this script, which
# passes it on to your program: save your state, exit 0, and the chain goes
# on (the contract: `python -m start_ray.jobs chain --help`). MAX_LINKS=1: a
# single job. Flux binds each task to its cores, and start_ray gives each
# host's Ray node what its tasks were bound to.
#
# --- EDIT: size, time, queue ---------------------------------------------------
# flux: --job-name=start_ray
# flux: --nodes=2
# flux: --time-limit=1h
# flux: --signal=SIGUSR1@10m
## flux: --queue=pbatch
set -euo pipefail

# --- EDIT: your environment ----------------------------------------------------
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(flux resource list -n -o '{nnodes}' | head -1)}
PER_NODE=${PER_NODE:-4}                         # tasks per host (they share its Ray node)
CORES=${CORES:-8}                               # cores per task
INTERFACE=${INTERFACE:-}                        # e.g. hsn0; empty: the route to the head

# --- EDIT: what to run, and for how many links ---------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}   # a .py file or a command
DRIVER_ARGS=${DRIVER_ARGS:-}
MAX_LINKS=${MAX_LINKS:-10}

exec python -m start_ray.jobs chain --max-links "$MAX_LINKS" -- \
    flux run --nodes="$NODES" --tasks-per-node="$PER_NODE" --cores-per-task="$CORES" \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
