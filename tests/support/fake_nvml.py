"""A stand-in for NVIDIA's management library (``pynvml``): two GPUs, or no driver.

`FakeNvml` goes into ``sys.modules`` for a test in this process; `write_module` writes the
same as ``pynvml.py`` into a folder a served gateway gets on its ``PYTHONPATH``.
"""

from __future__ import annotations

import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

GIB = 1 << 30
DEVICES = [(37, 3 * GIB, 16 * GIB), (100, 15 * GIB, 16 * GIB)]
"""Each GPU's utilization (percent), memory used and total (bytes)."""


class FakeNvml(types.ModuleType):
    """What `GpuSampler` asks of ``pynvml``, for two GPUs (or a driver that is not there)."""

    def __init__(self, *, driver: bool = True) -> None:
        super().__init__("pynvml")
        self.driver = driver
        self.devices = list(DEVICES)

    def nvmlInit(self) -> None:
        if not self.driver:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=self.devices[handle][0], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        _, used, total = self.devices[handle]
        return SimpleNamespace(used=used, total=total, free=total - used)


MODULE = f"""
from types import SimpleNamespace
DEVICES = {DEVICES!r}
def nvmlInit(): pass
def nvmlDeviceGetCount(): return len(DEVICES)
def nvmlDeviceGetHandleByIndex(index): return index
def nvmlDeviceGetUtilizationRates(handle): return SimpleNamespace(gpu=DEVICES[handle][0], memory=0)
def nvmlDeviceGetMemoryInfo(handle):
    _, used, total = DEVICES[handle]
    return SimpleNamespace(used=used, total=total, free=total - used)
"""


def write_module(folder: Path) -> Path:
    """``folder/pynvml.py``: the two GPUs, for a process started with ``folder`` first on
    its ``PYTHONPATH``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pynvml.py").write_text(MODULE)
    return folder
