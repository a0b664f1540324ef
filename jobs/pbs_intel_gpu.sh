#!/bin/bash
# Site example, ALCF Aurora: your program (or the PPO example) on Intel GPU
# nodes under PBS Pro (Aurora's own resources below, filesystems=...; drop
# them elsewhere; 6 GPUs x 2 tiles per node, mpiexec --ppn 12, one tile per rank). One
# Ray node per host offers the tiles of all its ranks: each rank's
# ZE_AFFINITY_MASK names its tile, and start_ray gives the host's Ray node
# their union.
#
#   qsub -A MY_PROJECT jobs/pbs_intel_gpu.sh
#   qsub -A MY_PROJECT -v DRIVER=train.py jobs/pbs_intel_gpu.sh
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N start_ray-xpu
#PBS -l select=2
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:flare
#PBS -j oe
##PBS -A MY_PROJECT
##PBS -q debug
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"                        # PBS starts the job in $HOME

# --- EDIT: your environment ----------------------------------------------------
# module load frameworks                        # Aurora's Python with torch + XPU
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)}
TILES=${TILES:-12}                              # GPU tiles per host (6 GPUs x 2)
PER_NODE=${PER_NODE:-$TILES}                    # ranks per host, one tile each
DEPTH=${DEPTH:-8}                               # CPUs per rank (mpiexec --depth)
INTERFACE=${INTERFACE-hsn0}                     # Slingshot; empty: the route to the head
WARNING=${WARNING:-300}                         # seconds before the walltime: SIGUSR1

# --- EDIT: what to run ---------------------------------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}
DRIVER_ARGS=${DRIVER_ARGS:-}
export PPO_FRAMEWORK=${PPO_FRAMEWORK:-torch}     # the example's options: PPO_*

export OMP_NUM_THREADS=$DEPTH                   # start_ray reads it: CPUs per rank under PBS
export TILES
# Each rank gets one tile, numbered by its place on the host (PALS_LOCAL_RANKID),
# as Aurora's gpu_tile_compact.sh does. The tiles are devices 0..11 with
# ZE_FLAT_DEVICE_HIERARCHY=FLAT, the driver's default.
exec python -m start_ray.jobs run --warn-before "$WARNING" -- \
    mpiexec -n $((NODES * PER_NODE)) --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth \
    bash -c 'export ZE_AFFINITY_MASK=$((PALS_LOCAL_RANKID % TILES)); exec "$@"' tile \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
