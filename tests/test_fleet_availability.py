"""Which cells a fleet runs where, without a cluster: each machine judges the suite's kinds of cell
itself, the driver plans every cell some machine can run (CUDA cells included, from a CPU-only
driver), and a machine's probe answer is read as checked data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.errors import SuiteError
from harness.fleet.availability import NOWHERE, FleetAvailability, cell_kinds, node_reasons
from harness.fleet.codec import decode_probe
from harness.fleet.nodes import FleetError
from harness.registry import backends, exporters
from harness.run.plan import local_reason, plan_cells
from harness.suite import parse_suite

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
NO_CUDA = "no CUDA device (this machine)"


def smoke_suite():
    return parse_suite({**SMOKE, "devices": ["cpu", "cuda"]}, "smoke.yaml", exporters(), backends())


def verdicts(kinds, cuda: bool, missing_backend: str | None = None) -> list[str | None]:
    """A machine's answer: CUDA or not; ``missing_backend`` not installed there."""
    answers = []
    for kind in kinds:
        if kind.backend == missing_backend:
            answers.append(f"python package '{missing_backend}' is not installed")
        elif kind.device == "cuda" and not cuda:
            answers.append(NO_CUDA)
        elif kind.artifact_format == "torch-dynamic-int8" and kind.device == "cuda":
            answers.append("PyTorch dynamic INT8 kernels exist only for CPU")
        else:
            answers.append(None)
    return answers


def cells(plan) -> dict[tuple[str, str, str], int]:
    return {(v.exporter.display_name, v.backend.display_name, v.device): len(v.shapes) for v in plan.variants}


def test_kinds_cover_each_backend_on_each_device_and_each_format_it_loads() -> None:
    kinds = cell_kinds(smoke_suite(), exporters(), backends())
    keys = {kind.key for kind in kinds}
    assert len(keys) == len(kinds)  # the two ort-int8 entries share one kind
    assert ("pytorch", None, "cuda") in keys and ("onnxruntime", None, "cpu") in keys
    assert ("pytorch", "torch-dynamic-int8", "cpu") in keys and ("onnxruntime", "onnx", "cuda") in keys
    assert not [key for key in keys if key[0] == "onnxruntime" and key[1] == "torch-dynamic-int8"]
    json.dumps([kind.to_json() for kind in kinds])  # what the probe task is sent


def test_a_cpu_driver_plans_the_cuda_cells_a_gpu_machine_can_run() -> None:
    suite = smoke_suite()
    kinds = cell_kinds(suite, exporters(), backends())
    fleet = FleetAvailability(kinds, {"epyc": verdicts(kinds, cuda=False), "h100": verdicts(kinds, cuda=True)})
    here = cells(plan_cells(suite, exporters(), backends()))
    planned = cells(plan_cells(suite, exporters(), backends(), backend_reason=fleet.plan_reason))
    assert ("onnx-fp32", "onnxruntime", "cuda") in planned and ("eager-fp32", "pytorch", "cuda") in planned
    if local_reason(backends().get("onnxruntime"), {}, "onnx", "cuda"):  # a driver without CUDA (as in CI)
        assert ("onnx-fp32", "onnxruntime", "cuda") not in here
    assert ("torch-dynamic-int8", "pytorch", "cuda") not in planned  # no machine runs it
    assert fleet.reason("epyc", "onnxruntime", "onnx", "cuda") == NO_CUDA
    assert fleet.reason("h100", "onnxruntime", "onnx", "cuda") is None
    # the cell nobody runs is n/a in the plan; each machine's row then gives its own reason
    nowhere = plan_cells(suite, exporters(), backends(), backend_reason=fleet.plan_reason).unavailable
    assert {c.reason for c in nowhere if c.base["exporter"] == "torch-dynamic-int8" and c.base["device"] == "cuda"} == {
        NOWHERE
    }
    assert fleet.reason("h100", "pytorch", "torch-dynamic-int8", "cuda").startswith("PyTorch dynamic INT8")
    assert fleet.reason("epyc", "pytorch", "torch-dynamic-int8", "cuda") == NO_CUDA  # the device first


def test_a_device_counts_as_usable_when_one_machine_can_use_it() -> None:
    kinds = cell_kinds(smoke_suite(), exporters(), backends())
    with_gpu = FleetAvailability(kinds, {"epyc": verdicts(kinds, cuda=False), "h100": verdicts(kinds, cuda=True)})
    assert with_gpu.device_reasons("onnxruntime", "cuda") == {}
    without = FleetAvailability(kinds, {"epyc": verdicts(kinds, cuda=False), "xeon": verdicts(kinds, cuda=False)})
    assert without.device_reasons("onnxruntime", "cuda") == {"epyc": NO_CUDA, "xeon": NO_CUDA}
    partial = FleetAvailability(kinds, {"epyc": verdicts(kinds, cuda=False, missing_backend="onnxruntime")})
    assert partial.reason("epyc", "onnxruntime", "onnx", "cpu") == "python package 'onnxruntime' is not installed"
    assert partial.reason("epyc", "pytorch", "transformers", "cpu") is None


