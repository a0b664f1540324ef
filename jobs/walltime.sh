# Sourced by the Slurm scripts (jobs/slurm_*.sbatch), from the project folder.
#
#   run_tasks srun ... python -m start_ray ...
#
# runs the job step in the background so that this shell hears the walltime
# warning (bash runs traps only between commands) and passes it on: start_ray
# forwards USR1 to the driver, which checkpoints and stops. SIGTERM (scancel)
# is NOT forwarded: Slurm already sends it to every task, and `kill -TERM
# <srun>` would make srun SIGKILL the tasks at once. Returns the step's status.
run_tasks() {
    "$@" &
    local pid=$! status=0
    trap 'echo "walltime warning (USR1): asking the driver to checkpoint and stop"; kill -USR1 '"$pid" USR1
    trap 'echo "SIGTERM: Slurm is stopping the job; the tasks have it too"' TERM
    # `wait` returns early when a trap runs: wait again until the step has ended.
    wait "$pid" || status=$?
    while kill -0 "$pid" 2>/dev/null; do
        status=0
        wait "$pid" || status=$?
    done
    echo "start_ray exited with status $status"
    return "$status"
}
