"""Test driver for chains of jobs, with no Ray and no RLlib: it counts to
--target, one step every --step-seconds, keeping its count in --state (a
file), and keeps start_ray's chain contract: on the walltime warning
(SIGUSR1) it saves the count and exits 0 (the chain goes on); at the target
it exits 0 unwarned (done). Each link prints one line:

    COUNTER link=2 chain=4242 from=3 to=5 warned=1
"""

import argparse
import os
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    args = parser.parse_args()
    warned = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: warned.append(signum))
    count = int(open(args.state).read()) if os.path.exists(args.state) else 0
    began = count
    while count < args.target and not warned:
        time.sleep(args.step_seconds)
        count += 1
        with open(args.state + ".tmp", "w") as handle:
            handle.write(str(count))
        os.replace(args.state + ".tmp", args.state)
    print(f"COUNTER link={os.environ.get('START_RAY_CHAIN_LINK')} "
          f"chain={os.environ.get('START_RAY_CHAIN_ID')} from={began} to={count} "
          f"warned={len(warned)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
