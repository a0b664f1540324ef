"""Scale with real MPI and Ray, sized for this 2-core machine: join slots
bound how many nodes register at once. Times and ratios (teardown with 16
and 128 ranks on a host, the join-storm table) are in benchmarks/compare.py.
"""

import datetime
import glob
import os
import re

from jobs import DRIVER, assert_nothing_left

RAY_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\s")


def join_intervals(run_dir):
    """(begin, end) of every worker's `ray start` attempts, read from what
    Ray itself printed (its own timestamps, copied into the run folder):
    from its first line to `Ray runtime started` (or its last line)."""
    spans = []
    for path in glob.glob(os.path.join(run_dir, "ray", "rank-*", "ray-start-*.out")):
        if re.match(r"rank-0+-", os.path.basename(os.path.dirname(path))):
            continue  # the head
        stamps, end = [], None
        with open(path) as handle:
            for line in handle:
                found = RAY_TIME.match(line)
                if found:
                    stamps.append(datetime.datetime.strptime(found.group(1),
                                                             "%Y-%m-%d %H:%M:%S,%f"))
                    if "Ray runtime started" in line and end is None:
                        end = stamps[-1]
        assert stamps, f"{path} has no timestamped line"
        spans.append((stamps[0], end or stamps[-1]))
    return spans


def most_at_once(spans):
    events = sorted([(begin, 1) for begin, _ in spans] + [(end, -1) for _, end in spans],
                    key=lambda event: (event[0], event[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_join_slots_bound_the_nodes_registering_at_once(jobs):
    result = jobs.run(12, ["--num-cpus", "1", "--join-slots", "3", "--collect-logs", "always",
                           DRIVER], timeout=240)
    assert result.returncode == 0, result.output
    assert result.cluster_info()["alive_nodes"] == 12
    spans = join_intervals(result.run_dir)
    assert len(spans) >= 11, spans  # every worker's attempts (a retry adds one)
    assert most_at_once(spans) <= 3, sorted(spans)
    assert "waiting for 11 worker node(s) to join, 3 at a time" in result.stdout
    assert re.search(r"slowest joins: rank \d+ \(\S+\) \d+\.\d+s .*; at most [1-3] node\(s\) "
                     r"joining at once", result.stdout), result.stdout
    logs = result.rank_logs()
    waited = [name for name, text in logs.items() if "waiting for a join slot" in text]
    assert len(waited) == 8, waited  # ranks 4-11; ranks 1-3 join at once
    assert_nothing_left(result)
