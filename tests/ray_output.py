"""What Ray itself printed, read back from a run folder (not start_ray's
own account): when each worker's `ray start` began and said its node runs.
Used by tests/test_scale.py and benchmarks/compare.py (the join storm)."""

import datetime
import glob
import os
import re
from typing import List, Tuple

RAY_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\s")
Span = Tuple[datetime.datetime, datetime.datetime]


def join_spans(run_dir: str) -> List[Span]:
    """(begin, end) of every worker's `ray start` attempt, by Ray's own
    timestamps in its output (copied into the run folder with
    --collect-logs): its first line to `Ray runtime started` (or its last
    line, for an attempt that failed). The head (rank 0) is left out."""
    spans = []
    for path in glob.glob(os.path.join(run_dir, "ray", "rank-*", "ray-start-*.out")):
        if re.match(r"rank-0+-", os.path.basename(os.path.dirname(path))):
            continue
        stamps, end = [], None
        with open(path) as handle:
            for line in handle:
                found = RAY_TIME.match(line)
                if found:
                    stamps.append(datetime.datetime.strptime(found.group(1),
                                                             "%Y-%m-%d %H:%M:%S,%f"))
                    if "Ray runtime started" in line and end is None:
                        end = stamps[-1]
        if stamps:
            spans.append((stamps[0], end or stamps[-1]))
    return spans


def most_at_once(spans: List[Span]) -> int:
    """The most spans open at one moment."""
    events = sorted([(begin, 1) for begin, _ in spans] + [(end, -1) for _, end in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak
