"""Scale with real MPI and Ray, sized for this 2-core machine: join slots
bound how many nodes register at once. Times and ratios (teardown with 16
and 128 ranks on a host, the join-storm table) are in benchmarks/compare.py.
"""

import re

from ray_output import join_spans, most_at_once

from jobs import DRIVER, assert_nothing_left


def test_join_slots_bound_the_nodes_registering_at_once(jobs):
    result = jobs.run(6, ["--num-cpus", "1", "--join-slots", "2", "--collect-logs", "always",
                           DRIVER], timeout=240)
    assert result.returncode == 0, result.output
    assert result.cluster_info()["alive_nodes"] == 6
    spans = join_spans(result.run_dir)
    assert len(spans) >= 5, spans  # every worker's attempts (a retry adds one)
    assert most_at_once(spans) <= 2, sorted(spans)
    assert "waiting for 5 worker node(s) to join, 2 at a time" in result.stdout
    assert re.search(r"slowest joins: rank \d+ \(\S+\) \d+\.\d+s .*; at most [1-2] node\(s\) "
                     r"joining at once", result.rank0_log), result.rank0_log
    logs = result.rank_logs()
    waited = [name for name, text in logs.items() if "waiting for a join slot" in text]
    assert len(waited) == 3, waited  # ranks 3-5; ranks 1-2 join at once
    assert_nothing_left(result)
