"""The head's GCS, brought back in place when it dies: the one owner of
whether it may (the plan's GcsPolicy, turned off when the store fails at
start-up or no GCS is found to keep), of how often it came back, and of
bringing it back. Bring-up hands it the head as soon as the GCS serves; the
watch hands it a GCS that died."""

from __future__ import annotations

import logging
import time
from typing import Optional

from start_ray.errors import HeadLost, NodeError
from start_ray.lifecycle.agree.gcs_policy import GcsPolicy
from start_ray.lifecycle.contracts import HeadNode
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.node import gcs_server
from start_ray.record.events import GcsRestarted

# A GCS started again in place must serve within this (the raylets wait for
# it 60 s: RAY_gcs_rpc_server_reconnect_timeout_s).
GCS_BACK_WITHIN = 30.0


class GcsKeeper:
    def __init__(self, policy: GcsPolicy, host: str, log: logging.Logger) -> None:
        self.policy, self.log = policy, log
        self.on = policy.in_place  # off again: the store failed, or no GCS to keep
        self.restarts = 0  # how often it came back
        self.where = f"the Ray head's GCS on {host} (rank 0)"

    def without_store(self, failed: Optional[HeadNode], err: NodeError) -> bool:
        """A head that did not start: whether it failed on its GCS store
        (RocksDB is alpha in Ray), so that it may start again without it."""
        if not self.on or failed is None or not failed.store_failed():
            return False
        failed.kill()
        self.on = False
        self.log.warning("the Ray head did not start with its GCS store (%s): starting it "
                         "without the store; a GCS death will end the job", err)
        return True

    def keep(self, head: HeadNode, address: str, temp_dir: Optional[str]) -> None:
        """Once the head's GCS serves: it, to start again if it dies."""
        if not self.on:
            return
        if not head.keep_gcs(int(address.rpartition(":")[2])):
            self.on = False
            self.log.warning("found no gcs_server of the head's to keep: a GCS death will end "
                             "the job")
            return
        self.log.debug("the head's GCS keeps its state in %s",
                       gcs_server.store_path(temp_dir or "TEMP_DIR"))

    def bring_back(self, head: HeadNode, how: str, ledger: Ledger, consequence: str) -> None:
        """The head's GCS died (`how`): started again in place, on its store
        and port (the raylets and the driver reconnect by themselves), at
        most policy.limit times; else HeadLost naming why."""
        where, limit = self.where, self.policy.limit
        if self.restarts >= limit:
            raise HeadLost(f"{where} died again ({how}) after {self.restarts} restart(s) "
                           f"in place (--gcs-restarts {limit}): the cluster is gone, so "
                           f"{consequence}")
        try:
            took = head.restart_gcs(time.monotonic() + GCS_BACK_WITHIN, self.restarts + 1)
        except NodeError as err:
            raise HeadLost(f"{where} died ({how}) and could not be started again in place "
                           f"({err}): the cluster is gone, so {consequence}") from None
        self.restarts += 1
        ledger.note(GcsRestarted(0, ledger.since_start(), how, self.restarts, took))
        self.log.warning("%s died (%s) and is back in place after %.1fs, with its state "
                         "(restart %d of at most %d, --gcs-restarts): the nodes and the "
                         "driver reconnect", where, how, took, self.restarts, limit)
