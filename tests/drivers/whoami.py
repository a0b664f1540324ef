"""Test driver: says which Python runs it, with which arguments, from where,
and what the walltime warning did, as one line: WHOAMI {json}. With
--wait-for-warning it waits (at most 120 s) for SIGUSR1 first."""

import json
import os
import signal
import sys
import time

warned = []
signal.signal(signal.SIGUSR1, lambda signum, frame: warned.append(signum))
if "--wait-for-warning" in sys.argv:
    deadline = time.monotonic() + 120
    while not warned and time.monotonic() < deadline:
        time.sleep(0.1)
print("WHOAMI " + json.dumps({"python": sys.executable, "argv": sys.argv[1:],
                              "cwd": os.getcwd(), "warned": bool(warned),
                              "ppo": {k: v for k, v in os.environ.items()
                                      if k.startswith("PPO_")}}), flush=True)
