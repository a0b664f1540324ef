#!/bin/bash
# Your program (or the PPO example) on a Cray XC (ALPS) under PBS or Cobalt,
# Theta style: aprun starts start_ray on every PE; one Ray node per host, with
# aprun -d CPUs per PE.
#
#   qsub jobs/pbs_aprun.sh                   (PBS)
#   qsub -n 4 -t 120 -A MY_PROJECT --mode script jobs/pbs_aprun.sh   (Cobalt)
#
# --- EDIT: size, time, account (PBS lines; Cobalt takes them on qsub) ----------
#PBS -N start_ray
#PBS -l select=4:ncpus=64
#PBS -l walltime=02:00:00
#PBS -j oe
##PBS -A MY_PROJECT
##PBS -q MY_QUEUE
set -euo pipefail
cd "${PBS_O_WORKDIR:-${COBALT_WORKDIR:-.}}"     # PBS starts the job in $HOME

# --- EDIT: your environment ----------------------------------------------------
# module load cray-python
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-${COBALT_JOBSIZE:-$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)}}
PER_NODE=${PER_NODE:-4}                         # PEs per host (aprun -N)
DEPTH=${DEPTH:-16}                              # CPUs per PE (aprun -d); the node offers PER_NODE x DEPTH
INTERFACE=${INTERFACE:-ipogif0}                 # the Aries interface; check with `ip addr` on a compute node
WARNING=${WARNING:-300}                         # seconds before the walltime (PBS): SIGUSR1

# --- EDIT: what to run ---------------------------------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}
DRIVER_ARGS=${DRIVER_ARGS:-}

# -cc depth binds each PE to its DEPTH CPUs; -b skips copying python to the
# compute nodes. aprun forwards SIGTERM/SIGUSR1 to every PE; start_ray passes
# them to your program.
exec python -m start_ray.jobs run --warn-before "$WARNING" -- \
    aprun -n $((NODES * PER_NODE)) -N "$PER_NODE" -d "$DEPTH" -cc depth -b \
    python -m start_ray --interface "$INTERFACE" "$DRIVER" $DRIVER_ARGS
