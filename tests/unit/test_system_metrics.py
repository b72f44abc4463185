"""Host and GPU figures: the host's from ``/proc`` files (a fake pair and the real ones),
the GPUs' from a fake NVML module put in ``sys.modules`` as ``pynvml``; without it, no GPU
metric family at all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from revoctl.runtime import system_metrics
from revoctl.runtime.metrics import GatewayMetrics
from revoctl.runtime.system_metrics import HostSampler
from tests.support.fake_nvml import FakeNvml

GIB = 1 << 30


def write_stat(path: Path, user: int, idle: int) -> None:
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")


def test_host_cpu_is_the_busy_share_between_two_samples(tmp_path: Path) -> None:
    stat, meminfo = tmp_path / "stat", tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8388608 kB\nMemFree: 1 kB\nMemAvailable:  2097152 kB\n")
    write_stat(stat, user=100, idle=100)
    sampler = HostSampler(str(stat), str(meminfo))
    first = sampler.sample()
    assert "cpu_usage_ratio" not in first  # one reading says nothing about now
    assert first["memory_total_bytes"] == 8 * GIB
    assert first["memory_available_bytes"] == 2 * GIB
    write_stat(stat, user=130, idle=170)  # 30 busy of 100 jiffies
    assert sampler.sample()["cpu_usage_ratio"] == pytest.approx(0.3)


def test_without_proc_the_host_figures_are_left_out(tmp_path: Path) -> None:
    sampler = HostSampler(str(tmp_path / "none"), str(tmp_path / "none"))
    assert sampler.sample() == {} and sampler.sample() == {}


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads the kernel's /proc")
def test_the_real_host_is_sampled_onto_the_gauges() -> None:
    metrics = GatewayMetrics()
    metrics.sample_system()
    sample = metrics.sample_system()
    value = metrics.registry.get_sample_value
    total = value("revoctl_host_memory_total_bytes")
    available = value("revoctl_host_memory_available_bytes")
    assert total == sample["host_memory_total_bytes"] and total is not None and total > 0
    assert available is not None and 0 < available <= total
    cpu = value("revoctl_host_cpu_usage_ratio")
    assert cpu is not None and 0.0 <= cpu <= 1.0


def test_gpus_are_sampled_when_nvml_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    metrics = GatewayMetrics()
    sample = metrics.sample_system()
    assert sample["gpu0_utilization_ratio"] == pytest.approx(0.37)
    assert sample["gpu1_memory_used_bytes"] == 15 * GIB
    value = metrics.registry.get_sample_value
    assert value("revoctl_gpu_utilization_ratio", {"gpu": "1"}) == 1.0
    assert value("revoctl_gpu_memory_used_bytes", {"gpu": "0"}) == 3 * GIB
    assert value("revoctl_gpu_memory_total_bytes", {"gpu": "0"}) == 16 * GIB


@pytest.mark.parametrize("nvml", [None, FakeNvml(driver=False)], ids=["absent", "no-driver"])
def test_without_nvml_no_gpu_family_is_exported(
    monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml | None
) -> None:
    # None in sys.modules makes the import fail as a missing module does.
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # type: ignore[arg-type]
    metrics = GatewayMetrics()
    assert (system_metrics.nvml() is None) == (nvml is None)
    sample = metrics.sample_system()
    assert not [name for name in sample if name.startswith("gpu")]
    assert b"revoctl_gpu_" not in generate_latest(metrics.registry)
    assert b"revoctl_host_memory_total_bytes" in generate_latest(metrics.registry)
