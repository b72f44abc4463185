"""The gateway's process metrics against what the kernel says (``/proc/self/status``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from revoctl.runtime import metrics as metrics_module
from revoctl.runtime.metrics import GatewayMetrics

MIB = 1 << 20
BLOCK = 256 * MIB
SLACK = 32 * MIB
"""What else the process may allocate or free between two readings."""

linux_only = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the kernel's view in /proc"
)


def kernel_view(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (the peak) from ``/proc/self/status``, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@linux_only
def test_resident_memory_goes_down_when_memory_is_freed_and_the_peak_stays() -> None:
    metrics = GatewayMetrics()
    block = b"\x01" * BLOCK  # every page written: resident
    held = metrics.sample_process()
    assert held["resident_memory_bytes"] == pytest.approx(kernel_view("VmRSS"), abs=SLACK)
    del block
    freed = metrics.sample_process()
    assert freed["resident_memory_bytes"] == pytest.approx(kernel_view("VmRSS"), abs=SLACK)
    assert freed["resident_memory_bytes"] < held["resident_memory_bytes"] - BLOCK + SLACK
    assert freed["peak_resident_memory_bytes"] >= held["resident_memory_bytes"] - SLACK
    assert freed["peak_resident_memory_bytes"] == pytest.approx(kernel_view("VmHWM"), abs=SLACK)
    exported = metrics.registry.get_sample_value
    assert exported("revoctl_process_resident_memory_bytes") == freed["resident_memory_bytes"]
    assert (
        exported("revoctl_process_peak_resident_memory_bytes")
        == freed["peak_resident_memory_bytes"]
    )


def test_without_proc_the_current_value_is_left_out_not_faked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/self/statm")

    monkeypatch.setattr(metrics_module, "open", no_proc, raising=False)
    assert metrics_module.resident_memory_bytes() is None
    metrics = GatewayMetrics()
    sample = metrics.sample_process()
    assert "resident_memory_bytes" not in sample  # unknown, not the peak under its name
    assert sample["peak_resident_memory_bytes"] > 0
    exported = metrics.registry.get_sample_value("revoctl_process_resident_memory_bytes")
    assert exported is not None and math.isnan(exported)  # unknown, not 0 or the peak
    if sys.platform == "linux":
        assert sample["peak_resident_memory_bytes"] == pytest.approx(
            kernel_view("VmHWM"), abs=SLACK
        )
