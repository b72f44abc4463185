"""The host's CPU and memory, and each NVIDIA GPU's, beside the process's own figures.

The host's come from ``/proc`` (Linux; elsewhere they are left out): CPU busy over the
time since the previous sample, from ``/proc/stat``'s jiffies, and memory from
``/proc/meminfo`` (``MemAvailable``: what can be given to programs without swapping).
The GPUs' come from NVIDIA's management library when its Python binding imports (extra
``revoctl[gpu]``, ``nvidia-ml-py``, which installs the module ``pynvml``) and the driver
answers; otherwise there are no GPU figures at all, and no GPU metric families.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger("revoctl.metrics")

PROC_STAT = "/proc/stat"
PROC_MEMINFO = "/proc/meminfo"
IDLE_FIELDS = (3, 4)
"""``/proc/stat``'s ``cpu`` line: idle and iowait among its jiffy counters."""


@dataclass(frozen=True)
class GpuSample:
    """One GPU's figures: its index, utilization (0 to 1), memory used and total in bytes."""

    index: int
    utilization: float
    memory_used: float
    memory_total: float


class HostSampler:
    """The host's CPU use since the previous sample and its memory now."""

    def __init__(self, stat: str = PROC_STAT, meminfo: str = PROC_MEMINFO) -> None:
        self._stat = stat
        self._meminfo = meminfo
        self._last: tuple[int, int] | None = None

    def sample(self) -> dict[str, float]:
        """``cpu_usage_ratio`` (from the second sample on), ``memory_total_bytes`` and
        ``memory_available_bytes``, each only where the system shows it."""
        sample: dict[str, float] = {}
        cpu = self._cpu()
        if cpu is not None:
            sample["cpu_usage_ratio"] = cpu
        sample.update(self._memory())
        return sample

    def _cpu(self) -> float | None:
        try:
            with open(self._stat, encoding="ascii") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < max(IDLE_FIELDS) + 1:
            return None
        total, idle = sum(fields), sum(fields[i] for i in IDLE_FIELDS)
        last, self._last = self._last, (total, idle)
        if last is None or total <= last[0]:
            return None
        busy = 1.0 - (idle - last[1]) / (total - last[0])
        return min(max(busy, 0.0), 1.0)

    def _memory(self) -> dict[str, float]:
        wanted = {"MemTotal:": "memory_total_bytes", "MemAvailable:": "memory_available_bytes"}
        found: dict[str, float] = {}
        try:
            with open(self._meminfo, encoding="ascii") as meminfo:
                for line in meminfo:
                    parts = line.split()
                    if parts and parts[0] in wanted and len(parts) >= 2:
                        unit = 1024 if parts[2:3] == ["kB"] else 1
                        found[wanted[parts[0]]] = float(int(parts[1]) * unit)
        except (OSError, ValueError):
            return {}
        return found


def nvml() -> ModuleType | None:
    """NVIDIA's management library (``pynvml``) if it imports, else None."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class GpuSampler:
    """Each GPU's utilization and memory through ``pynvml``; none when the driver does not
    answer (initialized once; a failure is logged once and the GPUs are left out)."""

    def __init__(self, library: ModuleType) -> None:
        self._nvml: Any = library
        self._ready: bool | None = None

    def sample(self) -> list[GpuSample]:
        if self._ready is None:
            try:
                self._nvml.nvmlInit()
                self._ready = True
            except Exception as exc:  # no driver, no device: no GPU figures
                logger.info("no GPU figures: NVML did not start: %s", exc)
                self._ready = False
        if not self._ready:
            return []
        try:
            samples = []
            for index in range(self._nvml.nvmlDeviceGetCount()):
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                samples.append(
                    GpuSample(index, rates.gpu / 100.0, float(memory.used), float(memory.total))
                )
            return samples
        except Exception as exc:  # a device gone away: this sample is left out
            logger.warning("GPU figures not read: %s", exc)
            return []
