"""Memory that belongs to a cell: its process's peak RSS above its own post-import baseline.

Cell processes fork from a server that has already imported the runtime, so the absolute peak
includes a few hundred MB of libraries that every cell shares. The baseline is read when the cell
process starts, before the model loads, after resetting the kernel's high-water mark.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's resident high-water mark (since the last ``reset_peak``)."""
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemoryProbe:
    """Created first thing in a cell process; ``report`` at the end gives its memory fields."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.reset = reset_peak()
        self.baseline_mb = _status_mb("VmRSS") if self.reset else None
        torch = sys.modules.get("torch")
        if device == "cuda" and torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def report(self) -> dict[str, float | None]:
        peak = peak_rss_mb()
        memory: dict[str, float | None] = {
            "peak_rss_mb": peak,
            "baseline_rss_mb": self.baseline_mb,
            "cell_rss_mb": peak - self.baseline_mb if self.baseline_mb is not None else None,
        }
        torch = sys.modules.get("torch")
        if self.device == "cuda" and torch is not None and torch.cuda.is_available():
            memory["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
            memory["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
            memory["gpu_process_mb"] = _nvml_process_mb()
        return memory


def _nvml_process_mb() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory is not None:
                return process.usedGpuMemory / 2**20
    except Exception:  # NVML is optional; absent or restricted means "unknown", not failure
        return None
    return None
