"""What this machine offers: CPUs, memory and accelerators (real NVIDIA GPUs or a mock)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from decimal import Decimal

from portside.config import Config
from portside.resources import Slots, parse_binary_size

log = logging.getLogger("portside.agent.resources")


def total_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


def count_nvidia_gpus() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        result = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        )
    except (subprocess.SubprocessError, OSError) as e:
        log.warning("nvidia-smi failed, offering no GPUs: %s", e)
        return 0
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))


def detect(config: Config) -> Slots:
    res = config.resources
    slots: Slots = {
        "cpu": Decimal(res.cpu or os.cpu_count() or 1),
        "mem": parse_binary_size(res.mem) or Decimal(total_memory()),
    }
    gpus = count_nvidia_gpus() if res.detect_gpus else 0
    devices = gpus or res.mock_cuda.devices
    if devices:
        slots["cuda.device"] = Decimal(devices)
    if res.mock_cuda.shares:
        slots["cuda.shares"] = Decimal(res.mock_cuda.shares)
    return slots
