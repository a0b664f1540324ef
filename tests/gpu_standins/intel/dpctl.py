"""Stand-in for Intel's `dpctl` (see ../README.md): N devices, no hardware."""

import os


class SyclContext:
    def __init__(self, selector=""):
        self.device_count = int(os.environ.get("START_RAY_TEST_GPUS", "8"))


class SyclDevice:
    def __init__(self, selector=""):
        self.name = "Intel(R) Data Center GPU Max 1550"
