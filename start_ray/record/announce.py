"""The moment the cluster is ready: the connection card (card.py) and the
READY block rank 0 prints, with the exact commands to reach the cluster.

    READY: 4 node(s), CPU 4, GPU 0, after 9.1s; run folder logs/20261202-...
      RAY_ADDRESS  10.0.0.1:41234
      attach       python -m start_ray attach logs/20261202-... [-- COMMAND]
                   (from the login node: srun --jobid 1234 --overlap -w nid001 python -m ...)
      dashboard    ssh -N -L 8265:127.0.0.1:38421 nid001, then http://localhost:8265
                   (it asks for the token in logs/20261202-.../token)
      notebook     python -m start_ray attach ... -- jupyter lab --no-browser --ip 127.0.0.1
      stop         python -m start_ray stop logs/20261202-...
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
from typing import Any, Dict, List, Optional

from start_ray.mpi import launch_env
from start_ray.record import card

NOTEBOOK_PORT = 8888


@dataclasses.dataclass(frozen=True)
class Ready:
    """What the READY block and the card say of a cluster that is up."""

    run_dir: str
    run_id: str
    address: str
    nodes: int
    resources: Dict[str, float]
    head_host: str
    hosts: List[str]
    token: Optional[str] = dataclasses.field(repr=False)
    dashboard_port: Optional[str]
    serve: bool
    seconds: float  # from the job's start


def announce(ready: Ready, log: logging.Logger) -> Dict[str, Any]:
    """Write the card and print the READY block; the card's fields."""
    port = ready.dashboard_port
    job = launch_env.job_id()
    attach = f"python -m start_ray attach {shlex.quote(ready.run_dir)}"
    under_slurm = (f"srun --jobid {job} --overlap -w {ready.head_host} {attach}"
                   if os.environ.get("SLURM_JOB_ID") else None)
    fields = {"state": "running", "address": ready.address, "nodes": ready.nodes,
              "dashboard_url": f"http://127.0.0.1:{port}" if port else None,
              "head_host": ready.head_host, "head_ip": ready.address.rpartition(":")[0],
              "hosts": sorted(ready.hosts), "run_id": ready.run_id,
              "job_id": job, "started": card.iso(), "pid": os.getpid(),
              "attach_command": under_slurm or attach}
    made = card.publish(ready.run_dir, fields, ready.token)
    for line in block(ready, attach, under_slurm, made["token_file"]):
        log.info("%s", line)
    return made


def block(ready: Ready, attach: str, under_slurm: Optional[str],
          token_file: Optional[str]) -> List[str]:
    resources, port, host = ready.resources, ready.dashboard_port, ready.head_host
    lines = [f"READY: {ready.nodes} node(s), CPU {resources.get('CPU', 0):g}, "
             f"GPU {resources.get('GPU', 0):g}, after {ready.seconds:.1f}s; run folder "
             f"{ready.run_dir}",
             f"  RAY_ADDRESS  {ready.address}",
             f"  attach       {attach} [-- COMMAND]"]
    if under_slurm:
        lines.append(f"               (from the login node: {under_slurm})")
    if port:
        lines += [f"  dashboard    ssh -N -L 8265:127.0.0.1:{port} {host}, then "
                  "http://localhost:8265"]
        if token_file:
            lines.append(f"               (it asks for the job's token: {token_file})")
    if ready.serve:
        lines += [f"  notebook     {attach} -- jupyter lab --no-browser --ip 127.0.0.1 "
                  f"--port {NOTEBOOK_PORT}",
                  f"               then ssh -N -L {NOTEBOOK_PORT}:127.0.0.1:{NOTEBOOK_PORT} "
                  f"{host}, and open the URL it prints",
                  f"  stop         python -m start_ray stop {shlex.quote(ready.run_dir)}"]
    return lines
