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

import logging
import os
import shlex
from typing import Any, Dict, List, Optional

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.mpi import launch_env
from start_ray.node import raynode
from start_ray.node.gcs_table import ClusterInfo
from start_ray.options import Options
from start_ray.record import card

NOTEBOOK_PORT = 8888


def announce(agreed: Agreement, options: Options, info: ClusterInfo,
             head_command: List[str], seconds: float, log: logging.Logger) -> Dict[str, Any]:
    """Write the card and print the READY block; the card's fields."""
    port = raynode.option_value(head_command, "--dashboard-port") if options.dashboard else None
    job = launch_env.job_id()
    attach = f"python -m start_ray attach {shlex.quote(info.run_dir)}"
    under_slurm = (f"srun --jobid {job} --overlap -w {agreed.host} {attach}"
                   if os.environ.get("SLURM_JOB_ID") else None)
    fields = {"state": "running", "address": info.address, "nodes": info.num_nodes,
              "dashboard_url": f"http://127.0.0.1:{port}" if port else None,
              "head_host": agreed.host, "head_ip": info.address.rpartition(":")[0],
              "hosts": sorted(set(agreed.hosts)), "run_id": agreed.plan.run_id,
              "job_id": job, "started": card.iso(), "pid": os.getpid(),
              "attach_command": under_slurm or attach}
    made = card.publish(info.run_dir, fields, agreed.plan.auth_token)
    for line in block(info, seconds, attach, under_slurm, port, agreed.host,
                      made["token_file"], options.serve):
        log.info("%s", line)
    return made


def block(info: ClusterInfo, seconds: float, attach: str, under_slurm: Optional[str],
          port: Optional[str], host: str, token_file: Optional[str], serve: bool) -> List[str]:
    resources = info.resources
    lines = [f"READY: {info.num_nodes} node(s), CPU {resources.get('CPU', 0):g}, "
             f"GPU {resources.get('GPU', 0):g}, after {seconds:.1f}s; run folder {info.run_dir}",
             f"  RAY_ADDRESS  {info.address}",
             f"  attach       {attach} [-- COMMAND]"]
    if under_slurm:
        lines.append(f"               (from the login node: {under_slurm})")
    if port:
        lines += [f"  dashboard    ssh -N -L 8265:127.0.0.1:{port} {host}, then "
                  "http://localhost:8265"]
        if token_file:
            lines.append(f"               (it asks for the job's token: {token_file})")
    if serve:
        lines += [f"  notebook     {attach} -- jupyter lab --no-browser --ip 127.0.0.1 "
                  f"--port {NOTEBOOK_PORT}",
                  f"               then ssh -N -L {NOTEBOOK_PORT}:127.0.0.1:{NOTEBOOK_PORT} "
                  f"{host}, and open the URL it prints",
                  f"  stop         python -m start_ray stop {shlex.quote(info.run_dir)}"]
    return lines
