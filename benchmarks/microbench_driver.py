"""Benchmark driver: two RPC-bound tests of Ray's own `ray microbenchmark`
(ray/_private/ray_perf.py), run on the cluster this driver attaches to
(RAY_ADDRESS): the same workloads (its `small_value` task and `Actor`) and
the same measurement (its `timeit`: a warm-up, then 4 x 2 s). `ray
microbenchmark` itself cannot attach to a running cluster (it calls
`ray.init` with resources later on), so its two tests are called here.
Prints MICROBENCH {json}: name -> [mean per second, sd], and the auth mode
the driver was given."""

import json
import os

import ray
from ray._private.ray_microbenchmark_helpers import timeit
from ray._private.ray_perf import Actor, small_value

TESTS = ("single client tasks sync", "1:1 actor calls sync")


def main() -> int:
    ray.init(log_to_driver=False)
    found = {}

    def small_task():
        ray.get(small_value.remote())

    for name, mean, sd in filter(None, timeit(TESTS[0], small_task)):
        found[name] = [mean, sd]
    actor = Actor.remote()

    def actor_sync():
        ray.get(actor.small_value.remote())

    for name, mean, sd in filter(None, timeit(TESTS[1], actor_sync)):
        found[name] = [mean, sd]
    found["auth"] = os.environ.get("RAY_AUTH_MODE", "Ray's default")
    print("MICROBENCH " + json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
