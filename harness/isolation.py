"""Run one cell in its own process: load, (score), warm up, time, report back.

Children fork from a forkserver that has already imported the heavy runtimes, so a cell starts
in well under a second, yet its memory peak, its threads and any crash or hang are its own. The
parent only waits on a pipe; a child that dies or outlives its timeout becomes an error or
timeout outcome, and every other cell carries on.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from harness.adapters import Artifact
from harness.timing import Clock, TimingPolicy, time_calls

# transformers imports model classes lazily: name them, or every cell pays that import again
PRELOAD = [
    "harness.isolation",
    "harness.registry",
    "numpy",
    "torch",
    "onnxruntime",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.bert.modeling_bert",
    "backends.pytorch",
    "backends.onnxruntime",
    "exporters.torch_dynamic_int8",
]


@dataclass(frozen=True)
class CellJob:
    backend: str
    artifact: Artifact
    device: str
    threads: int
    policy: TimingPolicy
    timing_inputs: list[dict[str, np.ndarray]]
    score_inputs: list[dict[str, np.ndarray]] | None = None


@dataclass(frozen=True)
class CellOutcome:
    status: str = "ok"
    reason: str | None = None
    repeats: tuple[tuple[float, ...], ...] = ()
    hit_time_cap: bool = False
    logits: np.ndarray | None = None
    memory: dict[str, float | None] = field(default_factory=dict)


def execute_cell(job: CellJob, clock: Clock = time.perf_counter) -> CellOutcome:
    """Load the variant, score it if asked, and time it. Exceptions become error outcomes."""
    from harness.registry import backends

    session = None
    try:
        backend = backends().get(job.backend)
        session = backend.load(job.artifact, job.device, job.threads)
        logits = None
        if job.score_inputs is not None:
            logits = np.concatenate([session.logits(session.run(session.prepare(b))) for b in job.score_inputs])
        if not job.timing_inputs:  # a scoring-only job
            return CellOutcome("ok", None, (), False, logits, _memory(job.device))
        prepared = [session.prepare(batch) for batch in job.timing_inputs]
        if job.device == "cuda":
            _reset_cuda_peak()
        timed = time_calls(session.run, session.synchronize, prepared, job.policy, clock)
        return CellOutcome("ok", None, timed.repeats, timed.hit_time_cap, logits, _memory(job.device))
    except Exception as error:  # reported as this cell's error row; the run goes on
        where = traceback.extract_tb(error.__traceback__)[-1]
        reason = f"{type(error).__name__}: {error} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return CellOutcome("error", reason, memory=_memory(job.device))
    finally:
        if session is not None:
            session.close()


def run_isolated(job: CellJob, timeout_s: float) -> CellOutcome:
    """``execute_cell`` in a fresh child process, with a wall-clock limit."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(job, sender), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            process.join()
            return CellOutcome("timeout", f"no result within {timeout_s:g} s; the cell process was killed")
        try:
            outcome = receiver.recv()
        except EOFError:
            process.join()
            return CellOutcome("error", f"the cell process died ({_exit_description(process.exitcode)})")
        process.join(timeout=30)
        return outcome
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()


def _child_main(job: CellJob, sender: Connection) -> None:
    outcome = execute_cell(job)
    sender.send(outcome)
    sender.close()


_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        # The server imports these once; each cell forks from it instead of re-importing torch.
        _CONTEXT.set_forkserver_preload([m for m in PRELOAD if _importable(m)])
    return _CONTEXT


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _exit_description(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        import signal

        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _reset_cuda_peak() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _memory(device: str) -> dict[str, float | None]:
    """Peak RSS of this process, plus CUDA allocator peaks and NVML's view of the process."""
    memory: dict[str, float | None] = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    if device == "cuda" and torch is not None and torch.cuda.is_available():
        memory["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        memory["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        memory["gpu_process_mb"] = _nvml_process_mb()
    return memory


def _nvml_process_mb() -> float | None:
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory is not None:
                return process.usedGpuMemory / 2**20
    except Exception:  # NVML is optional; absent or restricted means "unknown", not failure
        return None
    return None
