"""What a benchmarking node runs for one variant round: fetch the artifact by content key (only when
its own cache lacks it), run the job in an isolated child process exactly as a local run does, and
answer with JSON text. Called inside a Ray task; it imports Ray only to fetch the artifact."""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.adapters import missing_modules
from harness.cache import ArtifactCache
from harness.fleet.artifacts import ArtifactRef, cached, unpack
from harness.fleet.codec import encode_outcome
from harness.measure.execute import VariantJob, VariantOutcome, describe_error
from harness.measure.isolation import run_isolated
from harness.serve.execute import ScenarioJob

# a node's own artifact cache, unless HARNESS_FLEET_CACHE names another folder
DEFAULT_NODE_CACHE = "~/.cache/harness-fleet"


def node_cache() -> ArtifactCache:
    return ArtifactCache(Path(os.environ.get("HARNESS_FLEET_CACHE", DEFAULT_NODE_CACHE)).expanduser())


def run_variant_round(
    job: VariantJob,
    ref: ArtifactRef,
    blob_holder: Sequence[Any],
    timeout_s: float,
    preload: Sequence[str],
) -> str:
    """One variant round on this node; ``blob_holder[0]`` is the packed artifact's object reference,
    left unfetched inside a list so a node that has the artifact never transfers it. The machine's
    environment was recorded once, by ``probe_node``."""

    # the load this node had when the round began (rows keep it beside their timings), and when the
    # round held the node
    environment = {"hostname": socket.gethostname(), "load_avg_1m": os.getloadavg()[0], "started": time.time()}
    try:
        artifact = _artifact(ref, blob_holder)
        outcome = run_isolated(dataclasses.replace(job, artifact=artifact), timeout_s, preload)
    except Exception as error:  # e.g. the artifact could not be had here: this round is an error, not a crash
        outcome = VariantOutcome("error", f"on {socket.gethostname()}: {describe_error(error)}")
    return encode_outcome(outcome, {**environment, "finished": time.time()})


def run_scenario_cell(
    job: ScenarioJob,
    refs: Sequence[ArtifactRef],
    blob_holders: Sequence[Sequence[Any]],
    timeout_s: float,
    preload: Sequence[str],
) -> str:
    """One serving scenario cell on this node: the variant's artifact and its model's tokenizer by
    content key, LoadGen's logs in a folder of its own, all sent back as text."""
    from harness.fleet.scenario_codec import LOG_FOLDERS, encode_scenario
    from harness.serve.execute import ScenarioOutcome, execute_scenario
    from harness.serve.scenario import KEPT_LOGS

    environment = {"hostname": socket.gethostname(), "load_avg_1m": os.getloadavg()[0], "started": time.time()}
    logs: dict[str, str] = {}
    missing = missing_modules("mlperf_loadgen")
    if missing:
        unavailable = ScenarioOutcome("n/a", f"LoadGen is unavailable on {socket.gethostname()}: {missing}")
        return encode_scenario(unavailable, logs, {**environment, "finished": time.time()})
    try:
        artifact, tokenizer = (_artifact(ref, holder) for ref, holder in zip(refs, blob_holders, strict=True))
        with tempfile.TemporaryDirectory(prefix="harness-loadgen-") as folder:
            job = dataclasses.replace(job, artifact=artifact, tokenizer_path=tokenizer.path, log_dir=Path(folder))
            outcome = run_isolated(job, timeout_s, preload, work=execute_scenario, failed=ScenarioOutcome)
            for path in (Path(folder) / sub / name for sub in LOG_FOLDERS for name in KEPT_LOGS):
                if path.is_file():
                    logs[f"{path.parent.name}/{path.name}"] = path.read_text(encoding="utf-8", errors="replace")
    except Exception as error:  # e.g. the artifact could not be had here: this cell is an error, not a crash
        outcome = ScenarioOutcome("error", f"on {socket.gethostname()}: {describe_error(error)}")
    return encode_scenario(outcome, logs, {**environment, "finished": time.time()})


def _artifact(ref: ArtifactRef, blob_holder: Sequence[Any]) -> Any:
    cache = node_cache()
    found = cached(ref, cache)
    if found is not None:  # intact and the same content: reused, nothing fetched
        return found
    import ray

    return unpack(ray.get(blob_holder[0]), ref, cache)


def probe_node(
    threads: int, versions: dict[str, str], backend_names: Sequence[str], size: int, kinds: Sequence[dict[str, Any]]
) -> str:
    """This node's environment, GEMM peaks and verdict on each kind of cell, as JSON text: each
    machine's rows are judged against its own peak, measured by the same kernels as a local run's,
    and each machine decides which cells it can run (``harness.fleet.availability``)."""
    import json

    from harness.environment import collect_environment
    from harness.fleet.availability import node_reasons
    from harness.measure.peak import measure_peaks
    from harness.registry import backends

    kernels = {}
    for name in backend_names:
        backend = backends().get(name)
        if backend.runtime and backend.runtime not in kernels and backend.unavailable_reason() is None:
            kernels[backend.runtime] = backend.gemm_peak
    environment = collect_environment(threads, versions)
    peaks = measure_peaks(threads, kernels, repeats=10, sizes=(size // 2, size))
    answer = {"environment": environment, "peaks": peaks, "availability": node_reasons(kinds, backends())}
    return json.dumps(answer, allow_nan=False, default=str)
