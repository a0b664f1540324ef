#!/bin/bash
# Your program (or the PPO example) under IBM Spectrum LSF, as a chain of jobs
# ("links") when it needs longer than one job. The launcher is jsrun where
# there is one (CSM machines: Summit, Lassen, Sierra), else the MPI's own
# mpirun, which reads LSF's hosts (plain LSF).
#
#   bsub < jobs/lsf_jsrun.sh
#   DRIVER=train.py MAX_LINKS=20 bsub -P MY_PROJECT < jobs/lsf_jsrun.sh
#   CHAIN_SCRIPT=$HOME/start_ray/jobs/lsf_jsrun.sh bsub < $HOME/start_ray/jobs/lsf_jsrun.sh
#
# Each link queues the next (bsub -w "ended(ID)", this script on stdin: its
# #BSUB lines count again, with the job name, queue, project and output this
# job was submitted with), then runs your program with jsrun, one resource set
# per host. LSF sends the walltime warning itself (-wa/-wt below); your
# program gets it: save your state, exit 0, and the chain goes on. MAX_LINKS=1:
# a single job. start_ray gives each host's Ray node the host's slots
# (LSB_MCPU_HOSTS).
#
# --- EDIT: size, time, project -------------------------------------------------
#BSUB -J start_ray
#BSUB -n 12
#BSUB -R "span[ptile=6]"
# Site example, CSM machines (Summit, Lassen, Sierra): whole hosts, instead of
# the two lines above (plain LSF rejects -nnodes):
##BSUB -nnodes 2
#BSUB -W 60
#BSUB -wa USR1
#BSUB -wt 10
##BSUB -P MY_PROJECT
set -euo pipefail
cd "${LS_SUBCWD:-.}"

# --- EDIT: your environment ----------------------------------------------------
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-2}                               # hosts: -n / ptile, or -nnodes
PER_NODE=${PER_NODE:-6}                         # tasks per host (= ptile; they share its Ray node)
CORES=${CORES:-42}                              # jsrun: cores of a host's resource set
INTERFACE=${INTERFACE:-}                        # e.g. ib0; empty: the route to the head
# The chain's next link is this script again. LSF read it from stdin and does
# not say where it was: set CHAIN_SCRIPT (its path) when you submit from
# another folder than the checkout's; without it the link runs alone.
if [ -z "${CHAIN_SCRIPT:-}" ] && [ -f "$PWD/jobs/lsf_jsrun.sh" ]; then
    export CHAIN_SCRIPT=$PWD/jobs/lsf_jsrun.sh
fi

# --- EDIT: what to run, and for how many links ---------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}   # a .py file or a command
DRIVER_ARGS=${DRIVER_ARGS:-}
MAX_LINKS=${MAX_LINKS:-10}

if command -v jsrun >/dev/null; then              # CSM: one resource set per host
    LAUNCH=(jsrun --nrs "$NODES" --rs_per_host 1 --tasks_per_rs "$PER_NODE"
            --cpu_per_rs "$CORES" --gpu_per_rs 0 --bind none)
else                                              # plain LSF: the MPI's launcher
    LAUNCH=(mpirun -np $((NODES * PER_NODE)))
fi
exec python -m start_ray.jobs chain --max-links "$MAX_LINKS" -- "${LAUNCH[@]}" \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
