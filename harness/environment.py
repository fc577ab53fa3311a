"""What produced a result: hardware, software versions and source revision."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "onnxruntime", "onnxruntime-gpu", "transformers", "optimum", "optimum-onnx", "onnx", "numpy")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"cpu": model, "isa": [f for f in ISA_FLAGS if f in flags], "cores": os.cpu_count()}


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def gpu_name() -> str | None:
    """The first CUDA device's name; only asks torch when it is already loaded."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


def collect_environment(threads: int, adapter_versions: dict[str, str] | None = None) -> dict[str, Any]:
    """The machine and software a run measured on; ``adapter_versions`` adds the packages the suite's
    adapters run (openvino, nncf, ...) to the fixed list, so a changed runtime is a changed environment."""
    return {
        "host": socket.gethostname(),
        **cpu_info(),
        "threads": threads,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "gpu": gpu_name(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {**(adapter_versions or {}), **package_versions()},
        "git_commit": git_commit(),
    }


def machine_label(env: dict[str, Any]) -> str:
    """Short hardware name used to tell machines apart in merged reports."""
    cpu = str(env.get("cpu", "?"))
    return f"{env.get('gpu')} / {cpu}" if env.get("gpu") else f"{cpu} ({env.get('threads')} threads)"


def environment_fingerprint(env: dict[str, Any]) -> str:
    """Hash of what makes timings comparable: hardware, threads and versions, not load or commit."""
    import hashlib
    import json

    stable = {k: v for k, v in env.items() if k not in ("load_avg_1m", "git_commit")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


CPUINFO = Path("/proc/cpuinfo")
# x86: AVX512-BF16 dot products or AMX tiles; aarch64 (ARMv8.6 BF16) lists "bf16" in its Features
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (Linux's "flags"/"Features")."""
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def bf16_unavailable_reason(device: str, cpuinfo: Path = CPUINFO) -> str | None:
    """Why BF16 would not run natively on ``device`` (None when it would).

    CPU: read from the kernel's CPU flags, so listing cells never imports torch. CUDA: torch is
    imported only then, and asked whether the GPU computes BF16 itself (compute capability 8.0+).
    """
    if device == "cpu":
        try:
            flags = cpu_flags(cpuinfo)
        except OSError as error:
            return f"cannot read CPU flags to check for BF16 support ({cpuinfo}: {error.strerror})"
        if flags.isdisjoint(BF16_CPU_FLAGS):
            return "BF16 needs a CPU with avx512_bf16 or amx_bf16 (or ARM bf16); this one would emulate it slowly"
        return None
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
            return f"{torch.cuda.get_device_name()} has no native BF16 (needs compute capability 8.0+)"
    return None
