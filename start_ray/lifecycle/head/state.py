"""Rank 0's state from START to STOP, in one object that its three parts
receive (bring_up.py writes the head and the table, watch.py reads them,
teardown.py closes the table and writes how the job ends). No part keeps a
piece of it on itself, and nothing else holds any of it."""

from __future__ import annotations

import dataclasses
from typing import Optional

from start_ray.lifecycle.agree.agreement import Layout
from start_ray.lifecycle.contracts import HeadNode, Table
from start_ray.lifecycle.head.gcs_keeper import GcsKeeper
from start_ray.lifecycle.head.join_slots import JoinSlots
from start_ray.lifecycle.head.ledger import Ledger


@dataclasses.dataclass
class HeadState:
    layout: Layout  # every host and every node
    ledger: Ledger  # what rank 0 knows of every rank, and when
    slots: JoinSlots  # who may join now
    gcs: GcsKeeper  # the head's GCS back in place: whether, how often
    head: Optional[HeadNode] = None  # the head's `ray start`, once rank 0 started it
    table: Optional[Table] = None  # the GCS's node table, while rank 0 relies on it
    address: str = ""  # the head's GCS, once it serves
    card_published: bool = False  # the cluster was ready: its card says so
    # Stop said the ranks leave together (none was lost then): they will
    # wait for rank 0 at the end, so rank 0 must come, whatever is lost since
    together: bool = False
    report_by: float = 0.0  # when the teardown's reports are due
