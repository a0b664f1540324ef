#!/bin/bash
# Your program (or the PPO example) under PBS Pro with mpiexec --ppn (Cray
# PALS or MPICH's Hydra, as on Polaris). One Ray node per host, offering the host's
# ranks x OMP_NUM_THREADS CPUs.
#
#   qsub jobs/pbs_mpiexec.sh
#   qsub -v DRIVER=train.py,DRIVER_ARGS="--epochs 5" -A MY_PROJECT jobs/pbs_mpiexec.sh
#
# PBS starts the job in $HOME: the script first goes to the submit folder
# (PBS_O_WORKDIR), so relative paths (VENV, DRIVER) are that folder's.
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N start_ray
#PBS -l select=2:ncpus=32
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -j oe
# Site example, ALCF Polaris (its own resources; another PBS rejects them):
##PBS -l select=2:system=polaris
##PBS -l filesystems=home:eagle
##PBS -A MY_PROJECT
##PBS -q debug
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"

# --- EDIT: your environment ----------------------------------------------------
# module use /soft/modulefiles; module load conda; conda activate base
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)}
PER_NODE=${PER_NODE:-4}                         # ranks per host (mpiexec --ppn)
DEPTH=${DEPTH:-8}                               # CPUs per rank (mpiexec --depth)
INTERFACE=${INTERFACE:-}                        # e.g. hsn0 (Slingshot); empty: the route to the head
WARNING=${WARNING:-300}                         # PBS sends no walltime warning: start_ray
                                                # sends SIGUSR1 this long before the walltime

# --- EDIT: what to run ---------------------------------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}   # a .py file or a command
DRIVER_ARGS=${DRIVER_ARGS:-}
export PPO_FRAMEWORK=${PPO_FRAMEWORK:-torch}             # the example's options: PPO_*

export OMP_NUM_THREADS=$DEPTH                   # start_ray reads it: CPUs per rank under PBS
exec python -m start_ray.jobs run --warn-before "$WARNING" -- \
    mpiexec -n $((NODES * PER_NODE)) --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
