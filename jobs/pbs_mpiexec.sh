#!/bin/bash
# Your program (or the PPO example) under PBS (OpenPBS, PBS Pro): one MPI rank
# per `mpiprocs` of each chunk, one Ray node per host offering the CPUs of the
# host's chunks.
#
#   qsub jobs/pbs_mpiexec.sh
#   qsub -v DRIVER=train.py,DRIVER_ARGS="--epochs 5" -A MY_PROJECT jobs/pbs_mpiexec.sh
#   qsub -l select=4:ncpus=64:mpiprocs=1 -l walltime=02:00:00 jobs/pbs_mpiexec.sh
#
# The ranks start through PBS's moms (pbs_tmrsh, by start-ray-tmrsh): what
# runs on each host is the job's there, so qdel and the walltime stop it
# everywhere, and no ssh between the hosts is needed. PBS starts the job in
# $HOME: the script first goes to the submit folder (PBS_O_WORKDIR), so
# relative paths (VENV, DRIVER) are that folder's. Tested on a real OpenPBS
# (23.06) with MPICH and Open MPI from PyPI (tests/test_pbs.py).
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N start_ray
#PBS -l select=2:ncpus=32:mpiprocs=1
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -j oe
# Site example, ALCF Polaris (its own resources; another PBS rejects them;
# LAUNCH=pals there):
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
RANKS=${RANKS:-$(wc -l < "$PBS_NODEFILE")}      # the chunks' mpiprocs, all hosts
INTERFACE=${INTERFACE:-}                        # e.g. hsn0 (Slingshot); empty: the route to the head
WARNING=${WARNING:-300}                         # PBS sends no walltime warning: start_ray
                                                # sends SIGUSR1 this long before the walltime
# How the ranks start: hydra (MPICH's mpiexec, Intel MPI's), openmpi (Open
# MPI's mpirun), or pals (site example: Cray PALS's mpiexec, Polaris and
# Aurora, with PER_NODE ranks of DEPTH CPUs on each host).
LAUNCH=${LAUNCH:-hydra}

# --- EDIT: what to run ---------------------------------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}   # a .py file or a command
DRIVER_ARGS=${DRIVER_ARGS:-}
export PPO_FRAMEWORK=${PPO_FRAMEWORK:-torch}             # the example's options: PPO_*

case "$LAUNCH" in
hydra)   launch=(mpiexec -launcher rsh -launcher-exec "$(command -v start-ray-tmrsh)"
                 -f "$PBS_NODEFILE" -n "$RANKS") ;;
openmpi) export PRTE_MCA_plm_ssh_agent="$(command -v start-ray-tmrsh)"
         launch=(mpirun -x PATH -n "$RANKS") ;;  # the hosts: PBS_NODEFILE; PATH: the venv
pals)    PER_NODE=${PER_NODE:-4} DEPTH=${DEPTH:-8}
         export OMP_NUM_THREADS=$DEPTH          # start_ray reads it: CPUs per rank
         launch=(mpiexec -n "$(( $(sort -u "$PBS_NODEFILE" | wc -l) * PER_NODE ))"
                 --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth) ;;
*)       echo "LAUNCH=$LAUNCH: expected hydra, openmpi or pals" >&2; exit 2 ;;
esac
exec python -m start_ray.jobs run --warn-before "$WARNING" -- "${launch[@]}" \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