def test_a_verdict_per_kind_or_the_machines_do_not_line_up() -> None:
    kinds = cell_kinds(smoke_suite(), exporters(), backends())
    with pytest.raises(ValueError):
        FleetAvailability(kinds, {"epyc": verdicts(kinds, cuda=False)[:-1]})


def test_a_node_judges_each_kind_as_a_local_run_would() -> None:
    suite = smoke_suite()
    kinds = cell_kinds(suite, exporters(), backends())
    answers = node_reasons([kind.to_json() for kind in kinds], backends())
    for kind, answer in zip(kinds, answers, strict=True):
        backend = backends().get(kind.backend_name)
        assert answer == local_reason(backend, kind.options, kind.artifact_format, kind.device), kind
    by_key = dict(zip((kind.key for kind in kinds), answers, strict=True))
    assert by_key[("pytorch", "transformers", "cpu")] is None
    assert by_key[("pytorch", "torch-dynamic-int8", "cpu")] is None


def test_a_node_that_cannot_tell_is_a_node_that_cannot_run_the_cell() -> None:
    kind = {"backend": "onnxruntime", "options": {"no_such_option": 1}, "format": "onnx", "device": "cpu"}
    [answer] = node_reasons([kind], backends())
    assert answer.startswith("could not tell whether it runs here: ValidationError")


# --- a probe answer is data ----------------------------------------------------------------------

PEAK = {"gflops": 812.5, "source": "torch sgemm 512^3", "by_runtime": {"torch": 812.5}, "method": "best of 10"}


def probe_answer(**changes) -> str:
    return json.dumps(
        {"environment": {"hostname": "h100-a"}, "peaks": {"fp32": PEAK}, "availability": [None, "x"]} | changes
    )


def test_a_probe_answer_round_trips() -> None:
    probed = decode_probe(probe_answer(), kinds=2)
    assert probed == {"environment": {"hostname": "h100-a"}, "peaks": {"fp32": PEAK}, "availability": [None, "x"]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"availability": [None]}, "judges 1 kinds of cell, not the 2"),
        ({"availability": [None, 3]}, r"availability\[1\] of type int"),
        ({"peaks": {"fp32": {**PEAK, "gflops": -1.0}}}, "peak of -1.0"),
        ({"peaks": {"fp32": {**PEAK, "gflops": "fast"}}}, r"non-number at peaks\.fp32\.gflops"),
        ({"peaks": {"fp32": {**PEAK, "by_runtime": {"torch": None}}}}, "by_runtime.torch"),
        ({"environment": ["not", "a", "dict"]}, "environment of type list"),
    ],
)
def test_a_malformed_probe_answer_names_its_field(changes: dict, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        decode_probe(probe_answer(**changes), kinds=2)


def test_infinity_in_a_probe_answer_is_refused() -> None:
    with pytest.raises(FleetError, match="not valid JSON"):
        decode_probe(probe_answer().replace("812.5", "Infinity", 1), kinds=2)


# --- what is checked before a fleet run ---------------------------------------------------------


def test_a_fleet_preflight_leaves_the_devices_to_the_machines() -> None:
    from harness.preflight import preflight

    suite = parse_suite({**SMOKE, "devices": ["cuda"]}, "smoke.yaml", exporters(), backends())
    registries = (exporters(), backends())
    if local_reason(backends().get("pytorch"), {}, "transformers", "cuda") is None:
        pytest.skip("this machine has CUDA: a local run may use it too")
    with pytest.raises(SuiteError, match="can run on none of the suite's devices"):
        preflight(suite, "smoke.yaml", registries=registries)
    preflight(suite, "smoke.yaml", registries=registries, fleet=True)  # a GPU node may run it


def test_a_machine_that_cannot_run_the_baseline_stops_the_run(tmp_path: Path) -> None:
    from harness.fleet.runner import FleetRunner, cluster_config

    suite = smoke_suite()
    kinds = cell_kinds(suite, exporters(), backends())
    runner = FleetRunner(
        suite, exporters(), backends(), tmp_path / "r.jsonl", "smoke.yaml", cluster=cluster_config(suite, "auto")
    )
    runner.availability = FleetAvailability(
        kinds, {"h100": verdicts(kinds, cuda=True), "old": verdicts(kinds, cuda=False, missing_backend="pytorch")}
    )
    runner._check_baselines({"h100": None})
    with pytest.raises(FleetError, match="hardware old cannot run the baseline cell.*cpu: python package 'pytorch'"):
        runner._check_baselines({"h100": None, "old": None})
