#!/bin/bash
# PBS Pro variant of jobs/slurm_chain.sbatch: your program (or the PPO
# example) for longer than one job's walltime, as a chain of jobs ("links"),
# each continuing where the last one stopped (the contract: slurm_chain.sbatch).
#
#   qsub jobs/pbs_chain.sh
#   qsub -v DRIVER=train.py,MAX_LINKS=20 -A MY_PROJECT jobs/pbs_chain.sh
#
# Each link first queues the next one (depend=afterany on itself, with this
# job's options as qstat reports them). PBS has no walltime-warning signal, so
# start_ray sends SIGUSR1 itself WARNING seconds before the walltime.
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N start_ray-chain
#PBS -l select=2:ncpus=32
#PBS -l place=scatter
#PBS -l walltime=06:00:00
#PBS -j oe
# Site example, ALCF Polaris (its own resources; another PBS rejects them):
##PBS -l select=2:system=polaris
##PBS -l filesystems=home:eagle
##PBS -A MY_PROJECT
##PBS -q MY_QUEUE
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"                        # PBS starts the job in $HOME

# --- EDIT: your environment ----------------------------------------------------
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)}
PER_NODE=${PER_NODE:-4}                         # ranks per host (mpiexec --ppn)
DEPTH=${DEPTH:-8}                               # CPUs per rank (mpiexec --depth)
INTERFACE=${INTERFACE:-}                        # e.g. hsn0; empty: the route to the head
WARNING=${WARNING:-600}                         # seconds before the walltime: save and stop

# --- EDIT: what to run, and for how many links ---------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}
DRIVER_ARGS=${DRIVER_ARGS:-}
MAX_LINKS=${MAX_LINKS:-10}
export PPO_FRAMEWORK=${PPO_FRAMEWORK:-torch}     # the example's options: PPO_*
# CHAIN_SCRIPT: the script each link runs, where qstat does not say (older PBS)

export OMP_NUM_THREADS=$DEPTH                   # start_ray reads it: CPUs per rank under PBS
exec python -m start_ray.jobs chain --max-links "$MAX_LINKS" --warn-before "$WARNING" -- \
    mpiexec -n $((NODES * PER_NODE)) --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
