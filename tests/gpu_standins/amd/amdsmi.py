"""Stand-in for AMD's `amdsmi` (see ../README.md): N devices, no hardware."""

import enum
import os


class AmdSmiLibraryException(Exception):
    pass


class AmdSmiInitFlags(enum.IntEnum):
    INIT_AMD_GPUS = 2


class AmdSmiMemoryType(enum.IntEnum):
    VRAM = 0


def amdsmi_init(flags=AmdSmiInitFlags.INIT_AMD_GPUS):
    return None


def amdsmi_shut_down():
    return None


def amdsmi_get_processor_handles():
    return list(range(int(os.environ.get("START_RAY_TEST_GPUS", "8"))))


def amdsmi_get_gpu_id(handle):
    return 0x740F  # MI210's device id


def amdsmi_get_gpu_asic_info(handle):
    return {"market_name": "AMD Instinct MI210 (stand-in)"}


def amdsmi_get_gpu_device_uuid(handle):
    return f"GPU-standin-{handle}"
