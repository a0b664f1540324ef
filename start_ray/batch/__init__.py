"""Batch jobs around start_ray: the scheduler asked about its own job, a job step with the walltime warning passed on, chains of jobs."""
