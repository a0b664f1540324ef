#!/bin/bash
# flux: --job-name=start_ray
# flux: --nodes=2
# flux: --time-limit=1h
#
# Your program (or the PPO example) under Flux, as a chain of jobs ("links")
# when it needs longer than one job's time limit. Tested on a real flux-core
# 0.88 (tests/test_flux.py). Submit it from the folder with your .venv:
#
#   flux batch jobs/flux_batch.sh
#   flux batch -N4 -t 2h --queue=pbatch --env=DRIVER=train.py jobs/flux_batch.sh
#   flux batch --env=MAX_LINKS=1 --env=DRIVER_ARGS="--epochs 5" jobs/flux_batch.sh
#
# The directives above are `flux batch` options (add one as a line like
# them: `--queue=NAME`, `--bank=NAME`); the command line overrides them.
# Each link first queues the next, in the instance where this job lives
# (`flux --parent`): this job's own jobspec again (size, time limit, name,
# queue, output, environment), to start once this job has ended. Then it runs
# your program with `flux run`. WARNING seconds before the time limit your
# program gets SIGUSR1: save your state, exit 0, and the chain goes on (the
# contract: `python -m start_ray.jobs chain --help`). start_ray sends that
# warning itself, from the job's expiration, rather than `flux batch
# --signal=SIGUSR1@T`: with a time limit shorter than T, Flux 0.88 sends its
# signal as the job starts and kills the batch job's broker (exit 138) before
# this script runs; and with more than one node it sends it to every broker
# of the batch job, and the brokers after the first shut down on it (the step
# fails, status 1: start_ray says so as the link starts). Use `--signal` only
# on one node, with a time limit longer than T.
#
# MPI: Flux's PMI serves MPICH-family MPIs (MPICH, Cray MPICH, Intel MPI,
# MVAPICH) as they are. Open MPI needs PMIx: flux-pmix (`flux run -o pmi=pmix`,
# FLUX_RUN_OPTIONS below). Flux binds each task to its cores (-c), and
# start_ray gives each host's Ray node what its tasks were bound to.
set -euo pipefail

# --- EDIT: your environment ----------------------------------------------------
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(flux resource list -n -o '{nnodes}' | head -1)}   # this job's hosts
PER_NODE=${PER_NODE:-1}                         # tasks per host (they share its Ray node)
CORES=${CORES:-$(( $(flux resource list -n -o '{ncores}' | head -1) / NODES / PER_NODE ))}
INTERFACE=${INTERFACE:-}                        # e.g. hsn0; empty: the route to the head
FLUX_RUN_OPTIONS=${FLUX_RUN_OPTIONS:-}          # more `flux run` options (-o pmi=pmix ...)
START_RAY_OPTIONS=${START_RAY_OPTIONS:-}        # e.g. --node-per-rank (a test instance)
WARNING=${WARNING:-600}                         # seconds before the time limit: SIGUSR1

# --- EDIT: what to run, and for how many links ---------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}   # a .py file or a command
DRIVER_ARGS=${DRIVER_ARGS:-}
MAX_LINKS=${MAX_LINKS:-10}

exec python -m start_ray.jobs chain --max-links "$MAX_LINKS" --warn-before "$WARNING" -- \
    flux run -N "$NODES" -n $((NODES * PER_NODE)) -c "$CORES" $FLUX_RUN_OPTIONS \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} $START_RAY_OPTIONS \
    "$DRIVER" $DRIVER_ARGS
