#!/bin/bash
# PBS Pro variant of jobs/slurm_chain.sbatch: PPO for longer than one job's
# walltime, as a chain of jobs ("links") that resume one experiment.
#
#   qsub jobs/pbs_chain.sh
#   qsub -v STOP_REWARD=475,MAX_LINKS=20 jobs/pbs_chain.sh
#
# Each link first queues the next one (qsub -W depend=afterany:<this job>),
# then trains. PBS has no walltime-warning signal, so this script sends USR1
# itself WARNING seconds before the walltime (read from qstat): mpiexec passes
# it to start_ray, which passes it to the driver (checkpoint, exit 0). At the
# end: stop criterion met or a real failure -> the queued link is deleted
# (qdel) and the chain ends; otherwise the queued link resumes it.
#
# --- EDIT: size, time, account -------------------------------------------------
#PBS -N ppo-chain
#PBS -l select=2:system=polaris
#PBS -l walltime=06:00:00
#PBS -l filesystems=home
#PBS -j oe
##PBS -A MY_PROJECT
##PBS -q MY_QUEUE

# --- EDIT: your environment ----------------------------------------------------
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
NODES=${NODES:-$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)}
PER_NODE=${PER_NODE:-4}                         # ranks per host (mpiexec --ppn)
DEPTH=${DEPTH:-8}                               # CPUs per rank (mpiexec --depth)
INTERFACE=${INTERFACE:-}                        # e.g. hsn0; empty: the route to the head
WARNING=${WARNING:-600}                         # seconds before the walltime: checkpoint, stop

# --- EDIT: what to train, and for how long -------------------------------------
FRAMEWORK=${FRAMEWORK:-torch}
STOP_ITERS=${STOP_ITERS:-2000}                  # over the whole chain
STOP_REWARD=${STOP_REWARD:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
MAX_LINKS=${MAX_LINKS:-10}
CHAIN_SCRIPT=${CHAIN_SCRIPT:-jobs/pbs_chain.sh}

cd "${PBS_O_WORKDIR:-.}"
mkdir -p logs
export OMP_NUM_THREADS=$DEPTH                   # start_ray reads it: CPUs per rank under PBS
job=${PBS_JOBID%%.*}
LINK=${LINK:-1}
EXPERIMENT=${EXPERIMENT:-$PWD/logs/chains/ppo-${job:-local}}
echo "chain: link $LINK of at most $MAX_LINKS (job ${PBS_JOBID:-}); experiment folder: $EXPERIMENT"

next=""
if [ "$LINK" -lt "$MAX_LINKS" ]; then
    next=$(qsub -V -W depend="afterany:$PBS_JOBID" -v "EXPERIMENT=$EXPERIMENT,LINK=$((LINK + 1))" \
        "$CHAIN_SCRIPT") || { echo "chain: could not queue the next link"; next=""; }
    [ -n "$next" ] && echo "chain: link $((LINK + 1)) queued as job $next (it starts when this one ends)"
fi

mpiexec -n $((NODES * PER_NODE)) --ppn "$PER_NODE" --depth "$DEPTH" --cpu-bind depth \
    python -m start_ray ${INTERFACE:+--interface "$INTERFACE"} drivers/train_ppo.py \
    --framework "$FRAMEWORK" --experiment-dir "$EXPERIMENT" --stop-iters "$STOP_ITERS" \
    ${STOP_REWARD:+--stop-reward "$STOP_REWARD"} $EXTRA_ARGS &
pid=$!
# The walltime warning: PBS sends SIGTERM at the walltime, with no warning.
walltime=$(qstat -f "$PBS_JOBID" 2>/dev/null | awk -F' = ' '/Resource_List.walltime/ {print $2}')
warn_at=""
if [ -n "$walltime" ]; then
    IFS=: read -r h m s <<< "$walltime"
    warn_at=$(( 10#$h * 3600 + 10#$m * 60 + 10#$s - WARNING ))
    echo "chain: walltime $walltime; the walltime warning (USR1) after ${warn_at}s"
fi
while kill -0 "$pid" 2>/dev/null; do
    if [ -n "$warn_at" ] && [ "$SECONDS" -ge "$warn_at" ]; then
        echo "walltime warning (USR1): asking the driver to checkpoint and stop"
        kill -USR1 "$pid"
        warn_at=""
    fi
    sleep 1
done
status=0
wait "$pid" || status=$?
echo "start_ray exited with status $status"

if [ "$status" -ne 0 ]; then
    echo "chain: link $LINK failed (status $status): the chain ends here"
    [ -n "$next" ] && qdel "$next" && echo "chain: deleted the queued link (job $next)"
    exit "$status"
fi
if python drivers/rl_chain.py done "$EXPERIMENT"; then
    echo "chain: done after $LINK link(s); experiment folder: $EXPERIMENT"
    [ -n "$next" ] && qdel "$next" && echo "chain: deleted the queued link (job $next)"
    exit 0
fi
[ -n "$next" ] && echo "chain: not done; job $next continues it" \
    || echo "chain: stopped after $LINK link(s) (MAX_LINKS $MAX_LINKS) before the stop criterion"
exit 0
