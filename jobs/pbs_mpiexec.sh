#!/bin/bash
# PPO under PBS Pro with mpiexec --ppn (Polaris style: Cray PALS or MPICH).
# One Ray node per host, offering the host's ranks x OMP_NUM_THREADS CPUs.
#
#   qsub jobs/pbs_mpiexec.sh
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N ppo
#PBS -l select=2:system=polaris
#PBS -l walltime=01:00:00
#PBS -l filesystems=home
#PBS -j oe
##PBS -A MY_PROJECT
##PBS -q debug

# --- EDIT: your environment ----------------------------------------------------
# module use /soft/modulefiles; module load conda; conda activate base
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)}
PER_NODE=${PER_NODE:-4}                         # ranks per host (mpiexec --ppn)
DEPTH=${DEPTH:-8}                               # CPUs per rank (mpiexec --depth)
INTERFACE=${INTERFACE:-}                        # e.g. hsn0 (Slingshot); empty: the route to the head
FRAMEWORK=${FRAMEWORK:-torch}
STOP_ITERS=${STOP_ITERS:-200}
LEARNER_GPUS=${LEARNER_GPUS:-0}                 # train_ppo.py --num-gpus
EXTRA_ARGS=${EXTRA_ARGS:-}

cd "${PBS_O_WORKDIR:-.}"
export OMP_NUM_THREADS=$DEPTH                   # start_ray reads it: CPUs per rank under PBS

mpiexec -n $((NODES * PER_NODE)) --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} drivers/train_ppo.py \
    --framework "$FRAMEWORK" --num-gpus "$LEARNER_GPUS" --stop-iters "$STOP_ITERS" $EXTRA_ARGS
