#!/bin/bash
# PBS variant of jobs/slurm_chain.sbatch: your program (or the PPO example)
# for longer than one job's walltime, as a chain of jobs ("links"), each
# continuing where the last one stopped (the contract: slurm_chain.sbatch).
#
#   qsub jobs/pbs_chain.sh
#   qsub -v DRIVER=train.py,MAX_LINKS=20 -A MY_PROJECT -o chain-logs/ jobs/pbs_chain.sh
#
# Each link first queues the next one (depend=afterany on itself, with this
# job's options as qstat reports them: -N, -A, -q, -l, -j, -o/-e, -m/-M).
# PBS has no walltime-warning signal, so start_ray sends SIGUSR1 itself
# WARNING seconds before the walltime; at the walltime PBS sends SIGTERM (the
# chain goes on). qdel of a link ends the chain: its queued link is deleted.
# Give -o a folder (ending in /) to keep every link's output. The ranks start
# as in jobs/pbs_mpiexec.sh (LAUNCH, through PBS's moms).
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N start_ray-chain
#PBS -l select=2:ncpus=32:mpiprocs=1
#PBS -l place=scatter
#PBS -l walltime=06:00:00
#PBS -j oe
# Site example, ALCF Polaris (its own resources; another PBS rejects them;
# LAUNCH=pals there):
##PBS -l select=2:system=polaris
##PBS -l filesystems=home:eagle
##PBS -A MY_PROJECT
##PBS -q MY_QUEUE
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"                        # PBS starts the job in $HOME

# --- EDIT: your environment ----------------------------------------------------
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
RANKS=${RANKS:-$(wc -l < "$PBS_NODEFILE")}      # the chunks' mpiprocs, all hosts
INTERFACE=${INTERFACE:-}                        # e.g. hsn0; empty: the route to the head
WARNING=${WARNING:-600}                         # seconds before the walltime: save and stop
                                                # (a shorter walltime: a fifth of it)
LAUNCH=${LAUNCH:-hydra}                         # hydra, openmpi or pals (jobs/pbs_mpiexec.sh)

# --- EDIT: what to run, and for how many links ---------------------------------
DRIVER=${DRIVER:-$(python -m start_ray.jobs example)}
DRIVER_ARGS=${DRIVER_ARGS:-}
MAX_LINKS=${MAX_LINKS:-10}
export PPO_FRAMEWORK=${PPO_FRAMEWORK:-torch}     # the example's options: PPO_*
# CHAIN_SCRIPT: the script each link runs, where qstat does not say (older PBS)

case "$LAUNCH" in
hydra)   launch=(mpiexec -launcher rsh -launcher-exec "$(command -v start-ray-tmrsh)"
                 -f "$PBS_NODEFILE" -n "$RANKS") ;;
openmpi) export PRTE_MCA_plm_ssh_agent="$(command -v start-ray-tmrsh)"
         launch=(mpirun -x PATH -n "$RANKS") ;;
pals)    PER_NODE=${PER_NODE:-4} DEPTH=${DEPTH:-8}
         export OMP_NUM_THREADS=$DEPTH
         launch=(mpiexec -n "$(( $(sort -u "$PBS_NODEFILE" | wc -l) * PER_NODE ))"
                 --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth) ;;
*)       echo "LAUNCH=$LAUNCH: expected hydra, openmpi or pals" >&2; exit 2 ;;
esac
exec python -m start_ray.jobs chain --max-links "$MAX_LINKS" --warn-before "$WARNING" -- \
    "${launch[@]}" \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} "$DRIVER" $DRIVER_ARGS
